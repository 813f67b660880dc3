"""Find People's results table: its columns, their order and the sort orders.

The rows themselves are written by templates/profiles/people_table.html.
"""

from __future__ import annotations

import django_tables2 as tables
from django.core.paginator import EmptyPage
from django.db.models import F, QuerySet
from django_tables2 import LazyPaginator

from profiles.models import Profile


class PeopleLazyPaginator(LazyPaginator):
    """Never counts the rows (only looks one page ahead), and refuses page numbers
    so deep that their OFFSET would overflow or scan most of a million rows; the
    table then shows the first page."""

    max_pages = 10_000

    def validate_number(self, number):
        number = super().validate_number(number)
        if number > self.max_pages:
            raise EmptyPage(f"Pages stop at {self.max_pages:,}: narrow the search instead.")
        return number


class PeopleTable(tables.Table):
    name = tables.Column(verbose_name="Name")
    identities = tables.Column(verbose_name="Identities", accessor="pk", orderable=False)
    type = tables.Column(verbose_name="Type", accessor="identified", orderable=False)
    last_seen = tables.Column(verbose_name="Last seen", initial_sort_descending=True)
    event_count = tables.Column(
        verbose_name="Events", attrs={"th": {"class": "num"}}, initial_sort_descending=True
    )
    test = tables.Column(verbose_name="Test", accessor="pk", orderable=False)

    class Meta:
        model = Profile
        fields = ("name", "identities", "type", "last_seen", "event_count", "test")
        template_name = "profiles/people_table.html"
        attrs = {"class": "people"}

    # Orderings end with the id so pages never shift; last seen uses its index.
    def order_last_seen(self, queryset: QuerySet, is_descending: bool) -> tuple[QuerySet, bool]:
        if is_descending:
            return queryset.order_by(F("last_seen").desc(nulls_last=True), F("id").desc()), True
        return queryset.order_by(F("last_seen").asc(nulls_first=True), F("id").asc()), True

    def order_name(self, queryset: QuerySet, is_descending: bool) -> tuple[QuerySet, bool]:
        prefix = "-" if is_descending else ""
        return queryset.order_by(f"{prefix}name", f"{prefix}id"), True

    def order_event_count(self, queryset: QuerySet, is_descending: bool) -> tuple[QuerySet, bool]:
        prefix = "-" if is_descending else ""
        return queryset.order_by(f"{prefix}event_count", f"{prefix}id"), True
