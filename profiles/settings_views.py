"""Settings → API credentials: list with usage, create (passcode shown once), revoke."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import messages
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from config.access import permission_required
from profiles.credentials import api_credential_create, api_credential_revoke
from profiles.models import ApiCredential, ApiUsageDay

USAGE_DAYS = 14


class ApiCredentialForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Who or what uses it, e.g. “Mobile backend”.")


def usage_rows(*, days: int = USAGE_DAYS) -> list[dict]:
    """Requests per credential and endpoint over the last `days` days, by outcome."""
    since = timezone.localdate() - dt.timedelta(days=days - 1)
    return list(
        ApiUsageDay.objects.filter(day__gte=since)
        .values("credential__name", "credential__account_id", "endpoint")
        .annotate(
            ok=Sum("count", filter=Q(outcome="2xx"), default=0),
            client_errors=Sum("count", filter=Q(outcome="4xx"), default=0),
            server_errors=Sum("count", filter=Q(outcome="5xx"), default=0),
            total=Sum("count"),
        )
        .order_by("credential__name", "credential__account_id", "endpoint")
    )


@require_GET
@permission_required("profiles.view_apicredential")
def api_credentials(request: HttpRequest) -> HttpResponse:
    credentials = (
        ApiCredential.objects.select_related("created_by")
        .annotate(days_used=Count("usage__day", distinct=True))
        .order_by("revoked_at", "-created_at")
    )
    return render(
        request,
        "profiles/settings/api_credentials.html",
        {
            "nav": "settings",
            "credentials": credentials,
            "usage": usage_rows(),
            "usage_days": USAGE_DAYS,
            "can_add": request.user.has_perm("profiles.add_apicredential"),
            "can_revoke": request.user.has_perm("profiles.change_apicredential"),
        },
    )


@require_http_methods(["GET", "POST"])
@permission_required("profiles.add_apicredential")
def api_credential_new(request: HttpRequest) -> HttpResponse:
    form = ApiCredentialForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        credential, passcode = api_credential_create(
            name=form.cleaned_data["name"], created_by=request.user
        )
        # Rendered, not redirected: the passcode exists only in this response.
        response = render(
            request,
            "profiles/settings/api_credential_created.html",
            {"nav": "settings", "credential": credential, "passcode": passcode},
        )
        response["Cache-Control"] = "no-store"
        return response
    return render(
        request, "profiles/settings/api_credential_new.html", {"nav": "settings", "form": form}
    )


@require_http_methods(["GET", "POST"])
@permission_required("profiles.change_apicredential")
def api_credential_revoke_view(request: HttpRequest, account_id: str) -> HttpResponse:
    credential = get_object_or_404(ApiCredential, account_id=account_id)
    if request.method == "POST":
        api_credential_revoke(credential=credential, user=request.user)
        messages.success(request, f"Revoked “{credential.name}” ({credential.account_id}).")
        return redirect("settings:api_credentials")
    return render(
        request,
        "profiles/settings/api_credential_revoke.html",
        {"nav": "settings", "credential": credential},
    )
