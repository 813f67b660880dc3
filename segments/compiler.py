"""Segment definitions: validation and compilation to one filter over Profile.

A definition is JSON (documented in README, "Segment definitions"). `compile_definition`
checks it and turns it into a single `Q` over Profile: profile columns, JSONB
jsonpath tests on `custom` (GIN jsonb_path_ops index) and, for events, set
tests of the form

    EXISTS (SELECT 1 FROM (SELECT profile_id FROM profiles_event WHERE name = …
            AND ts >= … [GROUP BY profile_id HAVING …]) s WHERE s.profile_id = profile.id)

which PostgreSQL turns into a semi-join (or an anti-join under NOT) fed by the
(name, ts) INCLUDE (profile) index, instead of a correlated subquery per profile.
Events are matched on their own profile_id only: the events of anonymous
profiles linked to a person (scenario 2) stay on the anonymous profile and never
count for the person.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import Avg as AvgAggregate
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    Expression,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
)
from django.db.models import Sum as SumAggregate
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.safejson import unstorable_reason
from profiles.models import Device, Event, PropertyDefinition, PropertyScope
from profiles.rules.reachability import ADDRESS_CHANNEL_BY_KEY, CHANNEL_KEYS, PUSH_FLAG
from profiles.selectors import age_q, test_profiles_q

MAX_DEPTH = 10
MAX_CONDITIONS = 100
MAX_LIST_VALUES = 100
MAX_DAYS = 36_500


class SegmentDefinitionError(ValueError):
    """A definition that cannot be compiled; `path` names the bad node ("$.all[1].value")."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# --- operators -----------------------------------------------------------------

STRING_OPS = ("equals", "not_equals", "contains", "not_contains", "starts_with", "in")
NUMBER_OPS = ("=", "!=", ">", ">=", "<", "<=", "between")
BOOLEAN_OPS = ("is_true", "is_false")
DATE_OPS = ("before", "after", "between", "in_last_days", "in_next_days")
LIST_OPS = ("contains_any", "contains_all", "contains_none")
PRESENCE_OPS = ("exists", "not_exists")
OPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "string": STRING_OPS + PRESENCE_OPS,
    "number": NUMBER_OPS + PRESENCE_OPS,
    "boolean": BOOLEAN_OPS + PRESENCE_OPS,
    "date": DATE_OPS + PRESENCE_OPS,
    "list": LIST_OPS + PRESENCE_OPS,
}
# Friendly spellings accepted on input; definitions are stored as given.
OP_ALIASES = {
    "==": "=", "≠": "!=", "<>": "!=", "≥": ">=", "≤": "<=", "not equals": "not_equals",
    "does not contain": "not_contains", "does_not_contain": "not_contains",
    "starts with": "starts_with", "in list": "in", "in_list": "in",
    "does not exist": "not_exists", "does_not_exist": "not_exists",
}  # fmt: skip
COUNT_OPS = ("=", ">", ">=", "<", "<=")
AGGREGATE_OPS = ("=", "!=", ">", ">=", "<", "<=", "between")
AGE_OPS = ("between", ">=", "<=", "=")
CHANNELS = CHANNEL_KEYS
SEEN_OPS = ("before", "after", "between", "in_last_days")


@dataclass(frozen=True)
class Column:
    field: str
    type: str


