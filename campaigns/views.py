import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from campaigns import selectors, services
from campaigns.delivery import services as delivery_services
from campaigns.delivery.forms import MessagingSettingsForm
from campaigns.delivery.selectors import messaging_overview, outbox_messages
from campaigns.forms import CampaignForm, PreviewForm
from campaigns.models import Campaign, CampaignRun
from config.access import permission_required, require_permission
from profiles.models import Profile


@require_GET
@permission_required("campaigns.view_campaign")
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "campaigns/list.html",
                  {"nav": "campaigns", "campaigns": selectors.campaign_list()})  # fmt: skip


@require_http_methods(["GET", "POST"])
@permission_required("campaigns.view_campaign")
def edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=pk) if pk is not None else None
    require_permission("campaigns.change_campaign" if campaign else "campaigns.add_campaign",
                       request)  # fmt: skip
    form = CampaignForm(request.POST or None, instance=campaign)
    if request.method == "POST" and form.is_valid():
        saved = services.campaign_save(form.save(commit=False), user=request.user)
        messages.success(request, f"Saved “{saved.name}”.")
        return redirect("campaigns:detail", pk=saved.pk)
    return render(request, "campaigns/edit.html",
                  {"nav": "campaigns", "form": form, "campaign": campaign})  # fmt: skip


@require_GET
@permission_required("campaigns.view_campaign")
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign.objects.select_related("segment"), pk=pk)
    runs = list(campaign.runs.all()[:10])
    for run in runs:
        run.counts = selectors.run_outcome_counts(run)
    test_profiles = Profile.objects.filter(services.test_profiles_q()).order_by("pk")[:50]
    return render(request, "campaigns/detail.html", {
        "nav": "campaigns", "campaign": campaign, "runs": runs,
        "preview_form": PreviewForm(), "test_profiles": test_profiles})  # fmt: skip


@require_GET
@permission_required("campaigns.view_campaign")
def preview(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign.objects.select_related("segment"), pk=pk)
    form = PreviewForm(request.GET)
    query = form.cleaned_data["q"].strip() if form.is_valid() else ""
    rows = selectors.preview(campaign, query=query)
    context = {"campaign": campaign, "rows": rows, "query": query, "form": form}
    return render(request, "campaigns/preview.html", {"nav": "campaigns", **context})


@require_POST
@permission_required("campaigns.send_campaign")
def test_send(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=pk)
    profile = None
    chosen = request.POST.get("profile", "").strip()
    if chosen:
        profile = Profile.objects.filter(pk=int(chosen) if chosen.isdigit() else 0).first()
        if profile is None:
            messages.error(request, "That test profile does not exist.")
            return redirect("campaigns:detail", pk=campaign.pk)
    try:
        run = services.send_test(campaign, user=request.user, profile=profile)
    except services.CampaignProblem as problem:
        messages.error(request, str(problem))
        return redirect("campaigns:detail", pk=campaign.pk)
    counts = selectors.run_outcome_counts(run)
    summary = ", ".join(f"{label}: {n}" for label, n in counts.items()) or "no test profiles"
    messages.success(request, f"Test send done. {summary}.")
    return redirect("campaigns:detail", pk=campaign.pk)


@require_POST
@permission_required("campaigns.send_campaign")
def send(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=pk)
    try:
        if campaign.audience_kind == "live":
            services.live_go(campaign, user=request.user)
            messages.success(request, f"“{campaign.name}” is live.")
        else:
            services.send_start(campaign, user=request.user)
            messages.success(request, f"Sending “{campaign.name}”.")
    except services.CampaignProblem as problem:
        messages.error(request, str(problem))
    return redirect("campaigns:detail", pk=campaign.pk)


@require_POST
@permission_required("campaigns.send_campaign")
def stop(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(CampaignRun, pk=pk)
    services.run_stop(run)
    messages.success(request, "Stopping after the current batch.")
    return redirect("campaigns:detail", pk=run.campaign_id)


@require_GET
@permission_required("campaigns.view_campaign")
def run_progress(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(CampaignRun, pk=pk)
    run.counts = selectors.run_outcome_counts(run)
    response = render(request, "campaigns/run.html", {"run": run})
    if run.finished and request.htmx:
        response.status_code = HttpResponseStopPolling.status_code
    return response


class _Echo:
    def write(self, value: str) -> str:
        return value


@require_GET
@permission_required("campaigns.view_campaign")
def report(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=pk)
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in selectors.report_rows(campaign)), content_type="text/csv"
    )
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-report.csv"'
    return response


@require_GET
@permission_required("campaigns.view_outboxmessage")
def outbox(request: HttpRequest) -> HttpResponse:
    return render(
        request, "campaigns/outbox.html", {"nav": "campaigns", "messages_": outbox_messages()}
    )


# --- Settings → Messaging ------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@permission_required("campaigns.change_messagingsettings")
def messaging_settings(request: HttpRequest) -> HttpResponse:
    overview = messaging_overview()
    form = MessagingSettingsForm(request.POST or None, instance=overview.saved)
    if request.method == "POST":
        if form.is_valid():
            values = {name: form.cleaned_data[name] for name in form.Meta.fields}
            delivery_services.messaging_settings_update(
                values=values, secrets=form.secrets(), user=request.user
            )
            messages.success(request, "Messaging settings saved; the next batch sent uses them.")
            return redirect("messaging_settings:edit")
        messages.error(request, "Nothing was saved: correct the fields marked below.")
    for name, default in overview.defaults.items():
        form.fields[name].widget.attrs["placeholder"] = default or "not set"
    return render(request, "campaigns/messaging_settings.html",
                  {"nav": "settings", "form": form, "overview": overview})  # fmt: skip


@require_POST
@permission_required("campaigns.change_messagingsettings")
def vapid_keys_generate(request: HttpRequest) -> HttpResponse:
    delivery_services.vapid_keys_ensure()
    messages.success(request, "Web push keys are ready.")
    return redirect("messaging_settings:edit")


@login_not_required  # a provider's server calls it: X-Twilio-Signature authenticates it
@csrf_exempt  # (same reason: no browser session, no CSRF token)
@require_POST
def twilio_status(request: HttpRequest, pk: int) -> HttpResponse:
    """Twilio's status callback for one delivery (no login: signed with the auth token)."""
    try:
        delivery_services.delivery_status_record(
            delivery_id=pk,
            path=request.path,
            params=list(request.POST.items()),
            signature=request.headers.get("X-Twilio-Signature", ""),
        )
    except delivery_services.StatusReportRefused as refused:
        return HttpResponse(str(refused), status=403 if refused.forbidden else 400,
                            content_type="text/plain")  # fmt: skip
    return HttpResponse(status=204)
