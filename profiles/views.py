"""Find People and the profile page (with its actions)."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling
from django_tables2 import RequestConfig

from config.access import permission_required
from profiles.exports import people_export_filters, people_export_start
from profiles.filters import PeopleFilter
from profiles.forms import DeleteProfileForm, MarkTestForm
from profiles.models import (
    Event,
    ExportStatus,
    PeopleExport,
    Profile,
    PropertyChange,
    PropertyType,
)
from profiles.properties import DEFAULT_PROPERTIES
from profiles.rules.history import PROFILE_CREATED
from profiles.selectors import (
    MatchCount,
    TimelineCursor,
    age_on,
    people_list,
    people_match_count,
    profile_activity,
    profile_changes,
    profile_event_names,
    profile_export_changes,
    profile_export_events,
    profile_get_for_page,
    profile_linked_anonymous,
    profile_linked_anonymous_ids,
    profile_linked_anonymous_refs,
    profile_property_groups,
    profile_property_names,
    profile_property_types_for,
    profile_reachability,
    profile_timeline,
)
from profiles.services import profile_delete, profile_mark_test
from profiles.tables import PeopleLazyPaginator, PeopleTable

PEOPLE_PER_PAGE = 25
TIMELINE_PAGE = 50
CHART_DAYS = 90


def _wants_partial(request: HttpRequest) -> bool:
    # A history restore (back button after a cache miss) needs the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _render(request: HttpRequest, template: str, context: dict, partial: str, **kwargs):
    """The full page, or only the `partial` ("page.html#name") for htmx; caches keep
    the two apart."""
    name = partial if _wants_partial(request) else template
    response = render(request, name, context, **kwargs)
    patch_vary_headers(response, ("HX-Request",))
    return response


# --- Find People -----------------------------------------------------------------


@require_GET
@permission_required("profiles.view_profile")
def find_people(request: HttpRequest) -> HttpResponse:
    return _find_people(request, count_now=False)


@require_GET
@permission_required("profiles.view_profile")
def people_count(request: HttpRequest) -> HttpResponse:
    """The match count of a search. Find People loads it after its results (counting
    a broad prefix reads up to PEOPLE_COUNT_EXACT_UP_TO rows, most of a page's time);
    htmx gets the count alone, a plain request (no script) the whole page with it."""
    if not _wants_partial(request):
        return _find_people(request, count_now=True)
    filterset = PeopleFilter(request.GET or None, queryset=people_list())
    context = {"match_count": None}
    if filterset.is_searching and not filterset.errors:
        context.update(_match_count_context(request, _counted(filterset.qs)))
    return _render(
        request, "profiles/find_people.html", context, "profiles/find_people.html#match_count"
    )


def _counted(queryset: QuerySet[Profile]) -> MatchCount:
    return people_match_count(
        queryset=queryset,
        exact_up_to=settings.PEOPLE_COUNT_EXACT_UP_TO,
        timeout_ms=settings.PEOPLE_COUNT_TIMEOUT_MS,
    )


def _match_count_context(request: HttpRequest, count: MatchCount) -> dict[str, Any]:
    return {
        "match_count": count,
        "export_filters": people_export_filters(request.GET),
        "exact_up_to": settings.PEOPLE_COUNT_EXACT_UP_TO,
    }


def _find_people(request: HttpRequest, *, count_now: bool) -> HttpResponse:
    filterset = PeopleFilter(request.GET or None, queryset=people_list())
    table = PeopleTable(filterset.qs, order_by="-last_seen")
    RequestConfig(
        request, paginate={"paginator_class": PeopleLazyPaginator, "per_page": PEOPLE_PER_PAGE}
    ).configure(table)
    context = {
        "nav": "people",
        "filter": filterset,
        "table": table,
        "searching": filterset.is_searching,
        "query": request.GET.get("q", "").strip(),
        "sort": request.GET.get("sort", ""),
        "filters_used": any(
            request.GET.get(name) for name in filterset.filters if name not in ("q",)
        ),
    }
    if filterset.is_searching and not filterset.errors:
        page = table.page
        if not page.has_next():
            # The last page is on screen: its rows are the count, no query needed.
            found = (page.number - 1) * PEOPLE_PER_PAGE + len(page.object_list)
            context.update(_match_count_context(request, MatchCount(found, exact=True)))
        elif count_now:
            context.update(_match_count_context(request, _counted(filterset.qs)))
        else:
            context["count_url"] = f"{reverse('profiles:count')}?{request.GET.urlencode()}"
    if not _wants_partial(request):
        context["property_names"] = profile_property_names()
    return _render(
        request, "profiles/find_people.html", context, "profiles/find_people.html#results"
    )


# --- exports of a search ---------------------------------------------------------------
# Who may export people: the permission segment exports ask for (Marketers, Admins).
EXPORT_PERMISSION = "segments.view_segment"


def _own_export_or_404(request: HttpRequest, pk: int) -> PeopleExport:
    """An export is its author's (a file of personal data): others get a 404."""
    export = PeopleExport.objects.filter(pk=pk).first()
    if export is None or not (request.user.is_superuser or export.created_by_id == request.user.pk):
        raise Http404("No such export.")
    return export


@require_POST
@permission_required(EXPORT_PERMISSION)
def people_export_start_view(request: HttpRequest) -> HttpResponse:
    filters = people_export_filters(request.POST)
    try:
        export = people_export_start(filters=filters, user=request.user)
    except ValueError as problem:
        messages.error(request, f"Cannot export this search: {problem}")
        return redirect(f"{reverse('profiles:find_people')}?{urlencode(filters)}")
    return redirect("profiles:export_progress", pk=export.pk)


@require_GET
@permission_required(EXPORT_PERMISSION)
def people_export_progress(request: HttpRequest, pk: int) -> HttpResponse:
    export = _own_export_or_404(request, pk)
    context = {"nav": "people", "export": export, "search": urlencode(export.filters)}
    if _wants_partial(request):
        response = render(request, "profiles/people_export.html#progress", context)
        if export.is_finished:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, "profiles/people_export.html", context)


