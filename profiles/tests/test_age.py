"""Age is computed from DOB at query time: "age between 25 and 30" is a DOB range.

Birthdays count from the day itself; someone born on 29 February turns a year
older on 1 March in non-leap years (PostgreSQL's age()) and on 29 February in
leap years. age_q (the filter segments use) must agree with age_on and with
PostgreSQL's own age() on every boundary.
"""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from profiles.models import Profile
from profiles.selectors import age_on, age_q
from profiles.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def ages_matching(today: dt.date, **bounds) -> set[str]:
    return set(Profile.objects.filter(age_q(today=today, **bounds)).values_list("name", flat=True))


def postgres_age(dob: dt.date, day: dt.date) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT date_part('year', age(%s::date, %s::date))::int", [day, dob])
        return cursor.fetchone()[0]


@pytest.mark.parametrize(
    ("dob", "day", "age"),
    [
        (dt.date(1990, 6, 15), dt.date(2020, 6, 15), 30),  # birthday today
        (dt.date(1990, 6, 15), dt.date(2020, 6, 14), 29),  # the day before
        (dt.date(1990, 6, 15), dt.date(2020, 6, 16), 30),
        (dt.date(2000, 2, 29), dt.date(2023, 2, 28), 22),  # non-leap year: not yet
        (dt.date(2000, 2, 29), dt.date(2023, 3, 1), 23),  # ... turns on 1 March
        (dt.date(2000, 2, 29), dt.date(2024, 2, 28), 23),  # leap year: the day before
        (dt.date(2000, 2, 29), dt.date(2024, 2, 29), 24),  # ... birthday itself
        (dt.date(2000, 3, 1), dt.date(2024, 2, 29), 23),
        (dt.date(2000, 2, 28), dt.date(2023, 2, 28), 23),
        (dt.date(2024, 2, 29), dt.date(2024, 2, 29), 0),
    ],
)
def test_age_on_matches_postgresql(dob, day, age):
    assert age_on(dob, day) == age
    assert postgres_age(dob, day) == age


def test_between_25_and_30_includes_both_ends_on_their_birthdays():
    today = dt.date(2024, 6, 15)
    people = {
        "turns 25 today": dt.date(1999, 6, 15),
        "turns 25 tomorrow": dt.date(1999, 6, 16),
        "turned 30 today": dt.date(1994, 6, 15),
        "turns 31 today": dt.date(1993, 6, 15),
        "turns 31 tomorrow": dt.date(1993, 6, 16),
        "27": dt.date(1997, 1, 1),
    }
    for name, dob in people.items():
        ProfileFactory(name=name, dob=dob)
    ProfileFactory(name="no DOB", dob=None)
    assert ages_matching(today, minimum=25, maximum=30) == {
        "turns 25 today",
        "turned 30 today",
        "turns 31 tomorrow",
        "27",
    }
    assert ages_matching(today, minimum=31) == {"turns 31 today"}
    assert ages_matching(today, maximum=24) == {"turns 25 tomorrow"}


@pytest.mark.parametrize(
    "today",
    [
        dt.date(2023, 2, 27),
        dt.date(2023, 2, 28),
        dt.date(2023, 3, 1),
        dt.date(2024, 2, 28),
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 1),
    ],
)
def test_age_q_agrees_with_age_on_around_29_february(today):
    births = [
        dt.date(year, month, day)
        for year in (1999, 2000, 2001, 2003, 2004)
        for month, day in ((2, 27), (2, 28), (3, 1), (3, 2))
    ]
    births += [dt.date(2000, 2, 29), dt.date(2004, 2, 29), dt.date(1996, 2, 29)]
    for dob in births:
        ProfileFactory(name=dob.isoformat(), dob=dob)
    for minimum, maximum in ((18, 24), (19, 19), (20, 23), (22, 22), (23, 23), (24, 28)):
        expected = {dob.isoformat() for dob in births if minimum <= age_on(dob, today) <= maximum}
        assert ages_matching(today, minimum=minimum, maximum=maximum) == expected, (
            minimum,
            maximum,
        )


def test_age_q_defaults_to_today():
    today = timezone.localdate()
    ProfileFactory(name="baby", dob=today)
    assert Profile.objects.filter(age_q(maximum=0)).count() == 1
    assert Profile.objects.filter(age_q(minimum=1)).count() == 0
