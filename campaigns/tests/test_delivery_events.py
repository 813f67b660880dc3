"""Notification system events land on the profile timeline through the ingest path."""

import pytest

from campaigns.delivery import notification_events_record
from profiles.ingest import ingest_records
from profiles.models import Event, Identifier, IdentifierKind
from profiles.services import Actor


@pytest.mark.django_db
def test_notification_sent_is_recorded_on_the_profile():
    ingest_records(
        [{"type": "profile", "identity": "ann-1", "profileData": {"Name": "Ann"}}],
        actor=Actor.system(),
    )
    profile_id = Identifier.objects.get(kind=IdentifierKind.IDENTITY, value="ann-1").profile_id
    notification_events_record(
        deliveries=[(profile_id, "Notification Sent", {"campaign_id": 7, "channel": "email"})]
    )
    event = Event.objects.get(profile_id=profile_id)
    assert event.properties["campaign_id"] == 7


@pytest.mark.django_db
def test_api_clients_still_may_not_send_reserved_notification_events():
    from profiles.models import Source

    result = ingest_records(
        [{"type": "event", "identity": "ann-1", "evtName": "Notification Sent", "evtData": {}}],
        actor=Actor(source=Source.API, label="key"),
    )
    assert "restricted system event name" in result.refusals[1].message
    assert not Event.objects.exists()