@require_GET
@permission_required(EXPORT_PERMISSION)
def people_export_download(request: HttpRequest, pk: int) -> HttpResponse:
    export = _own_export_or_404(request, pk)
    if export.status != ExportStatus.DONE or not export.file:
        raise Http404("This export has no file yet.")
    filename = f"people {export.created_at:%Y-%m-%d %H%M}.csv"
    return FileResponse(
        export.file.open("rb"), as_attachment=True, filename=filename, content_type="text/csv"
    )


# --- the profile page ----------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    event: Event
    greyed: bool  # an event of a linked anonymous profile: shown, never counted
    properties_json: str


def _timeline_entries(profile: Profile, events: list[Event]) -> list[TimelineEntry]:
    return [
        TimelineEntry(
            event=event,
            greyed=event.profile_id != profile.pk,
            properties_json=json.dumps(
                event.properties, indent=2, ensure_ascii=False, cls=DjangoJSONEncoder
            ),
        )
        for event in events
    ]


CHART_COLORS = ["#2454d6", "#e07a1f", "#12b76a", "#9e77ed", "#f04438", "#98a2b3"]
CHART_SERIES = 5  # the busiest event names; the rest are "Other"


def activity_chart(
    rows: list[tuple[dt.date, str, int]], *, days: int, today: dt.date
) -> dict[str, Any]:
    """Geometry of a stacked bar chart (events per day by name) drawn as inline SVG."""
    totals = Counter()
    for _, name, count in rows:
        totals[name] += count
    top = [name for name, _ in totals.most_common(CHART_SERIES)]
    series = top + (["Other"] if len(totals) > len(top) else [])
    colors = dict(zip(series, CHART_COLORS, strict=False))
    per_day: dict[dt.date, Counter] = defaultdict(Counter)
    for day, name, count in rows:
        per_day[day][name if name in top else "Other"] += count
    peak = max((sum(counter.values()) for counter in per_day.values()), default=0)
    width, height = 720, 140
    step = width / days
    start = today - dt.timedelta(days=days - 1)
    bars = []
    for index in range(days):
        day = start + dt.timedelta(days=index)
        bottom = float(height)
        for name in series:
            count = per_day.get(day, Counter())[name]
            if not count:
                continue
            bar_height = max(count / peak * height, 1.0)
            bottom -= bar_height
            bars.append(
                {
                    "x": round(index * step + 0.5, 2),
                    "y": round(bottom, 2),
                    "width": round(max(step - 1, 1), 2),
                    "height": round(bar_height, 2),
                    "color": colors[name],
                    "title": f"{day:%Y-%m-%d}: {name} {count}",
                }
            )
    # One string of <rect>s: hundreds of bars through the template engine cost more.
    # Numbers and colours are ours; the title (an event name) is escaped.
    svg_bars = mark_safe(
        "".join(
            f'<rect x="{bar["x"]}" y="{bar["y"]}" width="{bar["width"]}" '
            f'height="{bar["height"]}" fill="{bar["color"]}">'
            f"<title>{html.escape(bar['title'])}</title></rect>"
            for bar in bars
        )
    )
    other_total = sum(count for name, count in totals.items() if name not in top)
    legend = [(name, colors[name], totals[name] if name != "Other" else other_total)
              for name in series]  # fmt: skip
    return {
        "bars": bars,
        "svg_bars": svg_bars,
        "legend": legend,
        "total": sum(totals.values()),
        "peak": peak,
        "width": width,
        "height": height,
        "start": start,
        "end": today,
        "days": days,
    }


