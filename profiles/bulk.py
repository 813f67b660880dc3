"""The one writer of the profile store: every record, in sets (profiles.ingest hands
it every channel's records; a single record is a batch of one).

- Every row is validated by the API's rules (`plan_profile_update`,
  `event_validate`, `normalize_identifier`), so a refused row carries the
  API's code and message.
- A row names its person by identifiers (`identity`, `email`, `phone`, `fbid`,
  `gpid`: all held by one profile, never two), a device (`objectId`) or a
  profile id (dashboard actions). A known one finds that profile; unknown
  identifiers create an identified profile holding them; an unknown objectId
  creates an anonymous profile and its device. A row with a device and
  identifiers is an onUserLogin (services.login_decision picks the profile).
- Never merge: a row whose data adds an identifier another profile holds is
  refused (`IdentifierHeldByAnother`).
- Rows about the same person are applied in order, each against the state
  the previous one left: the last row wins.
- A property's type is fixed on first sight (PropertyDefinition); a value of
  another type refuses the row.
- Writes are set-based: COPY (a few rows: one multi-row INSERT) into temporary
  staging tables, then one `INSERT … ON CONFLICT` / `UPDATE … FROM` per target
  table. Nothing loops over `save()`.
- Concurrency: existing profiles of the batch are locked (`FOR UPDATE`, in id
  order). A concurrent writer that took an identifier, a device or a property
  type first shows up as a conflict on insert; the batch is then rolled back
  to its savepoint and planned again against the committed state. Devices are
  locked before profiles (the one lock order). A batch is all-or-nothing.
- Pipelining (`before_write`, used by CSV imports): a batch may be read and
  planned without locks while the caller's previous batch is still writing;
  before its first write it locks its profiles and checks their xmin, and is
  planned again (locked) if one changed or the previous batch wrote an
  identifier it looked up.

Call these inside a transaction (the caller commits with its own progress
bookkeeping). They return what was done and the refused rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from profiles.models import Source, new_ct_ids
from profiles.operations import STRING_FIELDS, plan_profile_update
from profiles.properties import (
    DEFAULT_PROPERTIES,
    IDENTIFIER_KEYS,
    IDENTITY_MISSING_MESSAGE,
    MAX_CUSTOM_PROFILE_KEYS,
    MAX_EVENT_NAMES,
    ErrorCode,
    IdentifierHeldByAnother,
    IdentifiersOfDifferentProfiles,
    RecordError,
    normalize_device_id,
    normalize_identifier,
)
from profiles.rules.history import history_rows
from profiles.rules.mapping import mapped_profile_data
from profiles.services import (
    LOGIN_CURRENT,
    LOGIN_NEW,
    LOGIN_REFUSED,
    RETRY_SQLSTATES,
    SINGLE_VALUED_KINDS,
    Actor,
    event_validate,
    execute_prepared,
    identifying_kinds,
    login_decision,
    sqlstate_of,
)

KEY_KINDS = ("identity", "email", "phone", "fbid", "gpid", "objectId")
PROFILE_KEY = "profile"  # a row naming a profile by its id (dashboard actions, not the API)
MAX_BATCH_ATTEMPTS = 6
DEFAULT_FIELDS = [prop.field for prop in DEFAULT_PROPERTIES.values()]
T = TypeVar("T")
logger = logging.getLogger(__name__)


class BulkConflict(Exception):
    """A concurrent writer got there first; plan the batch again."""


@dataclass
class BulkProfileRow:
    ref: int  # the caller's reference for the row (a file row number), echoed back
    key_kind: str  # which identifier names the person: one of KEY_KINDS
    key_value: object
    profile_data: dict[str, Any]  # CleverTap profileData
    # Other identifiers the row names its person by ({"fbid": …}): all of them name
    # one profile (held by different profiles: refused, never merged).
    also_named: dict[str, Any] = field(default_factory=dict)
    # An onUserLogin from this device (services.login_decision picks the profile;
    # the identifier keys of profile_data name the person too).
    device_id: object = None
    new_user: bool = True  # False: the sender says the device's person has not changed


@dataclass
class BulkEventRow:
    ref: int
    key_kind: str
    key_value: object
    properties: dict[str, Any]  # CleverTap evtData
    ts: dt.datetime
    client_event_id: str | None = None  # a retry with the same id stores nothing
    name: str | None = None  # the event's name when not the call's `name`
    also_named: dict[str, Any] = field(default_factory=dict)  # as for BulkProfileRow
    device_id: object = None  # the device an event naming identifiers came from: a login


@dataclass(frozen=True)
class RowRejection:
    ref: int
    key: str  # the profileData/evtData key (or identifier kind) at fault; "" for the row
    code: int
    message: str


@dataclass
class BulkResult:
    profiles_created: int = 0
    profiles_updated: int = 0
    events_stored: int = 0
    rejected: list[RowRejection] = field(default_factory=list)
    # Identifiers the batch added or removed (for a caller pipelining batches: see
    # `before_write`).
    identifiers_written: set[tuple[str, str]] = field(default_factory=set)
    profile_ids: dict[int, int] = field(default_factory=dict)  # ref -> profile (if asked)


@dataclass
class _State:
    """A profile as the batch sees it: loaded (and locked) or about to be created."""

    token: int
    profile_id: int | None
    ct_id: str
    fields: dict[str, Any]
    custom: dict[str, Any]
    identifiers: set[tuple[str, str]]
    original_identifiers: frozenset[tuple[str, str]]
    object_id: str | None = None  # the device a new anonymous profile is created for
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    linked: bool = False  # an anonymous profile linked to the person it turned out to be
    link_to: _State | None = None  # the batch links it (rule 2 of onUserLogin)
    partial: bool = False  # loaded without its properties and identifiers: not to plan on
    version: str | None = None  # xmin when read without a lock: checked when locked later
    touched: bool = False  # something to write
    staged: bool = False  # needed in the staging table (its events refer to it)

    @property
    def is_new(self) -> bool:
        return self.profile_id is None


_EMPTY_FIELDS = {name: "" if name in STRING_FIELDS else None for name in DEFAULT_FIELDS}


def _empty_fields() -> dict[str, Any]:
    return dict(_EMPTY_FIELDS)


_ENCODER = DjangoJSONEncoder()


def _json(value: Any) -> str:
    # The C encoder; DjangoJSONEncoder only for the odd date or decimal.
    return json.dumps(value, separators=(",", ":"), default=_ENCODER.default)


def _loads(raw: Any) -> dict[str, Any]:
    """jsonb as Django's connection returns it from raw SQL (text)."""
    if isinstance(raw, str):
        return json.loads(raw)
    return raw or {}


