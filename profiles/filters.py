"""Find People's search box and filters."""

from __future__ import annotations

import datetime as dt

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils import timezone

from profiles.forms import PeopleFilterForm
from profiles.models import Profile
from profiles.selectors import has_push_q, people_search_q, test_profiles_q


class CheckboxFilter(django_filters.Filter):
    """A checkbox that narrows the list when ticked and does nothing otherwise."""

    field_class = forms.BooleanField

    def __init__(self, *args, condition: Q, **kwargs) -> None:
        self.condition = condition
        kwargs.setdefault("required", False)
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet, value: bool) -> QuerySet:
        return qs.filter(self.condition) if value else qs


class PeopleFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="filter_search",
        label="Search",
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "placeholder": "Identity, email, phone, CleverTap ID or the start of a name",
                "autocomplete": "off",
                "spellcheck": "false",
                "autofocus": True,
            }
        ),
    )
    type = django_filters.ChoiceFilter(
        label="Profile type",
        choices=[("identified", "Identified"), ("anonymous", "Anonymous")],
        empty_label="Any type",
        method="filter_type",
    )
    test = CheckboxFilter(label="Test profiles only", condition=test_profiles_q())
    has_email = CheckboxFilter(label="Has email", condition=~Q(email=""))
    has_phone = CheckboxFilter(label="Has phone", condition=~Q(phone=""))
    has_push = CheckboxFilter(label="Has push (a device with a push token)", condition=has_push_q())
    seen_within = django_filters.NumberFilter(
        label="Last seen within (days)",
        method="filter_seen_within",
        min_value=1,
        max_value=36500,
        widget=forms.NumberInput(attrs={"min": 1, "placeholder": "e.g. 30"}),
    )
    prop = django_filters.CharFilter(
        label="Property",
        method="filter_noop",
        widget=forms.TextInput(
            attrs={"list": "property-names", "placeholder": "e.g. Gender or Customer Type"}
        ),
    )
    value = django_filters.CharFilter(
        label="equals",
        method="filter_property",
        widget=forms.TextInput(attrs={"placeholder": "value"}),
    )

    class Meta:
        model = Profile
        fields: list[str] = []
        form = PeopleFilterForm

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(people_search_q(query=value)) if value.strip() else queryset

    def filter_type(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(identified=value == "identified")

    def filter_seen_within(self, queryset: QuerySet, name: str, value) -> QuerySet:
        return queryset.filter(last_seen__gte=timezone.now() - dt.timedelta(days=int(value)))

    def filter_noop(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset  # the property name is used by filter_property

    def filter_property(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        condition = self.form.property_condition
        return queryset.filter(condition) if condition is not None else queryset

    @property
    def is_searching(self) -> bool:
        """Whether anything narrows the list (else it is the default listing)."""
        if not self.is_bound:
            return False
        return any(
            self.data.get(name, "") not in ("", None) for name in self.filters if name != "prop"
        )