# Default properties, by their CleverTap names (case-insensitive), map to columns.
DEFAULT_COLUMNS: dict[str, Column] = {
    "name": Column("name", "string"),
    "email": Column("email", "string"),
    "phone": Column("phone", "string"),
    "gender": Column("gender", "string"),
    "dob": Column("dob", "date"),
    "language": Column("language", "string"),
    "tz": Column("tz", "string"),
    "photo": Column("photo", "string"),
    "employed": Column("employed", "boolean"),
    "education": Column("education", "string"),
    "married": Column("married", "boolean"),
    "msg-email": Column("msg_email", "boolean"),
    "msg-push": Column("msg_push", "boolean"),
    "msg-sms": Column("msg_sms", "boolean"),
    "msg-whatsapp": Column("msg_whatsapp", "boolean"),
}
DEFAULT_PROPERTY_LABELS = {
    "name": "Name", "email": "Email", "phone": "Phone", "gender": "Gender", "dob": "DOB",
    "language": "Language", "tz": "tz", "photo": "Photo", "employed": "Employed",
    "education": "Education", "married": "Married", "msg-email": "MSG-email",
    "msg-push": "MSG-push", "msg-sms": "MSG-sms", "msg-whatsapp": "MSG-whatsapp",
}  # fmt: skip
SYSTEM_CONDITIONS = ("age", "profile_type", "test_profile", "reachable", "first_seen", "last_seen")


# --- SQL building blocks ----------------------------------------------------------


class _OverTarget(Expression):
    """An expression over one source expression, `self.target` (resolved by Django)."""

    def get_source_expressions(self) -> list[Any]:
        return [self.target]

    def set_source_expressions(self, exprs: list[Any]) -> None:
        (self.target,) = exprs


class JsonPathExists(_OverTarget):
    """`<jsonb expression> @? '<jsonpath>'`: true when the path yields an item.

    jsonpath is type-strict (a string never equals a number, no cast errors) and
    in lax mode looks inside arrays, so a "list" property holding a single
    string matches like a one-item list. The jsonb_path_ops GIN index on
    Profile.custom serves `@?` for equality tests.
    """

    conditional = True
    output_field = BooleanField()

    def __init__(self, target: Any, path: str) -> None:
        super().__init__(output_field=BooleanField())
        self.target = F(target) if isinstance(target, str) else target
        self.path = path

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        sql, params = compiler.compile(self.target)
        return f"({sql} @? %s::jsonpath)", (*params, self.path)


class ProfileInEventSet(_OverTarget):
    """EXISTS over a derived table of profile ids (a semi-join; an anti-join under NOT).

    `events` is an Event queryset selecting `profile_id` (possibly grouped with
    HAVING). Wrapping it as a derived table lets PostgreSQL pull the EXISTS up
    into a hash semi/anti join, where a correlated aggregate would run once per
    profile and NOT IN would risk a per-row subplan.
    """

    conditional = True
    output_field = BooleanField()

    def __init__(self, events: QuerySet, target: Any = None) -> None:
        super().__init__(output_field=BooleanField())
        self.events = events
        self.target = target if target is not None else F("pk")

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        target_sql, target_params = compiler.compile(self.target)
        inner_sql, inner_params = self.events.query.get_compiler(connection=connection).as_sql()
        sql = (
            f"EXISTS (SELECT 1 FROM ({inner_sql}) AS segment_events"
            f" WHERE segment_events.profile_id = {target_sql})"
        )
        return sql, (*inner_params, *target_params)


class JsonNumber(_OverTarget):
    """A jsonb member as double precision when it is a number, else NULL (never an error)."""

    output_field = FloatField()

    def __init__(self, target: str, key: str) -> None:
        super().__init__(output_field=FloatField())
        self.target = F(target)
        self.key = key

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        sql, params = compiler.compile(self.target)
        return (
            f"(CASE WHEN jsonb_typeof({sql} -> %s) = 'number'"
            f" THEN ({sql} -> %s)::double precision END)",
            (*params, self.key, *params, self.key),
        )


def _jp_string(text: str) -> str:
    # A jsonpath string literal uses JSON's escapes.
    return json.dumps(text, ensure_ascii=False)


def _jp_number(number: float) -> str:
    if isinstance(number, int) or float(number).is_integer():
        return str(int(number))
    return repr(float(number))


def _jp_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _jp_number(value)
    return _jp_string(str(value))


def _jp_key(key: str) -> str:
    return "$." + _jp_string(key)


def _jp_filter(key: str, predicate: str) -> str:
    """`$."key" ? (predicate over @)`."""
    return f"{_jp_key(key)} ? ({predicate})"


