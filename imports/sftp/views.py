"""Pages for SFTP sources: list, create/edit, detail with run history, and
the Test connection / Trust this key / Run now actions."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from config.access import permission_required
from imports.models import SftpRunStatus, SftpSource
from imports.sftp.forms import SftpSourceForm
from imports.sftp.selectors import (
    sftp_files_for_source,
    sftp_runs_for_source,
    sftp_source_get,
    sftp_source_list,
    sftp_source_next_run,
)
from imports.sftp.services import (
    sftp_source_delete,
    sftp_source_poll_enqueue,
    sftp_source_save,
    sftp_source_test_connection,
    sftp_source_trust_host_key,
)


def _next_run(source: SftpSource) -> dict:
    next_run = sftp_source_next_run(source=source)
    # Within the minute: beat sends it on one of its next ticks.
    due = next_run is not None and next_run <= timezone.now() + dt.timedelta(minutes=1)
    return {"next_run": next_run, "next_run_due": due}


def _source_or_404(pk: int) -> SftpSource:
    try:
        return sftp_source_get(pk=pk)
    except SftpSource.DoesNotExist as exc:
        raise Http404("No such SFTP source.") from exc


@require_http_methods(["GET"])
@permission_required("imports.view_sftpsource")
def source_list(request: HttpRequest) -> HttpResponse:
    sources = list(sftp_source_list())
    return render(request, "imports/sftp/list.html", {"nav": "imports", "sources": sources})


@require_http_methods(["GET", "POST"])
@permission_required("imports.add_sftpsource")
def source_create(request: HttpRequest) -> HttpResponse:
    form = SftpSourceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        source = sftp_source_save(
            source=form.save(commit=False),
            password=form.cleaned_data["password"],
            private_key=form.cleaned_data["private_key"],
        )
        messages.success(request, f"Source “{source.name}” saved. Test the connection next.")
        return redirect("imports:sftp:detail", pk=source.pk)
    return render(request, "imports/sftp/form.html", {"nav": "imports", "form": form})


@require_http_methods(["GET", "POST"])
@permission_required("imports.change_sftpsource")
def source_edit(request: HttpRequest, pk: int) -> HttpResponse:
    source = _source_or_404(pk)
    form = SftpSourceForm(request.POST or None, instance=source)
    if request.method == "POST" and form.is_valid():
        sftp_source_save(
            source=form.save(commit=False),
            password=form.cleaned_data["password"],
            private_key=form.cleaned_data["private_key"],
        )
        messages.success(request, f"Source “{source.name}” saved.")
        return redirect("imports:sftp:detail", pk=source.pk)
    return render(
        request, "imports/sftp/form.html", {"nav": "imports", "form": form, "source": source}
    )


@require_http_methods(["GET"])
@permission_required("imports.view_sftpsource")
def source_detail(request: HttpRequest, pk: int) -> HttpResponse:
    source = _source_or_404(pk)
    runs = sftp_runs_for_source(source=source)
    context = {
        "nav": "imports",
        "source": source,
        "runs": runs,
        # A retry due soon also brings a new run: keep the history polling for it.
        "running": any(run.status == SftpRunStatus.RUNNING or run.is_retrying for run in runs),
        "files": sftp_files_for_source(source=source),
        **_next_run(source),
    }
    if request.htmx:
        return render(request, "imports/sftp/detail.html#history", context)
    return render(request, "imports/sftp/detail.html", context)


@require_http_methods(["POST"])
@permission_required("imports.delete_sftpsource")
def source_delete(request: HttpRequest, pk: int) -> HttpResponse:
    source = _source_or_404(pk)
    sftp_source_delete(source=source)
    messages.success(request, f"Source “{source.name}” deleted.")
    return redirect("imports:sftp:list")


@require_http_methods(["POST"])
@permission_required("imports.change_sftpsource")
def source_test(request: HttpRequest, pk: int) -> HttpResponse:
    source = _source_or_404(pk)
    result = sftp_source_test_connection(source=source)
    context = {"nav": "imports", "source": source, "test": result}
    if request.htmx:
        return render(request, "imports/sftp/detail.html#connection", context)
    context |= {
        "runs": sftp_runs_for_source(source=source),
        "files": sftp_files_for_source(source=source),
        **_next_run(source),
    }
    return render(request, "imports/sftp/detail.html", context)


@require_http_methods(["POST"])
@permission_required("imports.change_sftpsource")
def source_trust_key(request: HttpRequest, pk: int) -> HttpResponse:
    source = _source_or_404(pk)
    fingerprint = request.POST.get("fingerprint", "").strip()
    if not fingerprint.startswith("SHA256:"):
        messages.error(request, "No fingerprint to trust: test the connection first.")
    else:
        sftp_source_trust_host_key(source=source, fingerprint=fingerprint)
        messages.success(request, f"Host key {fingerprint} is now trusted.")
    return redirect("imports:sftp:detail", pk=source.pk)


@require_http_methods(["POST"])
@permission_required("imports.change_sftpsource")
def source_run_now(request: HttpRequest, pk: int) -> HttpResponse:
    source = _source_or_404(pk)
    if not source.host_key_fingerprint:
        # A poll would only fail: it never connects to a server whose key nobody checked.
        messages.error(
            request,
            "Trust the server's host key first: test the connection, compare the "
            "fingerprint with the server's, then trust it.",
        )
        return redirect("imports:sftp:detail", pk=source.pk)
    sftp_source_poll_enqueue(source=source)
    messages.success(request, "Poll queued: the run appears below when a worker picks it up.")
    return redirect("imports:sftp:detail", pk=source.pk)
