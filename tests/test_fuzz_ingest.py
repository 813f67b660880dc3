"""Property-based: `ingest_records` with arbitrary JSON values never raises; every
record is either stored or refused with a code, and a refused record leaves nothing.

Each example runs in its own transaction, rolled back afterwards.
"""

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.ingest import ingest_records
from profiles.models import Event, Profile, Source
from profiles.properties import RecordError
from profiles.services import Actor

pytestmark = pytest.mark.django_db
API = Actor(source=Source.API, label="fuzz")


class Rollback(Exception):
    pass


# Text as a client may send it after json.loads: any code point, lone surrogates and NUL too.
any_text = st.text(st.characters(blacklist_categories=()), max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**20, max_value=10**400) | st.integers(max_value=-(10**20)),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    st.sampled_from(["$D_1700000000", "$D_x", "", "Gold"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.one_of(any_text, st.sampled_from(["$add", "$incr", "$set"])), inner, max_size=3
        )
    ),
    max_leaves=8,
)
identifier_keys = st.sampled_from(["identity", "objectId", "FBID", "GPID"])
shaped_records = st.builds(
    lambda kind, key, who, name, data, ts, extra: {
        "type": kind,
        key: who,
        "evtName": name,
        "evtData": data,
        "profileData": data,
        "ts": ts,
        **extra,
    },
    st.one_of(st.sampled_from(["event", "profile"]), json_values),
    identifier_keys,
    st.one_of(st.sampled_from(["ann", "bob", "__0123456789abcdef0123456789abcdef"]), json_values),
    st.one_of(st.sampled_from(["Charged", "App Launched"]), json_values),
    st.one_of(
        st.dictionaries(st.sampled_from(["Plan", "Amount", "Tags"]), json_values), json_values
    ),
    st.one_of(st.integers(1_500_000_000, 1_900_000_000), json_values),
    st.dictionaries(any_text, json_values, max_size=2),
)
records = st.lists(st.one_of(shaped_records, json_values), min_size=1, max_size=5)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=records)
def test_any_json_is_stored_or_refused_with_a_code(batch):
    try:
        with transaction.atomic():
            result = ingest_records(batch, actor=API)
            assert result.total == len(batch)
            assert set(result.refusals) <= set(range(1, len(batch) + 1))
            for refusal in result.refusals.values():
                assert isinstance(refusal, RecordError)
                assert isinstance(refusal.code, int) and refusal.code > 0
                assert refusal.message
            if result.processed == 0:  # a refused record leaves nothing behind
                assert not Profile.objects.exists()
                assert not Event.objects.exists()
            raise Rollback
    except Rollback:
        pass
