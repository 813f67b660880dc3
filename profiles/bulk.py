"""Set-based writes into the profile store, for bulk imports (CSV, SFTP).

The rules are those of profiles.services, applied to thousands of rows at once:

- Every row is validated by the code the API uses (`plan_profile_update`,
  `event_validate`, `normalize_identifier`), so a refused row carries the
  API's code and message.
- A row names its person with one identifier (`identity`, `email`, `phone` or
  `objectId`). A known one finds that profile; an unknown identity/email/phone
  creates an identified profile holding it (as `profile_push` and `event_push`
  do); an unknown objectId creates an anonymous profile and its device.
- Never merge: a row whose data adds an identifier another profile holds is
  refused, with the message `profile_push` gives.
- Rows about the same person are applied in order, each against the state
  the previous one left: the last row wins.
- A property's type is fixed on first sight (PropertyDefinition); a value of
  another type refuses the row.
- Writes are set-based: COPY into temporary staging tables, then one
  `INSERT … ON CONFLICT` / `UPDATE … FROM` per target table. Nothing loops
  over `save()`.
- Concurrency: existing profiles of the batch are locked (`FOR UPDATE`, in id
  order). A concurrent writer that took an identifier, a device or a property
  type first shows up as a conflict on insert; the batch is then rolled back
  to its savepoint and planned again against the committed state (like the
  services' identity retries). A batch is all-or-nothing.
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from profiles.models import EventPropertyMapping, Source, new_ct_ids
from profiles.operations import STRING_FIELDS, plan_profile_update
from profiles.properties import (
    DEFAULT_PROPERTIES,
    IDENTIFIER_KEYS,
    IDENTITY_MISSING_MESSAGE,
    MAX_CUSTOM_PROFILE_KEYS,
    ErrorCode,
    IdentifierHeldByAnother,
    RecordError,
    normalize_device_id,
    normalize_identifier,
)
from profiles.rules.history import history_rows
from profiles.rules.mapping import mapped_profile_data
from profiles.services import (
    LOGIN_HOLDER,
    LOGIN_NEW,
    RETRY_SQLSTATES,
    SINGLE_VALUED_KINDS,
    Actor,
    event_name_register,
    event_validate,
    identifying_kinds,
    login_decision,
    sqlstate_of,
)

KEY_KINDS = ("identity", "email", "phone", "fbid", "gpid", "objectId")
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
    # An onUserLogin (profile_login) from this device, naming the person by the key
    # (identity/email/phone; profile_data without identifier keys). The batch takes
    # the plain cases (the device is new or already maps to the holder; a new
    # person on a new device); the others come back in BulkResult.deferred.
    device_id: object = None


@dataclass
class BulkEventRow:
    ref: int
    key_kind: str
    key_value: object
    properties: dict[str, Any]  # CleverTap evtData
    ts: dt.datetime
    client_event_id: str | None = None  # a retry with the same id stores nothing
    name: str | None = None  # the event's name when not the call's `name`


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
    # Refs of rows left for the caller to apply one by one, in order, with the
    # services (logins the batch does not take, and later rows about the same people).
    deferred: list[int] = field(default_factory=list)
    # Identifiers the batch added or removed (for a caller pipelining batches: see
    # `before_write`).
    identifiers_written: set[tuple[str, str]] = field(default_factory=set)


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
    login_devices: list[str] = field(default_factory=list)  # devices a login maps here
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

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.identifying = identifying_kinds()
        self.states: list[_State] = []
        self.owner: dict[tuple[str, str], int] = {}  # identifier -> token
        self.devices: dict[str, int] = {}  # object id -> token
        # Logins: object id -> (profile id or token, identified, linked) of the profile
        # the device maps to (profile None: no such device or no profile).
        self.login_current: dict[str, tuple[int | None, bool, bool]] = {}
        self.types: dict[str, str] = {}
        self.new_types: dict[str, str] = {}
        self.rejected: list[RowRejection] = []
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
    ) -> None:
        """Fetch the holders of `keys` (locked, with their identifiers) and of `extra`
        (identifiers the rows' data would add: only who holds them matters), and the
        profiles the devices of `logins` map to (not locked: only loaded holders are
        written to). Without `full`, the holders are locked but their properties and
        identifiers are not read (events with no mapping rule only need their ids);
        without `lock` they are not locked either: the caller locks them later with
        `_profiles_lock`, which refuses the batch if a full state changed meanwhile."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name, type FROM profiles_propertydefinition WHERE scope = 'profile'"
            )
            self.types = dict(cursor.fetchall())
            holders: dict[tuple[str, str], int] = {}
            self._holders_fetch(cursor, {pair for pair in keys if pair[0] != "objectId"}, holders)
            object_ids = [value for kind, value in keys if kind == "objectId"]
            device_profiles: dict[str, int] = {}
            if object_ids:
                cursor.execute(
                    "SELECT object_id, profile_id FROM profiles_device"
                    " WHERE object_id = ANY(%s) AND profile_id IS NOT NULL",
                    [object_ids],
                )
                device_profiles = dict(cursor.fetchall())
            wanted = sorted(
                {holders[k] for k in keys if k in holders}
                | {device_profiles[v] for k, v in keys if k == "objectId" and v in device_profiles}
            )
            by_id: dict[int, _State] = {}
            if wanted and not full:
                cursor.execute(
                    "SELECT id, ct_id FROM profiles_profile WHERE id = ANY(%s)"
                    + (" ORDER BY id FOR NO KEY UPDATE" if lock else ""),
                    [wanted],
                )
                for profile_id, ct_id in cursor.fetchall():
                    state = _State(
                        token=len(self.states), profile_id=profile_id, ct_id=ct_id,
                        fields=_empty_fields(), custom={}, identifiers=set(),
                        original_identifiers=frozenset(), partial=True,
                    )  # fmt: skip
                    self.states.append(state)
                    by_id[profile_id] = state
            elif wanted:
                columns = ", ".join(DEFAULT_FIELDS)
                cursor.execute(
                    f"SELECT id, ct_id, xmin::text, custom, {columns} FROM profiles_profile"
                    " WHERE id = ANY(%s) ORDER BY id" + (" FOR NO KEY UPDATE" if lock else ""),
                    [wanted],
                )
                for row in cursor.fetchall():
                    state = _State(
                        token=len(self.states),
                        profile_id=row[0],
                        ct_id=row[1],
                        version=None if lock else row[2],
                        custom=_loads(row[3]),
                        fields=dict(zip(DEFAULT_FIELDS, row[4:], strict=True)),
                        identifiers=set(),
                        original_identifiers=frozenset(),
                    )
                    self.states.append(state)
                    by_id[state.profile_id] = state
                cursor.execute(
                    "SELECT profile_id, kind, value FROM profiles_identifier"
                    " WHERE profile_id = ANY(%s)",
                    [wanted],
                )
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
            if logins:
                cursor.execute(
                    "SELECT d.object_id, d.profile_id, p.identified, p.linked_to_id IS NOT NULL"
                    " FROM profiles_device d LEFT JOIN profiles_profile p ON p.id = d.profile_id"
                    " WHERE d.object_id = ANY(%s)",
                    [list(logins)],
                )
                for object_id, profile_id, identified, linked in cursor.fetchall():
                    if profile_id is None:
                        continue
                    state = by_id.get(profile_id)
                    current = state.token if state else -profile_id  # tokens are >= 0
                    self.login_current[object_id] = (current, bool(identified), bool(linked))
        for pair, profile_id in holders.items():
            state = by_id.get(profile_id)
            self.owner[pair] = state.token if state else -profile_id  # unloaded holder
        for object_id, profile_id in device_profiles.items():
            if profile_id in by_id:
                self.devices[object_id] = by_id[profile_id].token

    def _holders_fetch(self, cursor, pairs: set[tuple[str, str]], holders: dict) -> None:
        """Add who holds `pairs` to `holders` (one index scan per kind)."""
        self.read_pairs |= pairs
        by_kind: dict[str, list[str]] = {}
        for kind, value in pairs:
            by_kind.setdefault(kind, []).append(value)
        for kind in sorted(by_kind):
            cursor.execute(
                "SELECT value, profile_id FROM profiles_identifier"
                " WHERE kind = %s AND value = ANY(%s)",
                [kind, by_kind[kind]],
            )
            holders.update({(kind, value): pid for value, pid in cursor.fetchall()})

    # Rows ------------------------------------------------------------------------

    def normalized_key(self, kind: str, raw: object) -> tuple[str, str]:
        if kind == "objectId":
            return kind, normalize_device_id(raw)
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

        Raises RecordError (nothing applied) like profile_push would.
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
                if (kind, value) in state.identifiers:
                    continue
                identifiers_changed = True
                if kind in SINGLE_VALUED_KINDS:
                    for pair in [p for p in state.identifiers if p[0] == kind]:
                        state.identifiers.discard(pair)
                        self.owner.pop(pair, None)
                state.identifiers.add((kind, value))
                self.owner[(kind, value)] = state.token
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

    def login_state(self, key: tuple[str, str], object_id: str) -> _State | None:
        """The profile a login of device `object_id` naming `key` lands on, by
        services.login_decision; None when the batch does not take it (the
        device's profile would be identified, linked or left behind)."""
        if object_id in self.devices:  # also named by objectId rows of this batch
            return None
        holder = self.owner.get(key)
        current = self.login_current.get(object_id)
        decision = login_decision(
            current_id=current[0] if current else None,
            current_identified=bool(current and current[1]),
            current_linked=bool(current and current[2]),
            holder_id=holder,
            named=True,
        )
        if decision.target == LOGIN_NEW and current is None:
            return self.state_for(key)  # a new person on a new device
        plain = decision.target == LOGIN_HOLDER and not decision.link_current
        if plain and (current is None or current[0] == holder):
            return self.state_for(key)  # the device is new, or maps to the holder
        return None

    def login_map(self, state: _State, object_id: str) -> None:
        """Map a device to `state` (after the login's data was applied)."""
        state.staged = True
        if self.login_current.get(object_id, (None,))[0] != state.token:
            state.login_devices.append(object_id)
        self.login_current[object_id] = (state.token, True, False)

    def reject(self, ref: int, key: str, error: RecordError) -> None:
        self.rejected.append(RowRejection(ref, key, error.code, error.message))


