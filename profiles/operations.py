"""Profile property operations, computed without touching the database.

`plan_profile_update` turns a CleverTap `profileData` object into the exact
changes to make: default fields, custom properties, identifiers, property
types to record, and the audit trail. It refuses the whole record on the first
invalid key or value (CleverTap skips the record), so nothing partial is ever
written.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from profiles.properties import (
    DEFAULT_PROPERTIES,
    DERIVED_KEYS,
    IDENTIFIER_KEYS,
    MAX_LIST_ITEMS,
    ErrorCode,
    RecordError,
    clean_list,
    coerce_scalar,
    format_date,
    normalize_identifier,
    validate_key,
    value_type,
)

LIST_OPERATIONS = {"$add", "$remove", "$set"}
NUMBER_OPERATIONS = {"$incr", "$decr"}
OPERATIONS = LIST_OPERATIONS | NUMBER_OPERATIONS | {"$delete"}
# A multi-value property may still hold a single string on profiles that never
# received a list operation, so "list" accepts a string and "string" upgrades
# to "list" on the first list operation (CleverTap's $add on a scalar).
COMPATIBLE_TYPES = {("list", "string")}
# Written by the product itself (test-profile marking): never refused by the custom-key cap.
SYSTEM_KEYS = frozenset({"ct_is_test_user"})


@dataclass
class ProfileUpdate:
    fields: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)  # the new custom dict, whole
    custom_changed: bool = False
    add_identifiers: dict[str, str] = field(default_factory=dict)  # kind -> value
    remove_identifier_kinds: set[str] = field(default_factory=set)
    types: dict[str, str] = field(default_factory=dict)  # custom key -> type to record
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)  # key, old, new

    @property
    def is_empty(self) -> bool:
        return not (
            self.fields or self.custom_changed or self.add_identifiers
            or self.remove_identifier_kinds
        )  # fmt: skip


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return format_date(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _check_type(key: str, new_type: str, known_types: dict[str, str]) -> str:
    """The type to record for `key`, or a refusal when it conflicts."""
    known = known_types.get(key)
    if known is None or known == new_type or (known, new_type) in COMPATIBLE_TYPES:
        return known or new_type
    if (known, new_type) == ("string", "list"):
        return "list"
    raise RecordError(
        ErrorCode.MISC, f"Property '{key}' holds {_article(known)}; refused {_article(new_type)}."
    )


def _article(type_name: str) -> str:
    return {"list": "a multi-value list", "date": "a date", "number": "a number",
            "boolean": "a boolean", "string": "a string"}[type_name]  # fmt: skip


def _as_list(current: Any) -> list[str]:
    if current is None:
        return []
    if isinstance(current, list):
        return list(current)
    return [str(current)]


def _apply_custom(
    key: str, raw: Any, custom: dict[str, Any], known_types: dict[str, str], update: ProfileUpdate
) -> None:
    old = custom.get(key)
    if isinstance(raw, list):
        raw = {"$set": raw}  # a plain list sets a multi-value property
    if isinstance(raw, dict):
        if len(raw) != 1 or next(iter(raw)) not in OPERATIONS:
            raise RecordError(
                ErrorCode.MISC,
                f"Value of '{key}' must be a value or one of {', '.join(sorted(OPERATIONS))}.",
            )
        operation, argument = next(iter(raw.items()))
        if operation == "$delete":
            if argument is not True:
                raise RecordError(ErrorCode.MISC, f"'$delete' of '{key}' needs the value true.")
            new = None
        elif operation in NUMBER_OPERATIONS:
            if (
                isinstance(argument, bool)
                or not isinstance(argument, int | float)
                or (isinstance(argument, float) and not math.isfinite(argument))
            ):
                raise RecordError(ErrorCode.MISC, f"'{operation}' of '{key}' needs a number.")
            update.types[key] = _check_type(key, "number", known_types)
            if old is not None and (isinstance(old, bool) or not isinstance(old, int | float)):
                raise RecordError(ErrorCode.MISC, f"'{operation}' of '{key}': it is not a number.")
            delta = argument if operation == "$incr" else -argument
            new = (old or 0) + delta
            if isinstance(new, float) and not math.isfinite(new):
                raise RecordError(ErrorCode.MISC, f"'{operation}' of '{key}' overflows.")
        elif operation == "$set" and not isinstance(argument, list):
            if isinstance(argument, dict):
                raise RecordError(ErrorCode.MISC, f"'$set' of '{key}' needs a value or a list.")
            _apply_custom(key, argument, custom, known_types, update)
            return
        else:
            items = clean_list(key, argument)
            update.types[key] = _check_type(key, "list", known_types)
            current = _as_list(old)
            if operation == "$set":
                new_list = items
            elif operation == "$add":
                new_list = [item for item in current if item not in items] + items
            else:  # $remove
                new_list = [item for item in current if item not in items]
            new_list = new_list[-MAX_LIST_ITEMS:]  # the oldest go first
            new = new_list or None  # an emptied list deletes the property
    else:
        value = coerce_scalar(key, raw)
        update.types[key] = _check_type(key, value_type(value), known_types)
        new = _json_value(value)
    if new == old and (new is not None or key not in custom):
        return
    if new is None:
        custom.pop(key, None)
    else:
        custom[key] = new
    update.custom_changed = True
    update.changes.append((key, old, new))


def plan_profile_update(
    profile_data: object,
    *,
    current_fields: dict[str, Any],
    current_custom: dict[str, Any],
    known_types: dict[str, str],
    identifying_kinds: set[str] | frozenset[str],
    current_custom_keys_total: int | None = None,
    max_custom_keys: int = 256,
) -> ProfileUpdate:
    """Validate `profile_data` and compute the changes; raise RecordError if invalid."""
    if not isinstance(profile_data, dict):
        raise RecordError(ErrorCode.MISC, "profileData must be an object.")
    update = ProfileUpdate()
    custom = dict(current_custom)
    for raw_key, raw in profile_data.items():
        key = validate_key(raw_key)
        lowered = key.lower()
        deleting = raw == {"$delete": True}
        if lowered in IDENTIFIER_KEYS:
            kind = IDENTIFIER_KEYS[lowered]
            default = DEFAULT_PROPERTIES.get(lowered)
            if deleting:
                if default is not None and current_fields.get(default.field):
                    update.fields[default.field] = ""
                    update.changes.append((default.key, current_fields.get(default.field), None))
                update.remove_identifier_kinds.add(kind)
                continue
            value = normalize_identifier(kind, raw)
            if kind in identifying_kinds or kind in {"identity", "fbid", "gpid"}:
                update.add_identifiers[kind] = value
            if default is not None and current_fields.get(default.field) != value:
                update.fields[default.field] = value
                update.changes.append((default.key, current_fields.get(default.field), value))
            continue
        if lowered in DERIVED_KEYS:
            DERIVED_KEYS[lowered](raw)  # validated for compatibility; Age comes from DOB
            continue
        default = DEFAULT_PROPERTIES.get(lowered)
        if default is not None:
            if isinstance(raw, dict) and not deleting:
                raise RecordError(ErrorCode.MISC, f"{default.key} takes a plain value.")
            new = None if deleting else default.clean(raw)
            old = current_fields.get(default.field)
            empty = "" if default.field in STRING_FIELDS else None
            if (new if new is not None else empty) != old:
                update.fields[default.field] = new if new is not None else empty
                update.changes.append((default.key, _json_value(old), _json_value(new)))
            continue
        _apply_custom(key, raw, custom, known_types, update)
    if update.custom_changed:
        new_keys = [
            key for key in update.types if key not in known_types and key not in SYSTEM_KEYS
        ]
        if (
            current_custom_keys_total is not None
            and current_custom_keys_total + len(new_keys) > max_custom_keys
        ):
            raise RecordError(
                ErrorCode.MISC,
                f"Too many custom profile properties: at most {max_custom_keys} may exist.",
            )
        update.custom = custom
    update.types = {k: v for k, v in update.types.items() if known_types.get(k) != v}
    return update


STRING_FIELDS = {"name", "email", "phone", "gender", "language", "tz", "photo", "education"}