class ShownValue(str):
    """A value as shown, with the exact stored value (`exact`) for a tooltip."""

    exact: str = ""


def _moment_text(moment: dt.datetime) -> str:
    """A time in the dashboard's time zone, with the zone written out (README: Dates)."""
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def display_date_property(value: Any) -> str:
    """A date-typed custom property (stored as ISO-8601 UTC text) shown as a date: the
    day alone for a time of exactly 00:00:00 or 12:00:00 UTC (what a date without a
    time is stored as: imports use 12:00:00), else the day and time with the zone."""
    try:
        moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        return display_value(value)
    utc = moment.astimezone(dt.UTC)
    shown = ShownValue(
        f"{utc:%Y-%m-%d}"
        if (utc.hour, utc.minute, utc.second) in ((0, 0, 0), (12, 0, 0)) and not utc.microsecond
        else _moment_text(moment)
    )
    shown.exact = value
    return shown


def display_value(value: Any) -> str:
    """A property value as the page shows it ("" when unset)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, dt.datetime):
        return _moment_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, cls=DjangoJSONEncoder)
    return str(value)


@dataclass(frozen=True)
class ChangeRow:
    change: PropertyChange
    old: str
    new: str
    who: str


def _change_value(change: PropertyChange) -> str:
    if change.property == PROFILE_CREATED and isinstance(change.new_value, dict):
        return " · ".join(
            f"{key}: {display_value(value)}" for key, value in change.new_value.items()
        )
    return display_value(change.new_value)


def _change_rows(changes: list[PropertyChange]) -> list[ChangeRow]:
    return [
        ChangeRow(
            change=change,
            old=display_value(change.old_value),
            new=_change_value(change),
            who=change.actor.get_username() if change.actor else change.actor_label,
        )
        for change in changes
    ]


def _initials(name: str) -> str:
    letters = [word[0] for word in name.split() if word[:1].isalnum()]
    return "".join(letters[:2]).upper() or "?"


def _photo_url(photo: str) -> str:
    return photo if photo.lower().startswith(("https://", "http://")) else ""


def _profile_or_404(ct_id: str) -> Profile:
    # PostgreSQL text cannot hold NUL: such an id names nobody (and must not reach the query).
    profile = profile_get_for_page(ct_id=ct_id) if "\x00" not in ct_id else None
    if profile is None:
        raise Http404("No profile has this CleverTap ID.")
    return profile


def _event_filter(request: HttpRequest) -> str:
    """The timeline's event-name filter ("" for every event)."""
    return request.GET.get("event", "").strip()[:512].replace("\x00", "")


def _property_pairs(profile: Profile) -> dict[str, list[tuple[str, str]]]:
    types = profile_property_types_for(list(profile.custom)) if profile.custom else {}
    dates = {name for name, type_ in types.items() if type_ == PropertyType.DATE}

    def shown(group: str, label: str, value: Any) -> str:
        if group == "Custom" and label in dates:
            return display_date_property(value)
        return display_value(value)

    return {
        group: [(label, shown(group, label, value)) for label, value in pairs]
        for group, pairs in profile_property_groups(
            profile=profile, today=timezone.localdate()
        ).items()
    }


