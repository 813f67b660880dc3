"""Property-based: random sequences of calls keep the profile store's invariants.

Each example runs in its own transaction, rolled back afterwards, so examples
never see each other's data.
"""

import re

import pytest
from django.db import transaction
from django.db.models import Count
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.models import (
    Device,
    Event,
    Identifier,
    Profile,
    PropertyDefinition,
    Source,
)
from profiles.properties import RecordError
from profiles.services import (
    Actor,
    event_push,
    profile_delete,
    profile_login,
    profile_mark_test,
    profile_push,
)

SDK = Actor(source=Source.SDK)
DEVICES = [f"__{index:032x}" for index in range(3)]
IDENTITIES = ["ann", "bob", "cy"]
EMAILS = ["ann@example.com", "bob@example.com"]
ISO_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

pytestmark = pytest.mark.django_db


class Rollback(Exception):
    pass


scalars = st.one_of(
    st.sampled_from(["Gold", "Silver", "", "x" * 10]),
    st.integers(-5, 5),
    st.booleans(),
    st.sampled_from(["$D_1700000000", "$D_0"]),
)
tags = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4)
values = st.one_of(
    scalars,
    st.builds(lambda op, items: {op: items}, st.sampled_from(["$add", "$remove", "$set"]), tags),
    st.builds(lambda op, n: {op: n}, st.sampled_from(["$incr", "$decr"]), st.integers(1, 3)),
    st.just({"$delete": True}),
)
profile_data = st.dictionaries(
    st.sampled_from(["Plan", "Tags", "Score", "Joined"]), values, max_size=3
) | st.fixed_dictionaries(
    {},
    optional={
        "Email": st.sampled_from([*EMAILS, {"$delete": True}]),
        "Identity": st.sampled_from([*IDENTITIES, {"$delete": True}]),
        "Name": st.sampled_from(["Ann", "Bob"]),
    },
)
identifiers = st.fixed_dictionaries(
    {}, optional={"identity": st.sampled_from(IDENTITIES), "email": st.sampled_from(EMAILS)}
)
devices = st.none() | st.sampled_from(DEVICES)

operations = st.one_of(
    st.tuples(st.just("login"), devices, identifiers, profile_data),
    st.tuples(st.just("push"), devices, identifiers, profile_data),
    st.tuples(st.just("event"), devices, identifiers, st.sampled_from(["A", "B"])),
    st.tuples(st.just("mark"), st.integers(0, 20), st.booleans(), st.none()),
    st.tuples(st.just("delete"), st.integers(0, 20), st.none(), st.none()),
)


def apply(operation, user) -> None:
    kind, first, second, third = operation
    try:
        if kind == "login":
            profile_login(device_id=first, identifiers=second, profile_data=third, actor=SDK)
        elif kind == "push":
            profile_push(device_id=first, identifiers=second, profile_data=third, actor=SDK)
        elif kind == "event":
            event_push(device_id=first, identifiers=second, name=third, actor=SDK)
        else:
            profiles = list(Profile.objects.order_by("pk"))
            if not profiles:
                return
            profile = profiles[first % len(profiles)]
            if kind == "mark":
                profile_mark_test(profile=profile, user=user, is_test=second)
            else:
                profile_delete(profile=profile)
    except RecordError:
        pass  # a refused record is a legitimate outcome; it must have written nothing


def value_agrees(value: object, type_: str) -> bool:
    if type_ == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_ == "boolean":
        return isinstance(value, bool)
    if type_ == "date":
        return isinstance(value, str) and bool(ISO_DATE.match(value))
    if type_ == "list":
        return isinstance(value, str) or (
            isinstance(value, list)
            and 0 < len(value) <= 100
            and len(set(value)) == len(value)
            and all(isinstance(item, str) for item in value)
        )
    return isinstance(value, str)


def check_invariants() -> None:
    # Identifiers are unique, and a profile holds at most one email.
    assert not Identifier.objects.values("kind", "value").annotate(n=Count("id")).filter(n__gt=1)
    assert (
        not Identifier.objects.filter(kind="email")
        .values("profile")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    types = dict(PropertyDefinition.objects.values_list("name", "type"))
    holders = set(Identifier.objects.values_list("profile_id", flat=True))
    profiles = {profile.pk: profile for profile in Profile.objects.all()}
    counted = dict(
        Event.objects.exclude(source=Source.SYSTEM)
        .values("profile")
        .annotate(n=Count("id"))
        .values_list("profile", "n")
    )
    for profile in profiles.values():
        # The derived type matches the identifiers held.
        assert profile.identified == (profile.pk in holders), profile
        # Every custom value agrees with its property's type.
        for key, value in profile.custom.items():
            assert key in types, key
            assert value_agrees(value, types[key]), (key, value, types[key])
        # Only anonymous profiles are linked, and only to identified, unlinked ones.
        if profile.linked_to_id is not None:
            target = profiles[profile.linked_to_id]
            assert not profile.identified
            assert target.identified and target.linked_to_id is None
        assert profile.event_count == counted.get(profile.pk, 0)
    assert set(Device.objects.exclude(profile=None).values_list("profile", flat=True)) <= set(
        profiles
    )


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(operations, min_size=1, max_size=12))
def test_random_operations_keep_the_invariants(django_user_model, steps):
    try:
        with transaction.atomic():
            admin_user = django_user_model.objects.create_user(username="admin")
            for step in steps:
                apply(step, admin_user)
                check_invariants()
            raise Rollback
    except Rollback:
        pass