# --- writing (SQL, set-based) ----------------------------------------------------------

STAGE_TABLES = f"""
CREATE TEMP TABLE IF NOT EXISTS bulk_profile_stage (
    token integer PRIMARY KEY, profile_id bigint, is_new boolean, touched boolean, ct_id text,
    identified boolean, custom jsonb,
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
    token integer, object_id text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bulk_change_stage (
    token integer, changes jsonb
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bulk_event_stage (
    token integer, ts timestamptz, properties jsonb, client_event_id text, object_id text,
    name text
) ON COMMIT DELETE ROWS;
TRUNCATE bulk_profile_stage, bulk_identifier_stage, bulk_device_stage, bulk_change_stage,
         bulk_event_stage;
"""


def _copy(cursor, table: str, columns: list[str], rows) -> int:
    """COPY `rows` into a staging table; the number of rows."""
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


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
    identifiers_added: int = 0
    identifiers_removed: int = 0
    devices: int = 0
    changes: int = 0


def _profiles_stage(cursor, planner: _Planner) -> _Staged:
    """COPY the batch's profiles, identifier changes, devices and audit rows into
    this connection's temporary staging tables. Nothing shared is touched yet, so
    a pipelined batch does it before waiting for its turn to write."""
    cursor.execute(STAGE_TABLES)
    staged = [state for state in planner.states if state.touched or state.staged]
    touched = [state for state in staged if state.touched]
    if not staged:
        return _Staged()
    field_columns = list(DEFAULT_FIELDS)
    _copy(
        cursor.cursor,
        "bulk_profile_stage",
        ["token", "profile_id", "is_new", "touched", "ct_id", "identified", "custom",
         *field_columns],
        (
            [state.token, state.profile_id, state.is_new, state.touched, state.ct_id,
             bool(state.identifiers), _json(state.custom),
             *(state.fields[name] for name in field_columns)]
            for state in staged
        ),
    )  # fmt: skip
    rows = []
    for state in touched:
        rows.extend([state.token, kind, value, True]
                    for kind, value in state.identifiers - state.original_identifiers)  # fmt: skip
        rows.extend([state.token, kind, value, False]
                    for kind, value in state.original_identifiers - state.identifiers)  # fmt: skip
    adding = sum(1 for row in rows if row[3])
    if rows:
        _copy(cursor.cursor, "bulk_identifier_stage", ["token", "kind", "value", "adding"], rows)
    devices = [[state.token, state.object_id] for state in touched
               if state.is_new and state.object_id]  # fmt: skip
    devices += [[state.token, object_id] for state in staged for object_id in state.login_devices]
    if devices:
        _copy(cursor.cursor, "bulk_device_stage", ["token", "object_id"], devices)
    # One staging row per profile (its changes as a JSON array); SQL expands them.
    changes = ([state.token, _json(_audit(state))] for state in touched if state.changes)
    changed = _copy(cursor.cursor, "bulk_change_stage", ["token", "changes"], changes)
    return _Staged(profiles=len(staged), identifiers_added=adding,
                   identifiers_removed=len(rows) - adding, devices=len(devices),
                   changes=changed)  # fmt: skip