def _profile_context(request: HttpRequest, profile: Profile, notice: str = "") -> dict:
    """Everything the profile page shows: a fixed number of queries, whatever the
    number of events (the timeline and chart are indexed range scans)."""
    today = timezone.now().date()
    devices = list(profile.devices.all())
    linked = profile_linked_anonymous_refs(profile=profile)
    linked_ids = [pk for pk, _ in linked]
    event_filter = _event_filter(request)
    events, cursor = profile_timeline(
        profile_ids=[profile.pk, *linked_ids], limit=TIMELINE_PAGE, name=event_filter
    )
    activity = profile_activity(profile=profile, days=CHART_DAYS, today=today)
    event_names = sorted(
        {*profile_event_names(profile_ids=[profile.pk, *linked_ids])}
        | {name for _, name, _ in activity}
        | ({event_filter} if event_filter else set())
    )
    return {
        "nav": "people",
        "profile": profile,
        "identifiers": list(profile.identifiers.all()),
        "devices": devices,
        "initials": _initials(profile.name),
        "photo_url": _photo_url(profile.photo),
        "groups": _property_pairs(profile),
        "linked_ct_ids": [ct_id for _, ct_id in linked],
        "event_filter": event_filter,
        "event_names": event_names,
        "reachability": profile_reachability(profile=profile, devices=devices),
        "chart": activity_chart(activity, days=CHART_DAYS, today=today),
        "linked_count": len(linked_ids),
        "entries": _timeline_entries(profile, events),
        "next_cursor": cursor.encode() if cursor else "",
        "changes": _change_rows(profile_changes(profile=profile)),
        "notice": notice,
    }


@require_GET
@permission_required("profiles.view_profile")
def profile_detail(request: HttpRequest, ct_id: str) -> HttpResponse:
    profile = _profile_or_404(ct_id)
    return _render(
        request,
        "profiles/profile_detail.html",
        _profile_context(request, profile),
        "profiles/profile_detail.html#profile-body",
    )


@require_GET
@permission_required("profiles.view_profile")
def profile_events(request: HttpRequest, ct_id: str) -> HttpResponse:
    """Older timeline events: rows for infinite scroll (htmx) or a page of their own."""
    profile = _profile_or_404(ct_id)
    before = None
    if request.GET.get("before"):
        before = TimelineCursor.decode(request.GET["before"])
        if before is None:
            return HttpResponseBadRequest("The “before” position is not valid.")
    linked_ids = profile_linked_anonymous_ids(profile=profile)
    event_filter = _event_filter(request)
    events, cursor = profile_timeline(
        profile_ids=[profile.pk, *linked_ids], before=before, limit=TIMELINE_PAGE,
        name=event_filter,
    )  # fmt: skip
    context = {
        "nav": "people",
        "profile": profile,
        "event_filter": event_filter,
        "linked_count": len(linked_ids),
        "entries": _timeline_entries(profile, events),
        "next_cursor": cursor.encode() if cursor else "",
        "before": before,
    }
    return _render(
        request,
        "profiles/profile_events.html",
        context,
        "profiles/profile_detail.html#timeline-rows",
    )


# --- actions ---------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@permission_required("profiles.mark_test_profile")
def profile_mark_test_view(request: HttpRequest, ct_id: str) -> HttpResponse:
    """GET: the confirmation page (without JavaScript). POST: mark or unmark; htmx
    gets the re-rendered profile body (badge, property, system event) at once."""
    profile = _profile_or_404(ct_id)
    if request.method == "GET":
        wanted = request.GET.get("is_test", "0" if profile.is_test else "1") == "1"
        return render(
            request,
            "profiles/profile_confirm_test.html",
            {"nav": "people", "profile": profile, "is_test": wanted},
        )
    form = MarkTestForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("Say whether to mark (is_test=1) or unmark (is_test=0).")
    is_test = form.cleaned_data["is_test"]
    was_test = profile.is_test
    profile_mark_test(profile=profile, user=request.user, is_test=is_test)
    if was_test == is_test:
        notice = "Nothing changed: it already was a test profile." if is_test else (
            "Nothing changed: it was not a test profile."
        )  # fmt: skip
    else:
        notice = "Marked as a test profile." if is_test else "No longer a test profile."
    if _wants_partial(request):
        profile = _profile_or_404(ct_id)
        return _render(
            request,
            "profiles/profile_detail.html",
            _profile_context(request, profile, notice=notice),
            "profiles/profile_detail.html#profile-body",
        )
    messages.success(request, notice)
    return redirect("profiles:detail", ct_id=profile.ct_id)