def _regex_literal(text: str) -> str:
    # POSIX ARE: a backslash before a non-alphanumeric character quotes it.
    return "".join("\\" + ch if not ch.isalnum() and ch != " " else ch for ch in text)


# --- the compiler --------------------------------------------------------------------


@dataclass
class _Context:
    now: dt.datetime
    today: dt.date
    property_types: dict[str, str]
    event_property_types: dict[str, str]
    conditions: int = 0


def compile_definition(
    definition: Any,
    *,
    now: dt.datetime | None = None,
    property_types: dict[str, str] | None = None,
    event_property_types: dict[str, str] | None = None,
) -> Q:
    """Check `definition` and compile it to one Q over Profile.

    Raises SegmentDefinitionError naming the bad node. `now` fixes the clock
    (relative windows, age); the property types default to PropertyDefinition.
    """
    now = now or timezone.now()
    if property_types is None or event_property_types is None:
        types: dict[str, dict[str, str]] = {PropertyScope.PROFILE: {}, PropertyScope.EVENT: {}}
        for scope, name, type_ in PropertyDefinition.objects.values_list("scope", "name", "type"):
            types.setdefault(scope, {})[name] = type_
        property_types = property_types if property_types is not None else types["profile"]
        if event_property_types is None:
            event_property_types = types["event"]
    _reject_unstorable(definition)
    context = _Context(
        now=now,
        today=timezone.localdate(now),
        property_types=property_types,
        event_property_types=event_property_types,
    )
    return _node(definition, "$", 0, context)


