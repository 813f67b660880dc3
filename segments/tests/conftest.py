import datetime as dt

import pytest

from profiles.models import EventName, PropertyDefinition
from profiles.tests.roles import ensure_role_groups
from segments.models import SYSTEM_DEFINITIONS, Segment
from segments.selectors import segment_members

NOW = dt.datetime(2024, 6, 15, 12, 0, tzinfo=dt.UTC)


def system_segments_restore() -> None:
    """The system segments are rows of a data migration (segments 0003): a flushing
    (transactional) test removes them, so put them back as the migration made them."""
    Segment.objects.bulk_create(
        [
            Segment(system_key=key, name=key.label, definition=definition)
            for key, definition in SYSTEM_DEFINITIONS.items()
        ],
        ignore_conflicts=True,
    )


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
    system_segments_restore()
