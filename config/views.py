from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET
from kombu import Connection

from config.access import groups_holding, sections_for
from imports.selectors import import_run_list
from profiles.models import OverviewDay
from profiles.selectors import overview_get

RECENT_IMPORTS = 5


CHART_WIDTH, CHART_HEIGHT = 600, 120


def overview_chart(days: list[OverviewDay]) -> dict[str, Any]:
    """Geometry of the overview's bar chart: new and active profiles per day, side by
    side, as SVG rectangles (server-drawn: no script, which the CSP would refuse)."""
    peak = max((max(day.new_profiles, day.active_profiles) for day in days), default=0)
    step = CHART_WIDTH / max(len(days), 1)
    bar = max(step / 2 - 1, 1)
    bars = []
    for index, day in enumerate(days):
        for offset, (series, value) in enumerate(
            (("new", day.new_profiles), ("active", day.active_profiles))
        ):
            height = value / peak * CHART_HEIGHT if peak else 0
            if value:
                height = max(height, 1.0)
            bars.append(
                {
                    "series": series,
                    "x": round(index * step + offset * (bar + 1) + 0.5, 2),
                    "y": round(CHART_HEIGHT - height, 2),
                    "width": round(bar, 2),
                    "height": round(height, 2),
                    "title": f"{day.day:%Y-%m-%d}: {value:,} {series}",
                }
            )
    return {
        "bars": bars,
        "peak": peak,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "start": days[0].day if days else None,
        "end": days[-1].day if days else None,
        "new_total": sum(day.new_profiles for day in days),
    }


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The overview for people who may view profiles; everyone else lands on the first
    section they may use (a page of its own when there is none)."""
    if not request.user.has_perm("profiles.view_profile"):
        sections = sections_for(request.user)
        if sections:
            return redirect(sections[0]["url"])
        return render(request, "home_no_access.html")
    figures = overview_get(today=timezone.localdate())
    context = {
        "nav": "home",
        "overview": figures,
        "chart": overview_chart(figures.days),
        "refresh_minutes": max(settings.OVERVIEW_REFRESH_SECONDS // 60, 1),
        "zone": settings.TIME_ZONE,
    }
    if request.user.has_perm("imports.view_importrun"):
        context["imports"] = list(import_run_list()[:RECENT_IMPORTS])
    return render(request, "home.html", context)


def _database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, "ok"
    except Exception as error:
        return False, str(error)


def _broker_ok() -> tuple[bool, str]:
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as broker:
            broker.ensure_connection(max_retries=1)
        return True, "ok"
    except Exception as error:
        return False, str(error)


@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    database_ok, database_detail = _database_ok()
    broker_ok, broker_detail = _broker_ok()
    healthy = database_ok and broker_ok
    return JsonResponse(
        {
            "status": "ok" if healthy else "fail",
            "database": database_detail,
            "broker": broker_detail,
        },
        status=200 if healthy else 503,
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    reason = str(exception) if exception and str(exception) else "You do not have permission."
    perm = getattr(exception, "perm", "")
    sections = sections_for(request.user) if request.user.is_authenticated else []
    context = {
        "reason": reason,
        "holders": groups_holding(perm) if perm else [],
        "back": sections[0] if sections else None,
    }
    return render(request, "403.html", context, status=403)
