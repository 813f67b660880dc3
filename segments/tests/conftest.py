import datetime as dt

import pytest

from profiles.models import EventName, PropertyDefinition
from profiles.tests.roles import ensure_role_groups
from segments.selectors import segment_members
from segments.services import segment_system_ensure

NOW = dt.datetime(2024, 6, 15, 12, 0, tzinfo=dt.UTC)


def names(definition, *, now=NOW) -> set[str]:
    """The names of the profiles a definition matches (the tests name every profile)."""
    return set(segment_members(definition, now=now).values_list("name", flat=True))


@pytest.fixture
def custom_types(db):
    for name, type_ in [
        ("Customer Type", "string"),
        ("Score", "number"),
        ("Interests", "list"),
        ("Renewal", "date"),
        ("VIP", "boolean"),
    ]:
        PropertyDefinition.objects.create(scope="profile", name=name, type=type_)
    EventName.objects.create(name="Charged")


@pytest.fixture(autouse=True)
def _role_groups(request):
    names = request.fixturenames
    marker = request.node.get_closest_marker("django_db")
    transactional = marker is not None and marker.kwargs.get("transaction")
    if transactional or "transactional_db" in names or "live_server" in names:
        request.getfixturevalue("transactional_db")
    elif marker is not None or "db" in names:
        request.getfixturevalue("db")
    else:
        return
    ensure_role_groups()
    segment_system_ensure()  # a flush in an earlier test may have removed them