def _reject_unstorable(definition: Any) -> None:
    """Name the value PostgreSQL could not take (NUL, a lone surrogate, a number out of
    range: config.safejson), iteratively: the nesting depth is checked only later."""
    stack = [(definition, "$")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                reason = unstorable_reason(key)
                if reason:
                    raise SegmentDefinitionError(path, f"a key is refused: {reason}")
                stack.append((item, f"{path}.{key}"))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            raise SegmentDefinitionError(path, "text must not contain the NUL character.")
        else:
            reason = unstorable_reason(value)
            if reason:
                raise SegmentDefinitionError(path, reason)


def _node(node: Any, path: str, depth: int, context: _Context) -> Q:
    if depth > MAX_DEPTH:
        raise SegmentDefinitionError(path, f"groups are nested more than {MAX_DEPTH} deep.")
    if not isinstance(node, dict):
        raise SegmentDefinitionError(
            path, f"expected an object (a group or a condition), got {_kind(node)}."
        )
    if "all" in node or "any" in node:
        return _group(node, path, depth, context)
    if "not" in node:
        _only_keys(node, {"not"}, path)
        return ~_node(node["not"], f"{path}.not", depth + 1, context)
    context.conditions += 1
    if context.conditions > MAX_CONDITIONS:
        raise SegmentDefinitionError(
            path, f"a segment may have at most {MAX_CONDITIONS} conditions."
        )
    if "property" in node:
        return _property_condition(node, path, context)
    if "system" in node:
        return _system_condition(node, path, context)
    if "event" in node:
        return _event_condition(node, path, context)
    raise SegmentDefinitionError(
        path,
        'expected "all", "any", "not", "property", "system" or "event"; got keys '
        + (", ".join(f'"{k}"' for k in node) or "none")
        + ".",
    )


def _group(node: dict[str, Any], path: str, depth: int, context: _Context) -> Q:
    if "all" in node and "any" in node:
        raise SegmentDefinitionError(path, 'a group has either "all" or "any", not both.')
    key = "all" if "all" in node else "any"
    _only_keys(node, {key}, path)
    children = node[key]
    if not isinstance(children, list):
        raise SegmentDefinitionError(f"{path}.{key}", f"expected a list, got {_kind(children)}.")
    if key == "any" and not children:
        raise SegmentDefinitionError(f"{path}.any", 'an "any" group needs at least one condition.')
    combined = Q()
    for index, child in enumerate(children):
        compiled = _node(child, f"{path}.{key}[{index}]", depth + 1, context)
        if key == "all":
            combined &= compiled
        else:
            combined = compiled if index == 0 else combined | compiled
    return combined


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _only_keys(node: dict[str, Any], allowed: set[str], path: str) -> None:
    extra = sorted(set(node) - allowed)
    if extra:
        raise SegmentDefinitionError(
            path, "unknown key" + ("s " if len(extra) > 1 else " ") + ", ".join(
                f'"{k}"' for k in extra) + "."
        )  # fmt: skip


def _op(node: dict[str, Any], path: str, allowed: tuple[str, ...], what: str) -> str:
    raw = node.get("op")
    if not isinstance(raw, str) or not raw:
        raise SegmentDefinitionError(
            f"{path}.op", f'"op" is required for {what}; one of: {", ".join(allowed)}.'
        )
    op = OP_ALIASES.get(raw.strip().lower(), raw.strip())
    if op not in allowed:
        raise SegmentDefinitionError(
            f"{path}.op",
            f'"{raw}" is not an operator for {what}; use one of: {", ".join(allowed)}.',
        )
    return op


# --- values -----------------------------------------------------------------------------


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SegmentDefinitionError(path, f"expected a number, got {_kind(value)}.")
    if not math.isfinite(value):
        raise SegmentDefinitionError(path, "expected a finite number.")
    return value


def _integer(value: Any, path: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    if value is None or value == "":
        # A box the person cleared: say what it wants, not what JSON type it got.
        upper = f" up to {maximum}" if maximum is not None else ""
        raise SegmentDefinitionError(path, f"enter a whole number, {minimum} or more{upper}.")
    if isinstance(value, bool) or not isinstance(value, int):
        raise SegmentDefinitionError(path, f"expected a whole number, got {_kind(value)}.")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise SegmentDefinitionError(path, f"expected a number of at least {minimum}{upper}.")
    return value


def _text(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SegmentDefinitionError(path, f"expected a string, got {_kind(value)}.")
    return str(value)


def _text_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise SegmentDefinitionError(path, "expected a non-empty list of strings.")
    if len(value) > MAX_LIST_VALUES:
        raise SegmentDefinitionError(path, f"at most {MAX_LIST_VALUES} values.")
    return [_text(item, f"{path}[{i}]") for i, item in enumerate(value)]


def _pair(value: Any, path: str, parse: Callable[[Any, str], Any]) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise SegmentDefinitionError(path, "expected a list of two values [from, to].")
    low, high = parse(value[0], f"{path}[0]"), parse(value[1], f"{path}[1]")
    if _order_key(low) > _order_key(high):
        raise SegmentDefinitionError(path, "the first value must not be greater than the second.")
    return low, high


def _order_key(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) else value


DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _moment(value: Any, path: str) -> tuple[dt.datetime, dt.datetime]:
    """A date or datetime as the half-open interval it names, in UTC.

    "2024-01-31" -> [2024-01-31T00:00Z, 2024-02-01T00:00Z); a datetime names its second.
    """
    if not isinstance(value, str):
        raise SegmentDefinitionError(
            path,
            f'expected a date "YYYY-MM-DD" or datetime "YYYY-MM-DDTHH:MM:SSZ", got {_kind(value)}.',
        )
    text = value.strip()
    try:
        if DATE_RE.match(text):
            day = dt.date.fromisoformat(text)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return start, start + dt.timedelta(days=1)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SegmentDefinitionError(path, f'"{value}" is not a valid date.') from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    moment = moment.astimezone(dt.UTC).replace(microsecond=0)
    return moment, moment + dt.timedelta(seconds=1)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Range:
    """start <= x < end (either side open when None)."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None


def _date_range(op: str, node: dict[str, Any], path: str, context: _Context) -> _Range:
    value = node.get("value")
    vpath = f"{path}.value"
    if op == "before":
        return _Range(end=_moment(value, vpath)[0])
    if op == "after":
        return _Range(start=_moment(value, vpath)[1])
    if op == "between":
        low, high = _pair(value, vpath, _moment)
        return _Range(start=low[0], end=high[1])
    days = _integer(value, vpath, minimum=0, maximum=MAX_DAYS)
    if op == "in_last_days":
        return _Range(start=context.now - dt.timedelta(days=days), end=context.now)
    return _Range(start=context.now, end=context.now + dt.timedelta(days=days))  # in_next_days


# --- property conditions -----------------------------------------------------------------


def _property_condition(node: dict[str, Any], path: str, context: _Context) -> Q:
    _only_keys(node, {"property", "op", "value"}, path)
    name = node["property"]
    if not isinstance(name, str) or not name.strip():
        raise SegmentDefinitionError(f"{path}.property", "expected a property name.")
    column = DEFAULT_COLUMNS.get(name.lower())
    if column is not None:
        op = _op(node, path, OPS_BY_TYPE[column.type], f"{name} ({column.type})")
        return _column_condition(column, op, node, path, context)
    type_ = context.property_types.get(name)
    if type_ is None:
        if name.lower() == "age":
            raise SegmentDefinitionError(
                f"{path}.property", 'Age is derived from DOB: use {"system": "age", …}.'
            )
        raise SegmentDefinitionError(
            f"{path}.property", f'unknown property "{name}" (no profile has ever had it).'
        )
    op = _op(node, path, OPS_BY_TYPE[type_], f"{name} ({type_})")
    return Q(_json_condition("custom", name, type_, op, node, path, context))


def _column_condition(
    column: Column, op: str, node: dict[str, Any], path: str, context: _Context
) -> Q:
    field, value, vpath = column.field, node.get("value"), f"{path}.value"
    empty = Q(**{f"{field}__isnull": True}) if column.type in ("date", "boolean") else Q(
        **{field: ""})  # fmt: skip
    if op == "exists":
        return ~empty
    if op == "not_exists":
        return empty
    if column.type == "boolean":
        return Q(**{field: op == "is_true"})
    if column.type == "date":
        return _date_column_condition(field, op, node, path, context)
    # string columns
    if op == "in":
        return Q(**{f"{field}__in": _text_list(value, vpath)})
    text = _text(value, vpath)
    if op == "equals":
        return Q(**{field: text})
    if op == "not_equals":
        return ~Q(**{field: text})
    if op == "contains":
        return Q(**{f"{field}__icontains": text})
    if op == "not_contains":
        return ~Q(**{f"{field}__icontains": text})
    return Q(**{f"{field}__istartswith": text})  # starts_with


def _date_column_condition(
    field: str, op: str, node: dict[str, Any], path: str, context: _Context
) -> Q:
    """A DATE column compares by whole days ("before 2024-01-31" excludes the 31st)."""
    condition = Q(**{f"{field}__isnull": False})
    if op in ("in_last_days", "in_next_days"):
        days = _integer(node.get("value"), f"{path}.value", minimum=0, maximum=MAX_DAYS)
        span = dt.timedelta(days=days)
        if op == "in_last_days":
            return condition & Q(**{f"{field}__range": (context.today - span, context.today)})
        return condition & Q(**{f"{field}__range": (context.today, context.today + span)})
    span = _date_range(op, node, path, context)

    def first_day_from(moment: dt.datetime) -> dt.date:
        day = moment.date()
        return day if moment.time() == dt.time(0) else day + dt.timedelta(days=1)

    if span.start is not None:
        condition &= Q(**{f"{field}__gte": first_day_from(span.start)})
    if span.end is not None:
        condition &= Q(**{f"{field}__lt": first_day_from(span.end)})
    return condition


def _json_condition(
    target: str, key: str, type_: str | None, op: str, node: dict[str, Any], path: str,
    context: _Context,
) -> Q:  # fmt: skip
    """A condition on one member of a JSONB column (Profile.custom or Event.properties)."""
    value, vpath = node.get("value"), f"{path}.value"

    def match(predicate: str) -> Q:
        return Q(JsonPathExists(target, _jp_filter(key, predicate)))

    if op == "exists":
        return Q(JsonPathExists(target, _jp_key(key)))
    if op == "not_exists":
        return ~Q(JsonPathExists(target, _jp_key(key)))
    if op in BOOLEAN_OPS:
        return match(f"@ == {'true' if op == 'is_true' else 'false'}")
    if op in LIST_OPS:
        items = " || ".join(f"@ == {_jp_string(v)}" for v in _text_list(value, vpath))
        if op == "contains_any":
            return match(items)
        if op == "contains_none":
            return ~match(items)
        condition = Q()
        for item in _text_list(value, vpath):
            condition &= match(f"@ == {_jp_string(item)}")
        return condition
    if type_ == "date" or (type_ is None and op in DATE_OPS and op not in NUMBER_OPS):
        span = _date_range(op, node, path, context)
        parts = ['@.type() == "string"']
        if span.start is not None:
            parts.append(f"@ >= {_jp_string(_iso(span.start))}")
        if span.end is not None:
            parts.append(f"@ < {_jp_string(_iso(span.end))}")
        return match(" && ".join(parts))
    if op in NUMBER_OPS:
        if op == "between":
            low, high = _pair(value, vpath, _number)
            return match(f"@ >= {_jp_number(low)} && @ <= {_jp_number(high)}")
        number = _number(value, vpath)
        if op == "!=":
            return match(f'@.type() == "number" && @ != {_jp_number(number)}')
        return match(f"@ {'==' if op == '=' else op} {_jp_number(number)}")
    # string operators
    if op == "in":
        return match(" || ".join(f"@ == {_jp_string(v)}" for v in _text_list(value, vpath)))
    if op in ("equals", "not_equals") and type_ is None and isinstance(value, int | float | bool):
        literal = _jp_literal(value)  # event properties have no declared type
    else:
        literal = _jp_string(_text(value, vpath))
    if op == "equals":
        return match(f"@ == {literal}")
    if op == "not_equals":
        return ~match(f"@ == {literal}")
    pattern = _jp_string(_regex_literal(_text(value, vpath)))
    if op == "starts_with":
        return match(f'@ like_regex {_jp_string("^" + _regex_literal(str(value)))} flag "i"')
    if op == "contains":
        return match(f'@ like_regex {pattern} flag "i"')
    return ~match(f'@ like_regex {pattern} flag "i"')  # not_contains


# --- system conditions ---------------------------------------------------------------------


def _system_condition(node: dict[str, Any], path: str, context: _Context) -> Q:
    _only_keys(node, {"system", "op", "value"}, path)
    kind = node["system"]
    value, vpath = node.get("value"), f"{path}.value"
    if kind == "age":
        op = _op(node, path, AGE_OPS, "age")
        if op == "between":
            low, high = _pair(value, vpath, lambda v, p: _integer(v, p, maximum=200))
            return age_q(minimum=low, maximum=high, today=context.today)
        years = _integer(value, vpath, maximum=200)
        if op == ">=":
            return age_q(minimum=years, today=context.today)
        if op == "<=":
            return age_q(maximum=years, today=context.today)
        return age_q(minimum=years, maximum=years, today=context.today)
    if kind == "profile_type":
        _op(node, path, ("equals",), "profile type")
        if value not in ("identified", "anonymous"):
            raise SegmentDefinitionError(vpath, 'expected "identified" or "anonymous".')
        return Q(identified=value == "identified")
    if kind == "test_profile":
        op = _op(node, path, BOOLEAN_OPS, "test profile")
        return test_profiles_q() if op == "is_true" else ~test_profiles_q()
    if kind == "reachable":
        _op(node, path, ("equals",), "reachable")
        if value not in CHANNELS:
            raise SegmentDefinitionError(vpath, f"expected a channel: {', '.join(CHANNELS)}.")
        return _reachable(value)
    if kind in ("first_seen", "last_seen"):
        op = _op(node, path, SEEN_OPS, kind.replace("_", " "))
        span = _date_range(op, node, path, context)
        condition = Q(**{f"{kind}__isnull": False})
        if span.start is not None:
            condition &= Q(**{f"{kind}__gte": span.start})
        if span.end is not None:
            condition &= Q(**{f"{kind}__lt": span.end})
        return condition
    raise SegmentDefinitionError(
        f"{path}.system",
        f'unknown system condition "{kind}"; one of: {", ".join(SYSTEM_CONDITIONS)}.',
    )


def _reachable(channel: str) -> Q:
    """Reachable, by profiles.rules.reachability (the profile page asks the same rule)."""
    if channel in ADDRESS_CHANNEL_BY_KEY:
        rule = ADDRESS_CHANNEL_BY_KEY[channel]
        consent = Q(**{rule.flag: True}) if rule.opt_in_required else ~Q(**{rule.flag: False})
        return ~Q(**{rule.address: ""}) & consent
    devices = (
        Device.objects.filter(profile=OuterRef("pk"))
        .exclude(push_token="")
        .exclude(push_enabled=False)
    )
    return Q(Exists(devices)) & ~Q(**{PUSH_FLAG: False})


def definition_event_names(definition: Any) -> list[str]:
    """The event names a definition's event conditions name, in order, once each.

    Walks the same shapes `_node` accepts and ignores anything else (the compiler
    reports malformed nodes); iterative, as the depth is only checked there."""
    names: dict[str, None] = {}
    stack = [definition]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        for key in ("all", "any"):
            if isinstance(node.get(key), list):
                stack.extend(reversed(node[key]))
        if "not" in node:
            stack.append(node["not"])
        name = node.get("event")
        if isinstance(name, str) and name.strip():
            names[name] = None
    return list(names)


# --- event conditions ------------------------------------------------------------------------


def _event_condition(node: dict[str, Any], path: str, context: _Context) -> Q:
    _only_keys(
        node, {"event", "op", "count", "aggregate", "within_days", "from", "to", "where"}, path
    )
    name = node["event"]
    if not isinstance(name, str) or not name.strip():
        raise SegmentDefinitionError(f"{path}.event", "expected an event name.")
    op = _op(node, path, ("did", "did_not"), "events")
    events = Event.objects.filter(name=name)
    # The window.
    if "within_days" in node:
        if "from" in node or "to" in node:
            raise SegmentDefinitionError(path, 'use either "within_days" or "from"/"to", not both.')
        days = _integer(node["within_days"], f"{path}.within_days", minimum=1, maximum=MAX_DAYS)
        events = events.filter(ts__gte=context.now - dt.timedelta(days=days))
    if "from" in node:
        events = events.filter(ts__gte=_moment(node["from"], f"{path}.from")[0])
    if "to" in node:
        events = events.filter(ts__lt=_moment(node["to"], f"{path}.to")[1])
        if "from" in node and _moment(node["from"], "")[0] > _moment(node["to"], "")[0]:
            raise SegmentDefinitionError(f"{path}.to", '"to" is before "from".')
    # Event property filters.
    where = node.get("where", [])
    if not isinstance(where, list):
        raise SegmentDefinitionError(f"{path}.where", "expected a list of property conditions.")
    for index, item in enumerate(where):
        events = events.filter(_event_property_condition(item, f"{path}.where[{index}]", context))
    # Count and aggregate, evaluated over each profile's matching events.
    having = Q()
    annotations: dict[str, Any] = {}
    if "count" in node:
        cpath = f"{path}.count"
        count = node["count"]
        if not isinstance(count, dict):
            raise SegmentDefinitionError(cpath, 'expected {"op": ">=", "value": N}.')
        _only_keys(count, {"op", "value"}, cpath)
        count_op = _op(count, cpath, COUNT_OPS, "an event count")
        if count.get("value") in (None, ""):
            raise SegmentDefinitionError(
                f"{cpath}.value", "enter how many times: a whole number, 1 or more."
            )
        number = _integer(count.get("value"), f"{cpath}.value", minimum=0)
        if count_op == ">=" and number == 0:
            # Refused, not normalised: "at least 0 times" would match everybody,
            # people who never did the event included, which is never what is meant.
            raise SegmentDefinitionError(
                f"{cpath}.value",
                'at least 0 times matches everybody: use at least 1, or "did not".',
            )
        if (count_op in ("=", "<=") and number == 0) or (count_op == "<" and number <= 1):
            raise SegmentDefinitionError(
                cpath, 'a count of 0 means the event was not done: use "op": "did_not".'
            )
        if not (count_op == ">=" and number <= 1) and not (count_op == ">" and number == 0):
            annotations["matching_count"] = Count("*")  # no heap column: index-only scans
            having &= _compare("matching_count", count_op, number)
    if "aggregate" in node:
        apath = f"{path}.aggregate"
        aggregate = node["aggregate"]
        if not isinstance(aggregate, dict):
            raise SegmentDefinitionError(
                apath, 'expected {"fn": "sum", "property": "Amount", "op": ">=", "value": N}.'
            )
        _only_keys(aggregate, {"fn", "property", "op", "value"}, apath)
        fn = aggregate.get("fn")
        if fn not in ("sum", "avg"):
            raise SegmentDefinitionError(f"{apath}.fn", 'expected "sum" or "avg".')
        prop = aggregate.get("property")
        if not isinstance(prop, str) or not prop:
            raise SegmentDefinitionError(f"{apath}.property", "expected an event property name.")
        declared = context.event_property_types.get(prop)
        if declared not in (None, "number"):
            raise SegmentDefinitionError(
                f"{apath}.property", f'"{prop}" is a {declared} property, not a number.'
            )
        agg_op = _op(aggregate, apath, AGGREGATE_OPS, f"the {fn} of {prop}")
        amount = JsonNumber("properties", prop)
        annotations["matching_value"] = (
            Coalesce(SumAggregate(amount), 0.0) if fn == "sum" else AvgAggregate(amount)
        )
        if agg_op == "between":
            low, high = _pair(aggregate.get("value"), f"{apath}.value", _number)
            having &= Q(matching_value__gte=low, matching_value__lte=high)
        else:
            having &= _compare(
                "matching_value", agg_op, _number(aggregate.get("value"), f"{apath}.value")
            )
    if annotations:
        selected = (
            events.order_by().values("profile_id").annotate(**annotations).filter(having)
        ).values("profile_id")
    else:
        selected = events.order_by().values("profile_id")
    matching = Q(ProfileInEventSet(selected))
    return matching if op == "did" else ~matching


def _compare(field: str, op: str, value: float) -> Q:
    if op == "!=":
        return ~Q(**{field: value})
    lookup = {"=": "exact", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}[op]
    return Q(**{f"{field}__{lookup}": value})


def _event_property_condition(node: Any, path: str, context: _Context) -> Q:
    if not isinstance(node, dict) or "property" not in node:
        raise SegmentDefinitionError(
            path, 'expected an event property condition {"property": …, "op": …, "value": …}.'
        )
    _only_keys(node, {"property", "op", "value"}, path)
    name = node["property"]
    if not isinstance(name, str) or not name:
        raise SegmentDefinitionError(f"{path}.property", "expected an event property name.")
    type_ = context.event_property_types.get(name)
    if type_ is not None:
        op = _op(node, path, OPS_BY_TYPE[type_], f"{name} ({type_})")
    else:
        every = tuple(dict.fromkeys(op for ops in OPS_BY_TYPE.values() for op in ops))
        op = _op(node, path, every, f"event property {name}")
        if op == "between":
            # Numbers or dates, told apart by the values.
            pair = node.get("value")
            is_dates = isinstance(pair, list) and pair and isinstance(pair[0], str)
            type_ = "date" if is_dates else "number"
    return _json_condition("properties", name, type_, op, node, path, context)
