"""Settings → API credentials: list with usage, create (passcode shown once), revoke;
Settings → SDK: account ids, the snippet to paste, allowed origins, whether web push is on."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from api.credentials import (
    api_credential_create,
    api_credential_list,
    api_credential_revoke,
    api_usage_rows,
)
from api.sdk_forms import AllowedOriginsForm
from api.sdk_services import sdk_accounts, sdk_settings_update
from campaigns.delivery.selectors import vapid_public_key
from config.access import permission_required
from profiles.forms import ApiCredentialForm
from profiles.models import ApiCredential

USAGE_DAYS = 14


@require_GET
@permission_required("profiles.view_apicredential")
def api_credentials(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "api/settings/api_credentials.html",
        {
            "nav": "settings",
            "credentials": api_credential_list(),
            "usage": api_usage_rows(days=USAGE_DAYS),
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
            "api/settings/api_credential_created.html",
            {"nav": "settings", "credential": credential, "passcode": passcode},
        )
        response["Cache-Control"] = "no-store"
        return response
    return render(
        request, "api/settings/api_credential_new.html", {"nav": "settings", "form": form}
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
        "api/settings/api_credential_revoke.html",
        {"nav": "settings", "credential": credential},
    )


# --- Settings → SDK ----------------------------------------------------------------


@require_GET
@permission_required("profiles.view_apicredential")
def sdk_settings(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "api/sdk_settings.html",
        {
            "nav": "settings",
            "accounts": sdk_accounts(),
            "target_domain": request.get_host(),
            "can_change": request.user.has_perm("profiles.change_apicredential"),
            "web_push_key": vapid_public_key(),
        },
    )


@require_http_methods(["POST"])
@permission_required("profiles.change_apicredential")
def sdk_origins_update(request: HttpRequest, account_id: str) -> HttpResponse:
    credential = get_object_or_404(ApiCredential, account_id=account_id, revoked_at__isnull=True)
    form = AllowedOriginsForm(request.POST)
    if not form.is_valid():
        for error in form.errors.get("origins", []):
            messages.error(request, f"{credential.account_id}: {error} — nothing was changed.")
        return redirect("settings:sdk")
    sdk_settings_update(credential=credential, origins=form.cleaned_data["origins"])
    messages.success(request, f"Allowed origins of {credential.account_id} saved.")
    return redirect("settings:sdk")