def _key_for_kind(data: dict[str, Any], kind: str) -> str:
    return next((key for key in data if IDENTIFIER_KEYS.get(key.lower()) == kind), kind)


def _with_retries(step: Callable[[bool], T]) -> T:
    """Run `step(first_attempt)` in a savepoint; again from the top after a conflict
    or a lost race (services.RETRY_SQLSTATES, the same set as one record's)."""
    for attempt in range(MAX_BATCH_ATTEMPTS):
        try:
            with transaction.atomic():
                return step(attempt == 0)
        except BulkConflict:
            continue
        except DatabaseError as error:
            if sqlstate_of(error) not in RETRY_SQLSTATES or attempt == MAX_BATCH_ATTEMPTS - 1:
                raise
    raise BulkConflict("The profiles of this batch changed concurrently too often; run it again.")


# --- planning (Python, against the batch's locked state) ---------------------------


class _Planner:
    """Resolves rows to profiles and plans their changes with the API's rules."""

    def __init__(self, actor: Actor, rows: int) -> None:
        self.actor = actor
        # A small batch runs its statements prepared (services.execute_prepared).
        self.few = rows <= FEW_STAGE_ROWS
        self.identifying = identifying_kinds()
        self.states: list[_State] = []
        self.owner: dict[tuple[str, str], int] = {}  # identifier -> token
        # object id -> token of the profile the device maps to, as the batch sees it
        # (devices the batch named, and those it creates or a login maps).
        self.devices: dict[str, int] = {}
        self.devices_in_db: dict[str, int] = {}  # object id -> profile id, as read
        self.devices_mapped: set[str] = set()  # devices a login of the batch (re)maps
        self.types: dict[str, str] = {}
        self.new_types: dict[str, str] = {}
        self.rejected: list[RowRejection] = []
        self.created_ids: dict[int, int] = {}  # token -> id of the profile the batch created
        self.read_pairs: set[tuple[str, str]] = set()  # identifiers whose holder was read
        self._ct_ids: list[str] = []
        self._ct_ids_drawn = 0

    def _new_ct_id(self) -> str:
        if not self._ct_ids:  # a few for a small (API) batch, then more and more
            self._ct_ids = new_ct_ids(min(1024, max(16, self._ct_ids_drawn)))
            self._ct_ids_drawn += len(self._ct_ids)
        return self._ct_ids.pop()

    # Loading ---------------------------------------------------------------------

    def load(
        self,
        keys: list[tuple[str, str]],
        extra: list[tuple[str, str]],
        logins: Sequence[str] = (),
        *,
        full: bool = True,
        lock: bool = True,
        lock_devices: bool = False,
    ) -> None:
        """Fetch the holders of `keys` (locked, with their identifiers) and of `extra`
        (identifiers the rows' data would add: only who holds them matters), and the
        devices of `logins` (locked: a login may map them elsewhere) with the profiles
        they map to (locked too). Without `full`, the holders are locked but their properties and
        identifiers are not read (events with no mapping rule only need their ids);
        without `lock` they are not locked either: the caller locks them later with
        `_profiles_lock`, which refuses the batch if a full state changed meanwhile."""
        with connection.cursor() as cursor:
            if full:  # only property updates need the types (partial states get none)
                cursor.execute(
                    "SELECT name, type FROM profiles_propertydefinition WHERE scope = 'profile'"
                )
                self.types = dict(cursor.fetchall())
            holders: dict[tuple[str, str], int] = {}
            self._holders_fetch(cursor, {pair for pair in keys if pair[0] != "objectId"}, holders)
            object_ids = sorted({value for kind, value in keys if kind == "objectId"} | {*logins})
            device_profiles: dict[str, int] = {}
            if object_ids:
                # The one lock order: devices, then profiles (by primary key).
                locked = lock_devices or (logins and lock)
                _count, devices = execute_prepared(
                    cursor,
                    "SELECT object_id, profile_id FROM profiles_device WHERE object_id = ANY(%s)"
                    + (" ORDER BY id FOR NO KEY UPDATE" if locked else ""),
                    [object_ids],
                    prepare=self.few,
                )
                device_profiles = {
                    object_id: profile_id
                    for object_id, profile_id in devices
                    if profile_id is not None
                }
            wanted = sorted(
                {holders[k] for k in keys if k in holders} | {*device_profiles.values()}
            )
            by_id: dict[int, _State] = {}
            if wanted and not full:
                found = [(profile_id, "") for profile_id in wanted]
                if lock:  # (else locked later, when they are written: see events_bulk_insert)
                    cursor.execute(
                        "SELECT id, ct_id FROM profiles_profile WHERE id = ANY(%s)"
                        " ORDER BY id FOR NO KEY UPDATE",
                        [wanted],
                    )
                    found = cursor.fetchall()
                for profile_id, ct_id in found:
                    state = _State(
                        token=len(self.states), profile_id=profile_id, ct_id=ct_id,
                        fields=_empty_fields(), custom={}, identifiers=set(),
                        original_identifiers=frozenset(), partial=True,
                    )  # fmt: skip
                    self.states.append(state)
                    by_id[profile_id] = state
            elif wanted:
                columns = ", ".join(DEFAULT_FIELDS)
                # With their identifiers, in the same round trip.
                cursor.execute(
                    f"SELECT id, ct_id, xmin::text, linked_to_id IS NOT NULL, custom, {columns}"
                    " FROM profiles_profile"
                    " WHERE id = ANY(%s) ORDER BY id" + (" FOR NO KEY UPDATE" if lock else "")
                    + "; SELECT profile_id, kind, value FROM profiles_identifier"
                    " WHERE profile_id = ANY(%s)",
                    [wanted, wanted],
                )  # fmt: skip
                for row in cursor.fetchall():
                    state = _State(
                        token=len(self.states),
                        profile_id=row[0],
                        ct_id=row[1],
                        version=None if lock else row[2],
                        linked=row[3],
                        custom=_loads(row[4]),
                        fields=dict(zip(DEFAULT_FIELDS, row[5:], strict=True)),
                        identifiers=set(),
                        original_identifiers=frozenset(),
                    )
                    self.states.append(state)
                    by_id[state.profile_id] = state
                cursor.nextset()
                for profile_id, kind, value in cursor.fetchall():
                    by_id[profile_id].identifiers.add((kind, value))
                for state in by_id.values():
                    state.original_identifiers = frozenset(state.identifiers)
            # Identifiers the data would add: who holds them, unless known already
            # (a row naming the identifiers its person holds, e.g. a re-imported email).
            known = set(holders)
            for state in by_id.values():
                known |= state.identifiers
            self._holders_fetch(
                cursor, {pair for pair in extra if pair not in known and pair[0] != "objectId"},
                holders,
            )  # fmt: skip
            for state in by_id.values():
                holders.update(dict.fromkeys(state.identifiers, state.profile_id))
        for pair, profile_id in holders.items():
            state = by_id.get(profile_id)
            self.owner[pair] = state.token if state else -profile_id  # unloaded holder
        for object_id, profile_id in device_profiles.items():
            if profile_id in by_id:  # (deleted meanwhile: the insert conflicts, planned again)
                self.devices[object_id] = by_id[profile_id].token
        self.devices_in_db = device_profiles

    def _holders_fetch(self, cursor, pairs: set[tuple[str, str]], holders: dict) -> None:
        """Add who holds `pairs` to `holders` (one index scan per kind)."""
        self.read_pairs |= pairs
        by_kind: dict[str, list[str]] = {}
        for kind, value in pairs:
            by_kind.setdefault(kind, []).append(value)
        for kind in sorted(by_kind):
            if kind == PROFILE_KEY:
                cursor.execute(
                    "SELECT id::text, id FROM profiles_profile WHERE id = ANY(%s::bigint[])",
                    [by_kind[kind]],
                )
                holders.update({(kind, value): pid for value, pid in cursor.fetchall()})
                continue
            _count, held = execute_prepared(
                cursor,
                "SELECT value, profile_id FROM profiles_identifier"
                " WHERE kind = %s AND value = ANY(%s)",
                [kind, by_kind[kind]],
                prepare=self.few,
            )
            holders.update({(kind, value): pid for value, pid in held})

    # Rows ------------------------------------------------------------------------

    def normalized_key(self, kind: str, raw: object) -> tuple[str, str]:
        if kind == "objectId":
            return kind, normalize_device_id(raw)
        if kind == PROFILE_KEY:  # a dashboard action on one profile
            return kind, str(int(str(raw)))
        if kind not in KEY_KINDS or (kind in {"email", "phone"} and kind not in self.identifying):
            raise RecordError(ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING_MESSAGE)
        if raw is None or raw == "":
            raise RecordError(ErrorCode.IDENTITY_MISSING, IDENTITY_MISSING_MESSAGE)
        return kind, normalize_identifier(kind, raw)

    def state_for(self, key: tuple[str, str]) -> _State:
        """The known profile for `key`, or a new (not yet registered) state."""
        token = self.devices.get(key[1]) if key[0] == "objectId" else self.owner.get(key)
        if token is not None and token >= 0:
            return self.states[token]
        if token is not None:  # held by a profile we did not load: cannot happen for keys
            raise BulkConflict
        if key[0] == PROFILE_KEY:
            raise RecordError(ErrorCode.MISC, "The profile no longer exists.")
        return self._new_state(key)

    def _new_state(self, key: tuple[str, str]) -> _State:
        """A profile to create for `key` (registered once a row is applied to it)."""
        new = _State(
            token=len(self.states), profile_id=None, ct_id=self._new_ct_id(),
            fields=_empty_fields(), custom={}, identifiers=set(),
            original_identifiers=frozenset(),
        )  # fmt: skip
        if key[0] == "objectId":
            new.object_id = key[1]
        else:
            new.identifiers.add(key)
        return new

    def register(self, state: _State, key: tuple[str, str]) -> None:
        if state.token < len(self.states) and self.states[state.token] is state:
            return
        state.token = len(self.states)
        self.states.append(state)
        if key[0] == "objectId":
            self.devices[key[1]] = state.token
        else:
            self.owner[key] = state.token
        state.touched = True

    def plan(self, state: _State, profile_data: dict[str, Any]) -> Callable[[], None]:
        """Validate `profile_data` against `state`; return the function that applies it.

        Raises RecordError (nothing applied) for a refused row.
        """
        if state.partial:
            raise RuntimeError("planning on a profile loaded without its properties")
        update = plan_profile_update(
            profile_data,
            current_fields=state.fields,
            current_custom=state.custom,
            known_types=self.types,
            identifying_kinds=self.identifying,
            current_custom_keys_total=len(self.types),
            max_custom_keys=MAX_CUSTOM_PROFILE_KEYS,
        )
        for kind, value in update.add_identifiers.items():
            holder = self.owner.get((kind, value))
            if holder is not None and holder != state.token:
                raise IdentifierHeldByAnother(kind, value)
        removing = update.remove_identifier_kinds
        if (
            removing
            and state.identifiers
            and not update.add_identifiers
            and all(kind in removing for kind, _ in state.identifiers)
        ):
            # An identified profile stays identified: anonymous profiles may be linked to it.
            raise RecordError(
                ErrorCode.MISC,
                f"Removing {', '.join(sorted(removing))} would leave the profile without"
                " any identifier; delete the profile instead.",
            )

        def apply() -> None:
            state.fields.update(update.fields)
            if update.custom_changed:
                state.custom = update.custom
            for kind in update.remove_identifier_kinds:
                for pair in [p for p in state.identifiers if p[0] == kind]:
                    state.identifiers.discard(pair)
                    self.owner.pop(pair, None)
            identifiers_changed = bool(update.remove_identifier_kinds)
            for kind, value in update.add_identifiers.items():
                identifiers_changed |= self._give(state, (kind, value))
            self.types.update(update.types)
            self.new_types.update(update.types)
            state.changes.extend(update.changes)
            if update.fields or update.custom_changed or identifiers_changed:
                state.touched = True

        return apply

    def culprit(self, state: _State, profile_data: dict[str, Any], error: RecordError) -> str:
        """The key a refused record was refused for (checked one key at a time)."""
        if isinstance(error, IdentifierHeldByAnother):
            return _key_for_kind(profile_data, error.kind)
        for key, value in profile_data.items():
            try:
                self.plan(state, {key: value})
            except RecordError:
                return key
        return ""

    def _holder(self, names: Sequence[tuple[str, str]]) -> int | None:
        """The token of the one profile holding any of `names` (None: nobody).
        Held by different profiles: refused, never merged."""
        held = {name: self.owner[name] for name in names if name in self.owner}
        tokens = set(held.values())
        if len(tokens) > 1:
            raise IdentifiersOfDifferentProfiles(held)
        token = next(iter(tokens), None)
        if token is not None and token < 0:  # every name is loaded: cannot happen
            raise BulkConflict
        return token

    def state_named(self, names: Sequence[tuple[str, str]]) -> _State:
        """The profile a row naming its person by `names` (the key first) is about:
        the one holding them, or a new one."""
        if len(names) == 1:
            return self.state_for(names[0])
        token = self._holder(names)
        return self.states[token] if token is not None else self._new_state(names[0])

    def login_target(
        self, names: Sequence[tuple[str, str]], object_id: str, new_user: bool
    ) -> tuple[_State, _State | None]:
        """The profile an onUserLogin from device `object_id` naming `names` lands on,
        by services.login_decision, and the anonymous profile it leaves behind to
        link to it (rule 2), if any. RecordError when refused."""
        holder = self._holder(names)
        token = self.devices.get(object_id)
        current = self.states[token] if token is not None else None
        decision = login_decision(
            current_id=token,
            current_identified=bool(current and current.identifiers),
            current_linked=bool(current and (current.linked or current.link_to)),
            holder_id=holder,
            named=True,
            new_user=new_user,
        )
        if decision.target == LOGIN_REFUSED:
            kind, value = min(name for name in names if self.owner.get(name, token) != token)
            raise IdentifierHeldByAnother(kind, value)
        if decision.target == LOGIN_CURRENT:
            assert current is not None
            return current, None
        if decision.target == LOGIN_NEW:
            return self._new_state(names[0]), None
        assert holder is not None
        return self.states[holder], current if decision.link_current else None

    def attach(self, state: _State, names: Sequence[tuple[str, str]]) -> None:
        """Give `state` the identifiers a row names it by (after its data was applied);
        a single-valued kind replaces the value the profile had."""
        if state.partial:  # found by its one key (rows naming more load full states)
            return
        for name in names:
            if name[0] not in ("objectId", PROFILE_KEY) and self._give(state, name):
                state.touched = True

    def _give(self, state: _State, identifier: tuple[str, str]) -> bool:
        """Add an identifier to `state` (replacing the value of a single-valued kind);
        False when it holds it already."""
        if identifier in state.identifiers:
            return False
        if identifier[0] in SINGLE_VALUED_KINDS:
            for pair in [p for p in state.identifiers if p[0] == identifier[0]]:
                state.identifiers.discard(pair)
                self.owner.pop(pair, None)
        state.identifiers.add(identifier)
        self.owner[identifier] = state.token
        return True

    def login_map(self, state: _State, object_id: str, left_behind: _State | None) -> None:
        """Map a device to `state` (after the login's data was applied); link the
        anonymous profile it left behind to it."""
        state.staged = True
        if left_behind is not None:
            left_behind.link_to = state
            left_behind.staged = True
        if self.devices.get(object_id) != state.token:
            self.devices[object_id] = state.token
            self.devices_mapped.add(object_id)

    def device_rows(self) -> tuple[list[list[Any]], list[list[Any]]]:
        """The devices to write: (new ones or ones mapping to nobody, ones to move),
        each [profile token, object id]."""
        targets = {state.object_id: state for state in self.states
                   if state.is_new and state.touched and state.object_id}  # fmt: skip
        targets.update({object_id: self.states[self.devices[object_id]]
                        for object_id in self.devices_mapped})  # fmt: skip
        new, moved = [], []
        for object_id, state in targets.items():
            was = self.devices_in_db.get(object_id)
            if was is None:
                new.append([state.token, object_id])
            elif state.profile_id != was:
                moved.append([state.token, object_id])
        return new, moved

    def reject(self, ref: int, key: str, error: RecordError) -> None:
        self.rejected.append(RowRejection(ref, key, error.code, error.message))