@require_http_methods(["GET", "POST"])
@permission_required("profiles.delete_profile")
def profile_delete_view(request: HttpRequest, ct_id: str) -> HttpResponse:
    profile = _profile_or_404(ct_id)
    data = request.POST if request.method == "POST" else None
    form = DeleteProfileForm(data, ct_id=profile.ct_id)
    if request.method == "POST" and form.is_valid():
        label = str(profile)
        deleted = profile_delete(profile=profile, user=request.user)
        linked = deleted - 1
        suffix = (
            f" and {linked} linked anonymous profile{'s' if linked != 1 else ''}" if linked else ""
        )
        messages.success(request, f"Deleted the profile of {label}{suffix}, with all its data.")
        return redirect("profiles:find_people")
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "profiles/profile_delete.html",
        {"nav": "people", "profile": profile, "form": form},
        status=status,
    )


def _export_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else value


def _profile_export(profile: Profile, linked: list[Profile]) -> Iterator[str]:
    """The JSON document, streamed: events and changes can be many."""
    encoder = DjangoJSONEncoder(ensure_ascii=False)
    ct_ids = {profile.pk: profile.ct_id, **{other.pk: other.ct_id for other in linked}}

    def properties(person: Profile) -> dict[str, Any]:
        default = {prop.key: _export_value(getattr(person, prop.field))
                   for prop in DEFAULT_PROPERTIES.values()}  # fmt: skip
        today = timezone.localdate()
        system = {
            "Age": age_on(person.dob, today) if person.dob else None,
            "First seen": person.first_seen,
            "Last seen": person.last_seen,
            "Event count": person.event_count,
            "Last platform": person.last_platform,
            "Last device": person.last_device,
            "Last location": person.last_location,
        }
        return {"default": default, "custom": person.custom, "system": system}

    def devices(person: Profile) -> list[dict[str, Any]]:
        return [
            {
                "object_id": device.object_id, "platform": device.platform, "make": device.make,
                "model": device.model, "push_token": device.push_token,
                "push_enabled": device.push_enabled, "first_seen": device.first_seen,
                "last_seen": device.last_seen,
            }
            for device in person.devices.all()
        ]  # fmt: skip

    head = {
        "format": "userprofiles.profile-export/1",
        "exported_at": timezone.now(),
        "profile": {
            "ct_id": profile.ct_id,
            "type": profile.profile_type,
            "created_at": profile.created_at,
            "updated_at": profile.updated_at,
        },
        "identifiers": [
            {"kind": identifier.kind, "value": identifier.value, "since": identifier.created_at}
            for identifier in profile.identifiers.all()
        ],
        "properties": properties(profile),
        "devices": devices(profile),
        "linked_anonymous_profiles": [
            {"ct_id": other.ct_id, "properties": properties(other), "devices": devices(other)}
            for other in linked
        ],
    }
    yield encoder.encode(head)[:-1] + ', "events": ['
    for index, event in enumerate(profile_export_events(profile_ids=list(ct_ids))):
        row = {
            "profile": ct_ids[event.profile_id],
            "linked_anonymous": event.profile_id != profile.pk,
            "name": event.name,
            "ts": event.ts,
            "properties": event.properties,
            "source": event.source,
            "device": event.device.object_id if event.device else None,
            "client_event_id": event.client_event_id,
            "received_at": event.received_at,
        }
        yield ("," if index else "") + encoder.encode(row)
    yield '], "property_changes": ['
    for index, change in enumerate(profile_export_changes(profile_ids=list(ct_ids))):
        row = {
            "profile": ct_ids[change.profile_id],
            "property": change.property,
            "old_value": change.old_value,
            "new_value": change.new_value,
            "source": change.source,
            "by": change.actor.get_username() if change.actor else change.actor_label,
            "changed_at": change.changed_at,
        }
        yield ("," if index else "") + encoder.encode(row)
    yield "]}"


@require_GET
@permission_required("profiles.view_profile")
def profile_download(request: HttpRequest, ct_id: str) -> StreamingHttpResponse:
    """Everything we hold on the person, as a JSON attachment."""
    profile = _profile_or_404(ct_id)
    linked = profile_linked_anonymous(profile=profile)
    filename = re.sub(r"[^A-Za-z0-9_-]", "_", profile.ct_id)
    response = StreamingHttpResponse(
        _profile_export(profile, linked), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="profile-{filename}.json"'
    response["Cache-Control"] = "no-store"
    return response
