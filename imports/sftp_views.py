from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from config.access import permission_required


@require_GET
@permission_required("imports.view_sftpsource")
def source_list(request: HttpRequest) -> HttpResponse:
    return render(request, "placeholder.html", {"nav": "imports", "title": "SFTP sources"})