# --- writing (SQL, set-based) ----------------------------------------------------------

# Commits empty the staging tables; a batch after another in one transaction empties
# them with DELETE, not TRUNCATE: TRUNCATE gives each table new files and a new catalog
# row, which cost ~1.5 ms a batch and grew with every batch of the transaction (a batch
# of one record in a transaction of 1000 took over 30 ms), while the few rows a batch
# before it left are cheap to delete. A commit's ON COMMIT DELETE ROWS truncates in place.
# The tables are analyzed once, empty, when a connection creates them: a table never
# analyzed is planned as ten pages (~480 rows) however few it holds, and a batch of one
# event was joined to the whole device table by hash (11 ms on 24,000 devices); analyzed
# empty, the planner sizes a staging table by the pages it really has.
# Once a commit has kept them, a connection's next batches only empty them
# (STAGE_TABLES_EMPTY): creating them "if not exists" and checking whether they were
# analyzed cost half a millisecond a batch.
STAGE_TABLES_EMPTY = """
DELETE FROM bulk_profile_stage;
DELETE FROM bulk_identifier_stage;
DELETE FROM bulk_device_stage;
DELETE FROM bulk_change_stage;
DELETE FROM bulk_event_stage;
"""
STAGE_TABLES = f"""
CREATE TEMP TABLE IF NOT EXISTS bulk_profile_stage (
    token integer PRIMARY KEY, profile_id bigint, is_new boolean, touched boolean, ct_id text,
    identified boolean, link_token integer, custom jsonb,
    {
    ", ".join(
        f"{name} {'text' if name in STRING_FIELDS else 'date' if name == 'dob' else 'boolean'}"
        for name in DEFAULT_FIELDS
    )
}
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bulk_identifier_stage (
    token integer, kind text, value text, adding boolean
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bulk_device_stage (
    token integer, object_id text, moving boolean
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bulk_change_stage (
    token integer, changes jsonb
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bulk_event_stage (
    token integer, ts timestamptz, properties jsonb, client_event_id text, object_id text,
    name text
) ON COMMIT DELETE ROWS;
DO $$ BEGIN
    IF (SELECT reltuples FROM pg_class WHERE oid = 'pg_temp.bulk_profile_stage'::regclass) < 0
    THEN
        ANALYZE pg_temp.bulk_profile_stage, pg_temp.bulk_identifier_stage,
            pg_temp.bulk_device_stage, pg_temp.bulk_change_stage, pg_temp.bulk_event_stage;
    END IF;
END $$;
{STAGE_TABLES_EMPTY}"""
# The database connections whose staging tables a committed transaction created (a
# rolled-back one takes its temporary tables with it).
_connections_with_stage_tables: weakref.WeakSet[Any] = weakref.WeakSet()


