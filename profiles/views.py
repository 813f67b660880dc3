from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from config.access import permission_required


@require_GET
@permission_required("profiles.view_profile")
def find_people(request: HttpRequest) -> HttpResponse:
    return render(request, "placeholder.html", {"nav": "people", "title": "Find People"})


@require_GET
@permission_required("profiles.view_profile")
def profile_detail(request: HttpRequest, ct_id: str) -> HttpResponse:
    return render(request, "placeholder.html", {"nav": "people", "title": ct_id})
