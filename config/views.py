from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET
from kombu import Connection

from config.access import groups_holding, sections_for


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Land on the first section the person may use (a page of its own when there is none)."""
    sections = sections_for(request.user)
    if sections:
        return redirect(sections[0]["url"])
    return render(request, "home_no_access.html")


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