# A batch of a few rows sends them as multi-row INSERTs, in the round trip that empties the
# tables: COPY costs two round trips a table, which a batch of one (one API record, one
# service call) would pay up to five times.
FEW_STAGE_ROWS = 64


class _Stage:
    """The rows a batch puts in this connection's staging tables, sent at once (`send`)."""

    def __init__(self) -> None:
        self.tables: list[tuple[str, list[str], Iterable[list[Any]], int]] = []

    def add(self, table: str, columns: list[str], rows: Iterable[list[Any]], count: int) -> None:
        """`count` rows for `table`, to be sent. `rows` may be a generator: COPY streams
        it, so a chunk of an import never holds its staging rows twice."""
        if count:
            self.tables.append((table, columns, rows, count))

    def send(self, cursor) -> None:
        """Empty this connection's staging tables (created if need be) and fill them."""
        session = cursor.db.connection
        if session in _connections_with_stage_tables:
            statements = [STAGE_TABLES_EMPTY.strip().rstrip(";")]
        else:
            statements = [STAGE_TABLES.strip().rstrip(";")]
            transaction.on_commit(
                lambda: _connections_with_stage_tables.add(session), using=cursor.db.alias
            )
        if sum(count for _, _, _, count in self.tables) > FEW_STAGE_ROWS:
            cursor.execute(statements[0])
            for table, columns, rows, _count in self.tables:
                with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            return
        params: list[Any] = []
        for table, columns, rows, count in self.tables:
            values = "(" + ", ".join(["%s"] * len(columns)) + ")"
            statements.append(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([values] * count)
            )
            params.extend(value for row in rows for value in row)
        cursor.execute("; ".join(statements), params)


