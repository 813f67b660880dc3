import json

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling
from django_tables2 import RequestConfig

from config.access import permission_required, require_permission
from profiles.selectors import profile_property_types
from segments import selectors, services
from segments.compiler import SegmentDefinitionError
from segments.forms import ExportForm, SegmentForm
from segments.models import ExportStatus, Segment, SegmentExport
from segments.tables import SegmentTable


@require_GET
@permission_required("segments.view_segment")
def index(request: HttpRequest) -> HttpResponse:
    table = SegmentTable(selectors.segment_list())
    RequestConfig(request, paginate={"per_page": 50}).configure(table)
    return render(request, "segments/list.html", {"nav": "segments", "table": table})


def _builder_context(request, *, form, segment=None, **extra) -> dict:
    definition = form.data.get("definition") if form.is_bound else None
    if definition is None:
        definition = json.dumps(segment.definition if segment else {"all": []})
    context = {
        "nav": "segments",
        "form": form,
        "segment": segment,
        "save_url": builder_url(segment),
        "definition_json": definition,
        "choices": selectors.builder_choices(),
        "can_save": request.user.has_perm(
            "segments.change_segment" if segment else "segments.add_segment"
        )
        and not (segment and segment.is_system),
    }
    if segment is not None:
        context["export_form"] = ExportForm(
            available=services.export_columns_available(list(profile_property_types()))
        )
        context["exports"] = segment.exports.order_by("-pk")[:5]
    context.update(extra)
    return context


@require_http_methods(["GET", "POST"])
@permission_required("segments.view_segment")
def builder(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """The builder: a new segment (no pk) or a saved one; POST saves."""
    segment = get_object_or_404(Segment, pk=pk) if pk is not None else None
    if request.method == "GET":
        initial = {"name": segment.name} if segment else {}
        form = SegmentForm(initial=initial)
        return render(request, "segments/builder.html", _builder_context(request, form=form,
                      segment=segment))  # fmt: skip
    require_permission("segments.change_segment" if segment else "segments.add_segment", request)
    form = SegmentForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            saved = services.segment_save(
                name=form.cleaned_data["name"],
                definition=form.cleaned_data["definition"],
                user=request.user,
                segment=segment,
            )
        except SegmentDefinitionError as problem:
            error = f"The definition is not valid — {problem}"
        except services.SegmentError as problem:
            error = str(problem)
        else:
            messages.success(request, f"Saved “{saved.name}”: {saved.last_count:,} people.")
            return redirect("segments:detail", pk=saved.pk)
    context = _builder_context(request, form=form, segment=segment, save_error=error)
    return render(request, "segments/builder.html", context, status=400)


@require_POST
@permission_required("segments.view_segment")
def evaluate(request: HttpRequest, preview: bool) -> HttpResponse:
    """The live count (and, with `preview`, the first matching people) of a posted definition."""
    form = SegmentForm(request.POST)
    context: dict = {"preview_requested": preview}
    if form.is_valid():
        definition = form.cleaned_data["definition"]
        try:
            context["count"] = selectors.segment_count(definition)
            context["unknown_events"] = selectors.segment_unknown_events(definition)
            if preview:
                context["people"] = selectors.segment_preview(definition)
                context["previewed"] = True
        except SegmentDefinitionError as problem:
            context["definition_error"] = problem
    else:
        context["definition_error"] = " ".join(form.errors.get("definition", []))
    if isinstance(context.get("definition_error"), SegmentDefinitionError):
        # The builder shows the message beside the box at this path.
        context["definition_error_path"] = context["definition_error"].path
    if request.htmx:
        partial = "preview" if preview else "result"
        return render(request, f"segments/builder.html#{partial}", context)
    segment = None
    if request.POST.get("segment", "").isdigit():
        segment = Segment.objects.filter(pk=request.POST["segment"]).first()
    return render(
        request,
        "segments/builder.html",
        _builder_context(request, form=form, segment=segment, **context),
    )


@require_GET
@permission_required("segments.view_segment")
def property_values(request: HttpRequest) -> JsonResponse:
    """The most common values of a text property, for the builder's suggestions."""
    name = request.GET.get("property", "")[:512]
    return JsonResponse({"values": selectors.property_value_suggestions(name=name) if name else []})


@require_GET
@permission_required("segments.view_segment")
def reach(request: HttpRequest, pk: int) -> HttpResponse:
    """The saved segment's members reachable on each channel (loaded by the segment page)."""
    segment = get_object_or_404(Segment, pk=pk)
    context: dict = {"segment": segment}
    try:
        context["reach"] = selectors.segment_reach(segment.definition)
    except SegmentDefinitionError as problem:
        context["reach_error"] = problem
    return render(request, "segments/reach.html", context)


@require_POST
@permission_required("segments.add_segment")
def duplicate(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=pk)
    copy = services.segment_duplicate(segment=segment, user=request.user)
    messages.success(request, f"Duplicated as “{copy.name}”.")
    return redirect("segments:detail", pk=copy.pk)


@require_http_methods(["GET", "POST"])
@permission_required("segments.delete_segment")
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=pk)
    if request.method == "POST":
        try:
            services.segment_delete(segment=segment)
        except services.SegmentError as problem:
            messages.error(request, str(problem))
            return redirect("segments:detail", pk=segment.pk)
        messages.success(request, f"Deleted “{segment.name}”.")
        return redirect("segments:list")
    return render(request, "segments/delete.html", {"nav": "segments", "segment": segment})


@require_POST
@permission_required("segments.change_segment")
def recount(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=pk)
    try:
        services.segment_recount(segment=segment)
    except SegmentDefinitionError as problem:
        messages.error(request, f"Cannot count “{segment.name}”: {problem}")
    return redirect("segments:list")


@require_POST
@permission_required("segments.view_segment")
def export_start(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=pk)
    form = ExportForm(
        request.POST,
        available=services.export_columns_available(list(profile_property_types())),
    )
    if not form.is_valid():
        messages.error(request, "Choose properties from the list.")
        return redirect("segments:detail", pk=segment.pk)
    try:
        export = services.segment_export_start(
            segment=segment, properties=form.cleaned_data["properties"], user=request.user
        )
    except SegmentDefinitionError as problem:
        messages.error(request, f"Cannot export “{segment.name}”: {problem}")
        return redirect("segments:detail", pk=segment.pk)
    return redirect("segments:export_progress", pk=export.pk)


@require_GET
@permission_required("segments.view_segment")
def export_progress(request: HttpRequest, pk: int) -> HttpResponse:
    export = get_object_or_404(SegmentExport.objects.select_related("segment"), pk=pk)
    context = {"nav": "segments", "export": export}
    if request.htmx:
        response = render(request, "segments/export.html#progress", context)
        if export.is_finished:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, "segments/export.html", context)


@require_GET
@permission_required("segments.view_segment")
def export_download(request: HttpRequest, pk: int) -> HttpResponse:
    export = get_object_or_404(SegmentExport.objects.select_related("segment"), pk=pk)
    if export.status != ExportStatus.DONE or not export.file:
        raise Http404("This export has no file yet.")
    filename = f"{export.segment.name} {export.created_at:%Y-%m-%d %H%M}.csv"
    return FileResponse(
        export.file.open("rb"), as_attachment=True, filename=filename, content_type="text/csv"
    )


def builder_url(segment: Segment | None) -> str:
    return reverse("segments:detail", args=[segment.pk]) if segment else reverse("segments:new")
