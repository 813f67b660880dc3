"""CSV imports: upload and history, mapping, progress, rejected rows."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling
from django_tables2 import LazyPaginator, RequestConfig

from config.access import permission_required, require_permission
from imports.forms import MappingForm, UploadForm
from imports.models import ImportOrigin, ImportRun, ImportStatus
from imports.selectors import (
    import_run_list,
    import_run_preview,
    import_run_rejected_csv,
    import_run_rejected_rows,
    import_run_totals,
)
from imports.services import (
    import_run_cancel,
    import_run_create,
    import_run_set_mapping,
    import_run_start,
)
from imports.tables import ImportRunTable

PER_PAGE = 25


@require_http_methods(["GET", "POST"])
@permission_required("imports.view_importrun")
def index(request: HttpRequest) -> HttpResponse:
    """The history of imports and, for Importers, the upload form."""
    can_upload = request.user.has_perm("imports.add_importrun")
    form = UploadForm()
    if request.method == "POST":
        require_permission("imports.add_importrun", request)
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            run = import_run_create(
                kind=form.cleaned_data["kind"],
                file_name=form.cleaned_data["file"].name,
                content=form.cleaned_data["file"],
                event_name=form.cleaned_data["event_name"],
                uploaded_by=request.user,
                origin=ImportOrigin.WEB,
            )
            if run.status == ImportStatus.FAILED:
                form.add_error("file", run.error)
            else:
                return redirect("imports:mapping", pk=run.pk)
    table = ImportRunTable(import_run_list())
    RequestConfig(
        request, paginate={"per_page": PER_PAGE, "paginator_class": LazyPaginator}
    ).configure(table)
    status = 400 if form.errors else 200
    context = {
        "nav": "imports", "table": table, "form": form, "can_upload": can_upload,
        "max_upload": settings.IMPORT_MAX_UPLOAD_BYTES,
    }  # fmt: skip
    return render(request, "imports/list.html", context, status=status)


@require_http_methods(["GET", "POST"])
@permission_required("imports.add_importrun")
def mapping(request: HttpRequest, pk: int) -> HttpResponse:
    """Preview of the first rows; choose what each column holds; then import."""
    run = get_object_or_404(ImportRun, pk=pk)
    if run.status != ImportStatus.PENDING:
        return redirect(run)
    preview = import_run_preview(import_run=run)
    form = MappingForm(
        request.POST or None, import_run=run, detected=preview["detected"], samples=preview["rows"]
    )
    if request.method == "POST" and form.is_valid():
        try:
            import_run_set_mapping(import_run=run, mapping=form.mapping())
        except ValueError as error:
            form.add_error(None, str(error))
        else:
            import_run_start(import_run=run)
            return redirect(run)
    context = {"nav": "imports", "run": run, "form": form, "preview": preview}
    return render(request, "imports/mapping.html", context, status=400 if form.errors else 200)


@require_GET
@permission_required("imports.view_importrun")
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The run's progress (polled by htmx until it ends), then its totals and the
    first rejected rows with their reasons."""
    run = get_object_or_404(ImportRun.objects.select_related("uploaded_by"), pk=pk)
    rejected_rows = []
    if run.is_finished and run.rows_rejected:
        rejected_rows = import_run_rejected_rows(import_run=run)
    context = {
        "nav": "imports", "run": run, "rejected_rows": rejected_rows,
        "totals": import_run_totals(import_run=run),
    }  # fmt: skip
    if request.htmx:
        html = render_to_string("imports/detail.html#progress", context, request=request)
        if not run.is_active:
            return HttpResponseStopPolling(html)
        return HttpResponse(html)
    return render(request, "imports/detail.html", context)


@require_POST
@permission_required("imports.add_importrun")
def cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Stop a queued or running import at its next chunk boundary; what committed stays."""
    run = get_object_or_404(ImportRun, pk=pk)
    if import_run_cancel(import_run=run, user=request.user):
        messages.success(request, f"Cancelled “{run.file_name}”: the rows imported so far stay.")
    else:
        run.refresh_from_db()
        messages.error(
            request,
            f"“{run.file_name}” is {run.get_status_display().lower()}: "
            "only a queued or running import of an uploaded file can be cancelled.",
        )
    return redirect(run)


@require_GET
@permission_required("imports.view_importrun")
def rejected_csv(request: HttpRequest, pk: int) -> HttpResponse:
    """The rejected rows with the reasons, as a formula-safe CSV."""
    run = get_object_or_404(ImportRun, pk=pk)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", run.file_name.rsplit(".", 1)[0])[:80] or "import"
    response = HttpResponse(import_run_rejected_csv(import_run=run), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{stem}-rejected-rows.csv"'
    return response