def _property_types_write(cursor, planner: _Planner) -> None:
    """Record new property types; a concurrent writer's different choice is a conflict."""
    if not planner.new_types:
        return
    names = list(planner.new_types)
    types = [planner.new_types[name] for name in names]
    cursor.execute(
        "INSERT INTO profiles_propertydefinition (scope, name, type, declared, created_at)"
        " SELECT 'profile', n, t, false, now() FROM unnest(%s::text[], %s::text[]) AS w(n, t)"
        " ON CONFLICT (scope, name) DO NOTHING",
        [names, types],
    )
    upgrades = [name for name, type_ in planner.new_types.items() if type_ == "list"]
    if upgrades:  # the first multi-value operation on a string property
        cursor.execute(
            "UPDATE profiles_propertydefinition SET type = 'list'"
            " WHERE scope = 'profile' AND type = 'string' AND name = ANY(%s)",
            [upgrades],
        )
    cursor.execute(
        "SELECT name, type FROM profiles_propertydefinition"
        " WHERE scope = 'profile' AND name = ANY(%s)",
        [names],
    )
    if any(planner.new_types[name] != type_ for name, type_ in cursor.fetchall()):
        raise BulkConflict


def _audit(state: _State) -> list[tuple[str, Any, Any]]:
    """The PropertyChange rows of a profile (profiles.rules.history)."""
    return history_rows(state.changes, created=state.is_new)


@dataclass(frozen=True)
class _Staged:
    """What a batch put in this connection's staging tables (see _profiles_stage)."""

    profiles: int = 0
    new_profiles: int = 0
    profiles_changed: int = 0  # known profiles the batch changes
    identifiers_added: int = 0
    identifiers_removed: int = 0
    devices: int = 0  # new devices (or devices mapping to nobody)
    devices_moved: int = 0  # devices a login maps to another profile
    links: int = 0  # anonymous profiles linked to the person a login named
    changes: int = 0


def _profiles_stage(stage: _Stage, planner: _Planner) -> _Staged:
    """Add the batch's profiles, identifier changes, devices and audit rows to what it
    puts in this connection's temporary staging tables. Nothing shared is touched by
    sending them, so a pipelined batch does it before waiting for its turn to write."""
    staged = [state for state in planner.states if state.touched or state.staged]
    touched = [state for state in staged if state.touched]
    if not staged:
        return _Staged()
    field_columns = list(DEFAULT_FIELDS)
    stage.add(
        "bulk_profile_stage",
        ["token", "profile_id", "is_new", "touched", "ct_id", "identified", "link_token",
         "custom", *field_columns],
        (
            [state.token, state.profile_id, state.is_new, state.touched, state.ct_id,
             bool(state.identifiers), state.link_to.token if state.link_to else None,
             _json(state.custom),
             *(state.fields[name] for name in field_columns)]
            for state in staged
        ),
        len(staged),
    )  # fmt: skip
    rows = []
    for state in touched:
        rows.extend([state.token, kind, value, True]
                    for kind, value in state.identifiers - state.original_identifiers)  # fmt: skip
        rows.extend([state.token, kind, value, False]
                    for kind, value in state.original_identifiers - state.identifiers)  # fmt: skip
    adding = sum(1 for row in rows if row[3])
    if rows:
        stage.add("bulk_identifier_stage", ["token", "kind", "value", "adding"], rows, len(rows))
    new_devices, moved_devices = planner.device_rows()
    devices = [[*row, False] for row in new_devices] + [[*row, True] for row in moved_devices]
    if devices:
        stage.add("bulk_device_stage", ["token", "object_id", "moving"], devices, len(devices))
    # One staging row per profile (its changes as a JSON array); SQL expands them.
    changes = ([state.token, _json(_audit(state))] for state in touched if state.changes)
    changed = sum(1 for state in touched if state.changes)
    stage.add("bulk_change_stage", ["token", "changes"], changes, changed)
    return _Staged(profiles=len(staged), new_profiles=sum(1 for state in staged if state.is_new),
                   profiles_changed=sum(1 for state in touched if not state.is_new),
                   identifiers_added=adding,
                   identifiers_removed=len(rows) - adding, devices=len(new_devices),
                   devices_moved=len(moved_devices),
                   links=sum(1 for state in staged if state.link_to), changes=changed)  # fmt: skip


