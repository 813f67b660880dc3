import django_tables2 as tables
from django.utils import timezone
from django.utils.html import format_html

from segments.models import Segment


class SegmentTable(tables.Table):
    name = tables.Column(linkify=("segments:detail", {"pk": tables.A("pk")}))
    last_count = tables.Column(verbose_name="Size at last count", default="not counted yet")
    updated_by = tables.Column(
        verbose_name="Updated by", accessor="updated_by__username", default="—"
    )
    updated_at = tables.DateTimeColumn(verbose_name="Updated at", format="Y-m-d H:i")

    class Meta:
        model = Segment
        fields = ("name", "last_count", "updated_by", "updated_at")
        order_by = ("name",)
        attrs = {"class": "segments"}
        empty_text = "No segments yet."

    def render_name(self, value, record):
        if record.is_system:
            return format_html('{} <span class="badge">system</span>', value)
        return value

    def render_last_count(self, value, record):
        if value is None:
            return "not counted yet"
        as_of = timezone.localtime(record.counted_at) if record.counted_at else None
        if as_of is None:
            return f"{value:,}"
        return format_html(
            '{} <span class="muted">as of {}</span>', f"{value:,}", as_of.strftime("%Y-%m-%d %H:%M")
        )
