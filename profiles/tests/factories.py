import datetime as dt

import factory
from django.utils import timezone

from profiles.models import Device, Event, Identifier, Profile, Source


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile

    name = factory.Faker("name")
    last_seen = factory.LazyFunction(timezone.now)
    first_seen = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=30))


class IdentifierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identifier

    profile = factory.SubFactory(ProfileFactory)
    kind = "identity"
    value = factory.Sequence(lambda n: f"user-{n}")


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    object_id = factory.Sequence(lambda n: f"__{n:032x}")
    profile = factory.SubFactory(ProfileFactory)
    platform = "Android"


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    profile = factory.SubFactory(ProfileFactory)
    name = "Product Viewed"
    ts = factory.LazyFunction(timezone.now)
    properties = factory.LazyFunction(dict)
    source = Source.SDK


def identified_profile(identity: str, **fields) -> Profile:
    """A profile holding the identity (the trigger marks it identified)."""
    profile = ProfileFactory(**fields)
    IdentifierFactory(profile=profile, kind="identity", value=identity)
    profile.refresh_from_db()
    return profile
