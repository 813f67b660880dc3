"""Reads of the profile store, shared by the API, the pages and segments."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q
from django.utils import timezone

from profiles.models import (
    TEST_PROFILE_PROPERTY,
    TEST_PROFILE_VALUE,
    Identifier,
    Profile,
    PropertyDefinition,
    PropertyScope,
)
from profiles.properties import RecordError, normalize_identifier


def years_before(day: dt.date, years: int) -> dt.date:
    """The same calendar day `years` earlier; 29 February falls back to the 28th."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def age_on(dob: dt.date, day: dt.date) -> int:
    """Completed years on `day` (PostgreSQL's age(): a 29 February birthday turns on 1 March)."""
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


def age_q(*, minimum: int | None = None, maximum: int | None = None,
          today: dt.date | None = None) -> Q:  # fmt: skip
    """A filter on DOB meaning "age between minimum and maximum", both inclusive.

    Age is never stored: the bounds become a DOB range, which uses the DOB
    index. age >= n  <=>  dob <= today - n years;  age <= n  <=>  dob > today - (n+1) years.
    """
    today = today or timezone.localdate()
    condition = Q(dob__isnull=False)
    if minimum is not None:
        condition &= Q(dob__lte=years_before(today, minimum))
    if maximum is not None:
        condition &= Q(dob__gt=years_before(today, maximum + 1))
    return condition


def test_profiles_q() -> Q:
    return Q(custom__contains={TEST_PROFILE_PROPERTY: TEST_PROFILE_VALUE})


def profile_get_by_identifier(*, kind: str, value: str) -> Profile | None:
    """The profile holding an identifier given in any accepted format."""
    try:
        normalized = normalize_identifier(kind, value)
    except RecordError:
        return None
    identifier = (
        Identifier.objects.select_related("profile").filter(kind=kind, value=normalized).first()
    )
    return identifier.profile if identifier else None


def profile_get_by_device(*, object_id: str) -> Profile | None:
    return Profile.objects.filter(devices__object_id=object_id).first()


def profile_property_types() -> dict[str, str]:
    return dict(
        PropertyDefinition.objects.filter(scope=PropertyScope.PROFILE).values_list("name", "type")
    )