def _profiles_apply(
    cursor, planner: _Planner, staged: _Staged, *, at: dt.datetime
) -> tuple[int, int]:
    """Write the staged batch into the profile store; returns (created, updated)."""
    if not staged.profiles:
        return 0, 0
    field_columns = list(DEFAULT_FIELDS)
    assignments = ", ".join(f"{name} = s.{name}" for name in field_columns)
    cursor.execute(
        f"UPDATE profiles_profile p SET {assignments}, custom = s.custom, updated_at = %s"
        " FROM bulk_profile_stage s WHERE s.touched AND NOT s.is_new AND p.id = s.profile_id",
        [at],
    )
    updated = cursor.rowcount
    columns = ", ".join(field_columns)
    cursor.execute(
        "WITH created AS ("
        f" INSERT INTO profiles_profile (ct_id, identified, custom, {columns}, event_count,"
        "  last_platform, last_device, last_location, created_at, updated_at)"
        f" SELECT ct_id, identified, custom, {columns}, 0, '', '', '', %s, %s"
        "  FROM bulk_profile_stage WHERE is_new RETURNING id, ct_id)"
        " UPDATE bulk_profile_stage s SET profile_id = created.id FROM created"
        " WHERE s.ct_id = created.ct_id",
        [at, at],
    )
    created = cursor.rowcount
    # Identifiers: drop the replaced ones, then add; a conflict means another
    # transaction took one after we looked.
    if staged.identifiers_removed:
        cursor.execute(
            "DELETE FROM profiles_identifier i USING bulk_identifier_stage x, bulk_profile_stage s"
            " WHERE NOT x.adding AND s.token = x.token AND i.profile_id = s.profile_id"
            " AND i.kind = x.kind AND i.value = x.value"
        )
    if staged.identifiers_added:
        cursor.execute(
            "INSERT INTO profiles_identifier (profile_id, kind, value, created_at)"
            " SELECT s.profile_id, x.kind, x.value, %s FROM bulk_identifier_stage x"
            " JOIN bulk_profile_stage s ON s.token = x.token WHERE x.adding"
            " ON CONFLICT (kind, value) DO NOTHING",
            [at],
        )
        if cursor.rowcount != staged.identifiers_added:
            raise BulkConflict
    if staged.devices:
        cursor.execute(
            "INSERT INTO profiles_device (object_id, profile_id, platform, make, model,"
            " push_token, first_seen) SELECT d.object_id, s.profile_id, '', '', '', '', %s"
            " FROM bulk_device_stage d JOIN bulk_profile_stage s ON s.token = d.token"
            " ON CONFLICT (object_id) DO UPDATE SET profile_id = EXCLUDED.profile_id"
            " WHERE profiles_device.profile_id IS NULL",
            [at],
        )
        if cursor.rowcount != staged.devices:
            raise BulkConflict
    _property_types_write(cursor, planner)
    if staged.changes:
        actor = planner.actor
        cursor.execute(
            "INSERT INTO profiles_propertychange (profile_id, property, old_value, new_value,"
            " source, actor_id, actor_label, changed_at)"
            " SELECT s.profile_id, c.change->>0, NULLIF(c.change->1, 'null'::jsonb),"
            "  NULLIF(c.change->2, 'null'::jsonb), %s, %s, %s, %s"
            " FROM bulk_change_stage x JOIN bulk_profile_stage s ON s.token = x.token,"
            "  jsonb_array_elements(x.changes) AS c(change)",
            [actor.source, actor.user.pk if actor.user else None, actor.label[:200], at],
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


def _keys(planner: _Planner, rows: Sequence[BulkProfileRow | BulkEventRow]):
    """Normalize each row's key; rows with an invalid key are refused here."""
    keyed = []
    for row in rows:
        try:
            keyed.append((row, planner.normalized_key(row.key_kind, row.key_value)))
        except RecordError as error:
            planner.reject(row.ref, row.key_kind, error)
    return keyed


def profiles_bulk_upsert(
    rows: Sequence[BulkProfileRow],
    *,
    actor: Actor,
    at: dt.datetime | None = None,
    before_write: Callable[[], Iterable[tuple[str, str]]] | None = None,
) -> BulkResult:
    """Create or update the profiles `rows` name, like `profile_push` row by row.

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
    """
    at = at or timezone.now()

    def attempt(first: bool) -> BulkResult:
        unlocked = before_write is not None and first  # a re-plan reads locked
        planner = _Planner(actor)
        devices: dict[int, str] = {}  # ref -> the device of a login row
        valid = []
        for row in rows:
            if row.device_id is not None:
                try:
                    devices[row.ref] = normalize_device_id(row.device_id)
                except RecordError as error:
                    planner.reject(row.ref, "objectId", error)
                    continue
            valid.append(row)
        keyed = _keys(planner, valid)
        extra = [pair for row, _ in keyed for pair in profile_data_identifiers(row.profile_data)]
        planner.load([key for _, key in keyed], extra, list(devices.values()), lock=not unlocked)
        deferred: list[int] = []
        held_back: set[tuple[str, str]] = set()  # the people of deferred rows
        for row, key in keyed:
            object_id = devices.get(row.ref)
            if held_back or object_id is not None:
                names = {key, *profile_data_identifiers(row.profile_data)}
                if object_id is not None:
                    names.add(("objectId", object_id))
                state = planner.login_state(key, object_id) if object_id is not None else None
                if names & held_back or (object_id is not None and state is None):
                    deferred.append(row.ref)  # keeps the order of this person's rows
                    held_back |= names
                    continue
            state = planner.state_for(key) if object_id is None else state
            try:
                apply = planner.plan(state, row.profile_data)
            except RecordError as error:
                planner.reject(row.ref, planner.culprit(state, row.profile_data, error), error)
                continue
            planner.register(state, key)
            apply()
            if object_id is not None:
                planner.login_map(state, object_id)
        with connection.cursor() as cursor:
            staged = _profiles_stage(cursor, planner)
            _before_write(cursor, planner, before_write, unlocked)
            created, updated = _profiles_apply(cursor, planner, staged, at=at)
        return BulkResult(profiles_created=created, profiles_updated=updated,
                          rejected=planner.rejected, deferred=deferred,
                          identifiers_written=_identifiers_written(planner))  # fmt: skip

    return _with_retries(attempt)


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
    cursor.execute(
        "SELECT id, xmin::text FROM profiles_profile WHERE id = ANY(%s)"
        " ORDER BY id FOR NO KEY UPDATE",
        [sorted(loaded)],
    )
    current = dict(cursor.fetchall())
    if len(current) != len(loaded) or any(
        version is not None and current[profile_id] != version
        for profile_id, version in loaded.items()
    ):
        raise BulkConflict


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
) -> BulkResult:
    """Store one event per row for the person it names, like `event_push` row by row.
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
    names = sorted({row.name or name for row in rows} or {name})
    for each in names:
        # A bad event name refuses the whole batch; only the system may use reserved ones.
        event_validate(each, {}, system=actor.source == Source.SYSTEM)
    rules: dict[str, list[tuple[str, str]]] = {}
    for rule in EventPropertyMapping.objects.filter(event_name__in=names, enabled=True).order_by(
        "pk"
    ):
        rules.setdefault(rule.event_name, []).append((rule.event_property, rule.profile_property))

    def attempt(first: bool) -> BulkResult:
        unlocked = before_write is not None and first  # a re-plan reads locked
        planner = _Planner(actor)
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
        keyed = []
        for row, stored in valid:
            try:
                keyed.append((row, stored, planner.normalized_key(row.key_kind, row.key_value)))
            except RecordError as error:
                planner.reject(row.ref, row.key_kind, error)
        # Without mapping rules no profile property changes: ids are enough, and the
        # profiles are locked only for the last statement (it adds to their counts).
        full = any(rules.values())
        planner.load([key for _, _, key in keyed], [], full=full, lock=full and not unlocked)
        events = []
        for row, stored, key in keyed:
            state = planner.state_for(key)
            mapped = mapped_profile_data(rules.get(row.name or name, ()), stored)
            try:
                apply = planner.plan(state, mapped) if mapped else None
            except RecordError as error:  # the event is kept, its mapping skipped
                logger.warning("event %r: mapping skipped: %s", row.name or name, error)
                apply = None
            planner.register(state, key)
            state.staged = True
            if apply is not None:
                apply()
            events.append((state, row, stored, key))
        with connection.cursor() as cursor:
            staged = _profiles_stage(cursor, planner)
            _copy(
                cursor.cursor,
                "bulk_event_stage",
                ["token", "ts", "properties", "client_event_id", "object_id", "name"],
                (
                    [state.token, row.ts, _json(stored), row.client_event_id,
                     key[1] if key[0] == "objectId" else None, row.name or name]
                    for state, row, stored, key in events
                ),
            )  # fmt: skip
            _before_write(cursor, planner, before_write, unlocked)
            for each in sorted({row.name or name for _, row, _, _ in events}):
                event_name_register(each)
            created, updated = _profiles_apply(cursor, planner, staged, at=at)
            stored_count = 0
            if events:
                if not full and not unlocked:  # (unlocked: locked in _before_write)
                    _profiles_lock(cursor, planner)
                cursor.execute(
                    "WITH stored AS ("
                    " INSERT INTO profiles_event (profile_id, device_id, name, ts, properties,"
                    "  source, client_event_id, received_at)"
                    " SELECT s.profile_id, d.id, e.name, e.ts, e.properties, %s,"
                    "  e.client_event_id, %s"
                    " FROM bulk_event_stage e JOIN bulk_profile_stage s ON s.token = e.token"
                    " LEFT JOIN profiles_device d ON d.object_id = e.object_id"
                    " ON CONFLICT (profile_id, client_event_id) WHERE client_event_id IS NOT NULL"
                    " DO NOTHING RETURNING profile_id, device_id, ts),"
                    " per_device AS (UPDATE profiles_device d SET last_seen ="
                    "  GREATEST(d.last_seen, x.last) FROM (SELECT device_id, max(ts) AS last"
                    "  FROM stored WHERE device_id IS NOT NULL GROUP BY device_id) x"
                    "  WHERE d.id = x.device_id)"
                    " UPDATE profiles_profile p SET event_count = p.event_count + x.n,"
                    "  first_seen = LEAST(p.first_seen, x.first),"
                    "  last_seen = GREATEST(p.last_seen, x.last)"
                    " FROM (SELECT profile_id, count(*) AS n, min(ts) AS first, max(ts) AS last"
                    "  FROM stored GROUP BY profile_id) x WHERE p.id = x.profile_id"
                    " RETURNING x.n",
                    [actor.source, at],
                )
                stored_count = sum(n for (n,) in cursor.fetchall())
        return BulkResult(profiles_created=created, profiles_updated=updated,
                          events_stored=stored_count, rejected=planner.rejected,
                          identifiers_written=_identifiers_written(planner))  # fmt: skip

    return _with_retries(attempt)