def _profiles_apply(
    cursor, planner: _Planner, staged: _Staged, *, at: dt.datetime
) -> tuple[int, int]:
    """Write the staged batch into the profile store; returns (created, updated)."""
    if not staged.profiles:
        return 0, 0
    # Each statement runs only when the batch has rows for it: a batch of one (an event
    # of a known device, say) pays a round trip per statement.
    field_columns = list(DEFAULT_FIELDS)
    updated = 0
    if staged.profiles_changed:
        assignments = ", ".join(f"{name} = s.{name}" for name in field_columns)
        updated, _rows = execute_prepared(
            cursor,
            f"UPDATE profiles_profile p SET {assignments}, custom = s.custom, updated_at = %s"
            " FROM bulk_profile_stage s WHERE s.touched AND NOT s.is_new AND p.id = s.profile_id",
            [at],
            prepare=planner.few,
        )
    if staged.new_profiles:
        columns = ", ".join(field_columns)
        _count, created_rows = execute_prepared(
            cursor,
            "WITH created AS ("
            f" INSERT INTO profiles_profile (ct_id, identified, custom, {columns}, event_count,"
            "  last_platform, last_device, last_location, created_at, updated_at)"
            f" SELECT ct_id, identified, custom, {columns}, 0, '', '', '', %s, %s"
            "  FROM bulk_profile_stage WHERE is_new RETURNING id, ct_id)"
            " UPDATE bulk_profile_stage s SET profile_id = created.id FROM created"
            " WHERE s.ct_id = created.ct_id RETURNING s.token, s.profile_id",
            [at, at],
            prepare=planner.few,
        )
        planner.created_ids = dict(created_rows)
    created = len(planner.created_ids)
    # Identifiers: drop the replaced ones, then add; a conflict means another
    # transaction took one after we looked.
    if staged.identifiers_removed:
        cursor.execute(
            "DELETE FROM profiles_identifier i USING bulk_identifier_stage x, bulk_profile_stage s"
            " WHERE NOT x.adding AND s.token = x.token AND i.profile_id = s.profile_id"
            " AND i.kind = x.kind AND i.value = x.value"
        )
    if staged.identifiers_added:
        added, _rows = execute_prepared(
            cursor,
            "INSERT INTO profiles_identifier (profile_id, kind, value, created_at)"
            " SELECT s.profile_id, x.kind, x.value, %s FROM bulk_identifier_stage x"
            " JOIN bulk_profile_stage s ON s.token = x.token WHERE x.adding"
            " ON CONFLICT (kind, value) DO NOTHING",
            [at],
            prepare=planner.few,
        )
        if added != staged.identifiers_added:
            raise BulkConflict
    if staged.devices:
        devices, _rows = execute_prepared(
            cursor,
            "INSERT INTO profiles_device (object_id, profile_id, platform, make, model,"
            " push_token, first_seen) SELECT d.object_id, s.profile_id, '', '', '', '', %s"
            " FROM bulk_device_stage d JOIN bulk_profile_stage s ON s.token = d.token"
            " WHERE NOT d.moving"
            " ON CONFLICT (object_id) DO UPDATE SET profile_id = EXCLUDED.profile_id"
            " WHERE profiles_device.profile_id IS NULL",
            [at],
            prepare=planner.few,
        )
        if devices != staged.devices:
            raise BulkConflict
    if staged.devices_moved:  # logins on devices the batch locked
        cursor.execute(
            "UPDATE profiles_device d SET profile_id = s.profile_id FROM bulk_device_stage x"
            " JOIN bulk_profile_stage s ON s.token = x.token"
            " WHERE x.moving AND d.object_id = x.object_id"
        )
    if staged.links:  # rule 2: the anonymous profile left behind, linked to the person
        cursor.execute(
            "UPDATE profiles_profile p SET linked_to_id = t.profile_id FROM bulk_profile_stage s"
            " JOIN bulk_profile_stage t ON t.token = s.link_token WHERE p.id = s.profile_id"
        )
    _property_types_write(cursor, planner)
    if staged.changes:
        actor = planner.actor
        execute_prepared(
            cursor,
            "INSERT INTO profiles_propertychange (profile_id, property, old_value, new_value,"
            " source, actor_id, actor_label, changed_at)"
            " SELECT s.profile_id, c.change->>0, NULLIF(c.change->1, 'null'::jsonb),"
            "  NULLIF(c.change->2, 'null'::jsonb), %s, %s, %s, %s"
            " FROM bulk_change_stage x JOIN bulk_profile_stage s ON s.token = x.token,"
            "  jsonb_array_elements(x.changes) AS c(change)",
            [actor.source, actor.user.pk if actor.user else None, actor.label[:200], at],
            prepare=planner.few,
        )
    return created, updated


# --- public functions --------------------------------------------------------------------


def profile_data_identifiers(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Identifiers a row's data would add, normalized when valid (invalid ones are
    refused later by the planner, with the API's message)."""
    pairs = []
    for key, raw in data.items():
        kind = IDENTIFIER_KEYS.get(key.lower()) if isinstance(key, str) else None
        if kind is None or isinstance(raw, dict):
            continue
        if kind == "email" and isinstance(raw, str):
            # normalize_email's form for a valid email (the planner validates it later).
            pairs.append((kind, raw.strip().lower()))
            continue
        try:
            pairs.append((kind, normalize_identifier(kind, raw)))
        except RecordError:
            continue
    return pairs


RowT = TypeVar("RowT", BulkProfileRow, BulkEventRow)


def _named(
    planner: _Planner, rows: Sequence[RowT]
) -> list[tuple[RowT, list[tuple[str, str]], str | None]]:
    """Each row with the identifiers naming its person (its key first) and its login
    device; a row with an invalid one is refused here. A login's data names its
    person too (Identity, Email, Phone… where they identify), as onUserLogin's does."""
    named = []
    for row in rows:
        try:
            device = None if row.device_id is None else normalize_device_id(row.device_id)
        except RecordError as error:
            planner.reject(row.ref, "objectId", error)
            continue
        names = []
        try:
            for kind, raw in [(row.key_kind, row.key_value), *row.also_named.items()]:
                names.append(planner.normalized_key(kind, raw))
        except RecordError as error:
            planner.reject(row.ref, kind, error)
            continue
        if device is not None and isinstance(row, BulkProfileRow):
            names += [
                pair
                for pair in profile_data_identifiers(row.profile_data)
                if pair[0] in planner.identifying or pair[0] not in {"email", "phone"}
            ]
        named.append((row, list(dict.fromkeys(names)), device))
    return named


def _resolve(
    planner: _Planner, names: list[tuple[str, str]], device: str | None, new_user: bool
) -> tuple[_State, _State | None]:
    """The profile a row is about and, for a login, the profile it leaves behind to link."""
    if device is not None:
        return planner.login_target(names, device, new_user)
    return planner.state_named(names), None


def profiles_bulk_upsert(
    rows: Sequence[BulkProfileRow],
    *,
    actor: Actor,
    at: dt.datetime | None = None,
    before_write: Callable[[], Iterable[tuple[str, str]]] | None = None,
    report_profiles: bool = False,
) -> BulkResult:
    """Create or update the profiles `rows` name (onUserLogin for rows with a device).

    Invariants: identifiers stay unique per (kind, value) and are never moved
    between profiles; a refused row writes nothing; rows are applied in order
    (for one person the last row wins); every applied change is recorded in
    PropertyChange with `actor` (a created profile: one "Profile created" row with
    its initial properties); new property types are recorded once.
    All-or-nothing for the batch; call inside a transaction.

    With `before_write`, the batch is read and planned without locking anything;
    `before_write()` is called before the first write and returns the identifiers
    written since (by the caller's previous batch); the batch is then planned again,
    locked, if it looked one of them up or a profile it read has changed. A caller
    uses it to plan one batch while the batch before it is still being written.
    With `report_profiles`, the result maps each stored row to its profile's id.
    """
    at = at or timezone.now()

    def attempt(first: bool) -> BulkResult:
        unlocked = before_write is not None and first  # a re-plan reads locked
        planner = _Planner(actor, len(rows))
        landed: dict[int, _State] = {}
        named = _named(planner, rows)
        keys = [name for _, names, _ in named for name in names]
        extra = [pair for row, _, _ in named for pair in profile_data_identifiers(row.profile_data)]
        logins = [device for _, _, device in named if device is not None]
        planner.load(keys, extra, logins, lock=not unlocked)
        for row, names, device in named:
            try:
                state, left_behind = _resolve(planner, names, device, row.new_user)
            except RecordError as error:
                kind = getattr(error, "kind", row.key_kind)
                planner.reject(row.ref, _key_for_kind(row.profile_data, kind), error)
                continue
            try:
                apply = planner.plan(state, row.profile_data)
            except RecordError as error:
                planner.reject(row.ref, planner.culprit(state, row.profile_data, error), error)
                continue
            planner.register(state, names[0])
            planner.attach(state, names)
            apply()
            if device is not None:
                planner.login_map(state, device, left_behind)
            landed[row.ref] = state
        with connection.cursor() as cursor:
            stage = _Stage()
            staged = _profiles_stage(stage, planner)
            stage.send(cursor)
            _before_write(cursor, planner, before_write, unlocked)
            created, updated = _profiles_apply(cursor, planner, staged, at=at)
            ids = _profile_ids(planner, landed) if report_profiles else {}
        return BulkResult(profiles_created=created, profiles_updated=updated,
                          rejected=planner.rejected, profile_ids=ids,
                          identifiers_written=_identifiers_written(planner))  # fmt: skip

    return _with_retries(attempt)


def _profile_ids(planner: _Planner, landed: dict[int, _State]) -> dict[int, int]:
    """ref -> profile id of each stored row."""
    ids = planner.created_ids
    return {ref: state.profile_id or ids[state.token] for ref, state in landed.items()}


def _identifiers_written(planner: _Planner) -> set[tuple[str, str]]:
    written: set[tuple[str, str]] = set()
    for state in planner.states:
        if state.touched:
            written |= state.identifiers ^ state.original_identifiers
    return written


def _before_write(
    cursor,
    planner: _Planner,
    before_write: Callable[[], Iterable[tuple[str, str]]] | None,
    unlocked: bool,
) -> None:
    """Hand over to the caller; then, for a batch planned without locks, refuse the
    plan (BulkConflict: plan again, locked) when the batch before it wrote an
    identifier this one looked up, or changed a profile it read."""
    if before_write is None:
        return
    written = before_write()
    if unlocked:
        if planner.read_pairs & set(written):
            raise BulkConflict
        _profiles_lock(cursor, planner)


def _profiles_lock(cursor, planner: _Planner) -> None:
    """Lock the loaded profiles (in id order: no deadlock). One deleted, or changed
    since the batch read it without a lock (its xmin moved), is a conflict."""
    loaded = {state.profile_id: state.version for state in planner.states if not state.is_new}
    if not loaded:
        return
    _count, versions = execute_prepared(
        cursor,
        "SELECT id, xmin::text FROM profiles_profile WHERE id = ANY(%s)"
        " ORDER BY id FOR NO KEY UPDATE",
        [sorted(loaded)],
        prepare=planner.few,
    )
    current = dict(versions)
    if len(current) != len(loaded) or any(
        version is not None and current[profile_id] != version
        for profile_id, version in loaded.items()
    ):
        raise BulkConflict


def _event_names_read(
    names: Sequence[str | None],
) -> tuple[dict[str | None, list[tuple[str, str]]], set[str], int]:
    """What a batch's event names need, in one prepared statement: their enabled mapping
    rules (in the order they were made), then the names never seen before, each with how
    many names are registered (the cap, MAX_EVENT_NAMES, counts them)."""
    with connection.cursor() as cursor:
        _count, rows = execute_prepared(
            cursor,
            "SELECT * FROM (SELECT 0 AS part, id, event_name, event_property, profile_property,"
            "  0::bigint AS registered"
            "  FROM profiles_eventpropertymapping WHERE enabled AND event_name = ANY(%s)"
            " UNION ALL"
            " SELECT 1, 0, w.name, NULL, NULL, (SELECT count(*) FROM profiles_eventname)"
            "  FROM unnest(%s::text[]) AS w(name)"
            "  WHERE NOT EXISTS (SELECT 1 FROM profiles_eventname n WHERE n.name = w.name)) r"
            " ORDER BY part, id",
            [list(names), list(names)],
        )
    rules: dict[str | None, list[tuple[str, str]]] = {}
    unregistered: set[str] = set()
    registered = 0
    for part, _id, event_name, event_property, profile_property, count in rows:
        if part == 0:
            rules.setdefault(event_name, []).append((event_property, profile_property))
        else:
            unregistered.add(event_name)
            registered = count
    return rules, unregistered, registered


def _within_event_names_cap(
    planner: _Planner,
    valid: list[tuple[BulkEventRow, dict[str, Any]]],
    name: str | None,
    unregistered: set[str],
    registered: int,
) -> list[tuple[BulkEventRow, dict[str, Any]]]:
    """The rows whose event name is known or still fits under MAX_EVENT_NAMES (new names
    are let in in alphabetical order); the others are refused, each on its own."""
    new_names = sorted({row.name or name for row, _ in valid} & unregistered)
    over = set(new_names[max(0, MAX_EVENT_NAMES - registered) :])
    if not over:
        return valid
    error = RecordError(
        ErrorCode.MISC, f"At most {MAX_EVENT_NAMES} different event names may exist."
    )
    for row, _ in valid:
        if (row.name or name) in over:
            planner.reject(row.ref, "", error)
    return [(row, stored) for row, stored in valid if (row.name or name) not in over]


def _event_names_register(cursor, names: set[str]) -> None:
    """Remember the event names the batch stored first (for pickers and the cap)."""
    if names:
        cursor.execute(
            "INSERT INTO profiles_eventname (name, first_seen)"
            " SELECT n, now() FROM unnest(%s::text[]) AS w(n) ORDER BY n"
            " ON CONFLICT (name) DO NOTHING",
            [sorted(names)],
        )


def _event_culprit(name: str, properties: dict[str, Any]) -> str:
    for key, value in properties.items():
        try:
            event_validate(name, {key: value})
        except RecordError:
            return key
    return ""


def events_bulk_insert(
    rows: Sequence[BulkEventRow],
    *,
    name: str | None = None,
    actor: Actor,
    at: dt.datetime | None = None,
    before_write: Callable[[], Iterable[tuple[str, str]]] | None = None,
    report_profiles: bool = False,
) -> BulkResult:
    """Store one event per row for the person it names (after an onUserLogin for rows
    naming identifiers and a device).
    The event is called `row.name`, or `name` for rows without one.

    Invariants: an event whose `client_event_id` the profile already has is not
    stored again (so a re-imported file adds nothing); an unknown identifier
    creates its profile; every stored event adds to its profile's event count
    and widens first/last seen; the event->profile mapping rules apply (a
    refused mapped value skips the mapping, the event is kept: rules.mapping).
    All-or-nothing for the batch.
    `before_write` as for profiles_bulk_upsert.
    """
    at = at or timezone.now()
    event_names = sorted({row.name or name for row in rows} or {name})
    for each in event_names:
        # A bad event name refuses the whole batch; only the system may use reserved ones.
        event_validate(each, {}, system=actor.source == Source.SYSTEM)
    rules, unregistered, registered = _event_names_read(event_names)

    def attempt(first: bool) -> BulkResult:
        unlocked = before_write is not None and first  # a re-plan reads locked
        planner = _Planner(actor, len(rows))
        valid = []
        for row in rows:
            row_name = row.name or name
            try:
                stored = event_validate(
                    row_name, row.properties, system=actor.source == Source.SYSTEM
                )
            except RecordError as error:
                planner.reject(row.ref, _event_culprit(row_name, row.properties), error)
                continue
            valid.append((row, stored))
        valid = _within_event_names_cap(planner, valid, name, unregistered, registered)
        stored_of = {id(row): stored for row, stored in valid}
        landed: dict[int, _State] = {}
        named = _named(planner, [row for row, _ in valid])
        logins = [device for _, _, device in named if device is not None]
        # Without mapping rules or logins no profile property changes: ids are enough,
        # and the profiles are locked only for the last statement (it adds to their counts).
        full = any(rules.values()) or bool(logins) or any(len(names) > 1 for _, names, _ in named)
        keys = [name for _, names, _ in named for name in names]
        # Devices first (the one lock order): their last seen is updated below.
        planner.load(keys, [], logins, full=full, lock=full and not unlocked,
                     lock_devices=not unlocked)  # fmt: skip
        events = []
        for row, names, device in named:
            try:
                state, left_behind = _resolve(planner, names, device, True)
            except RecordError as error:
                planner.reject(row.ref, getattr(error, "kind", row.key_kind), error)
                continue
            stored = stored_of[id(row)]
            mapped = mapped_profile_data(rules.get(row.name or name, ()), stored)
            try:
                apply = planner.plan(state, mapped) if mapped else None
            except RecordError as error:  # the event is kept, its mapping skipped
                logger.warning("event %r: mapping skipped: %s", row.name or name, error)
                apply = None
            planner.register(state, names[0])
            state.staged = True
            planner.attach(state, names)
            if apply is not None:
                apply()
            if device is not None:
                planner.login_map(state, device, left_behind)
            object_id = device or (names[0][1] if names[0][0] == "objectId" else None)
            events.append((state, row, stored, object_id))
            landed[row.ref] = state
        with connection.cursor() as cursor:
            stage = _Stage()
            staged = _profiles_stage(stage, planner)
            stage.add(
                "bulk_event_stage",
                ["token", "ts", "properties", "client_event_id", "object_id", "name"],
                (
                    [state.token, row.ts, _json(stored), row.client_event_id, object_id,
                     row.name or name]
                    for state, row, stored, object_id in events
                ),
                len(events),
            )  # fmt: skip
            stage.send(cursor)
            _before_write(cursor, planner, before_write, unlocked)
            first_seen = {row.name or name for _, row, _, _ in events} & unregistered
            _event_names_register(cursor, first_seen)
            created, updated = _profiles_apply(cursor, planner, staged, at=at)
            stored_count = 0
            if events:
                # Locked in id order before the statement below adds to their counts (unlocked:
                # in _before_write). One profile alone is locked by that statement: if it was
                # deleted meanwhile, the event's foreign key fails (a lost race, retried).
                known = sum(1 for state in planner.states if not state.is_new)
                if not full and not unlocked and known > 1:
                    _profiles_lock(cursor, planner)
                _count, stored = execute_prepared(
                    cursor,
                    "WITH stored AS ("
                    " INSERT INTO profiles_event (profile_id, device_id, name, ts, properties,"
                    "  source, client_event_id, received_at)"
                    # The device by a subquery, not a join: the staging tables have no
                    # statistics, and the planner, guessing hundreds of rows, would hash a
                    # small customer's whole device table for a batch of one.
                    " SELECT s.profile_id,"
                    "  (SELECT d.id FROM profiles_device d WHERE d.object_id = e.object_id),"
                    "  e.name, e.ts, e.properties, %s, e.client_event_id, %s"
                    " FROM bulk_event_stage e JOIN bulk_profile_stage s ON s.token = e.token"
                    " ON CONFLICT (profile_id, client_event_id) WHERE client_event_id IS NOT NULL"
                    " DO NOTHING RETURNING profile_id, device_id, ts),"
                    " per_device AS (UPDATE profiles_device d SET last_seen ="
                    "  GREATEST(d.last_seen, x.last) FROM (SELECT device_id, max(ts) AS last"
                    "  FROM stored WHERE device_id IS NOT NULL GROUP BY device_id) x"
                    "  WHERE d.id = x.device_id)"
                    # Last platform: the platform of the device of the profile's newest
                    # event, unless a back-filled one (older than its last seen).
                    " UPDATE profiles_profile p SET event_count = p.event_count + x.n,"
                    "  first_seen = LEAST(p.first_seen, x.first),"
                    "  last_seen = GREATEST(p.last_seen, x.last),"
                    "  last_platform = CASE WHEN x.platform IS NOT NULL AND (p.last_seen IS NULL"
                    "   OR p.last_seen <= x.platform_ts) THEN x.platform ELSE p.last_platform END"
                    " FROM (SELECT e.profile_id, count(*) AS n, min(e.ts) AS first,"
                    "  max(e.ts) AS last, max(e.ts) FILTER (WHERE e.platform <> '') AS platform_ts,"
                    "  (array_agg(e.platform ORDER BY e.ts DESC)"
                    "   FILTER (WHERE e.platform <> ''))[1] AS platform"
                    # A subquery again: a join, sized by the staging tables' pages (which the
                    # rows earlier batches of a transaction deleted keep growing), hashed a
                    # whole device table of 25,000 for one event (15 ms instead of 0.1).
                    # OFFSET 0 keeps it one lookup a row: inlined, each use repeated it.
                    "  FROM (SELECT profile_id, ts, (SELECT d.platform FROM profiles_device d"
                    "   WHERE d.id = stored.device_id) AS platform FROM stored OFFSET 0) e"
                    "  GROUP BY e.profile_id) x WHERE p.id = x.profile_id"
                    " RETURNING x.n",
                    [actor.source, at],
                    prepare=planner.few,
                )
                stored_count = sum(n for (n,) in stored)
            ids = _profile_ids(planner, landed) if report_profiles else {}
        return BulkResult(profiles_created=created, profiles_updated=updated,
                          events_stored=stored_count, rejected=planner.rejected, profile_ids=ids,
                          identifiers_written=_identifiers_written(planner))  # fmt: skip

    return _with_retries(attempt)
