"""Permission checks that tell the person which permission is missing."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

View = Callable[..., HttpResponse]


class MissingPermission(PermissionDenied):
    """A 403 that remembers which permission was missing, so the page can say who has it."""

    def __init__(self, message: str, perm: str) -> None:
        super().__init__(message)
        self.perm = perm


@dataclass(frozen=True)
class Section:
    key: str  # the `nav` value a page of the section sets
    label: str
    url_name: str
    perm: str  # the permission needed to open the section's first page


# The main navigation, in the order it is shown; a person lands on the first one they may use.
SECTIONS = (
    Section("home", "Overview", "home", "profiles.view_profile"),
    Section("people", "Find People", "profiles:find_people", "profiles.view_profile"),
    Section("segments", "Segments", "segments:list", "segments.view_segment"),
    Section("imports", "Imports", "imports:list", "imports.view_importrun"),
    Section("campaigns", "Campaigns", "campaigns:list", "campaigns.view_campaign"),
    Section("settings", "Settings", "settings:api_credentials", "profiles.view_apicredential"),
)


def sections_for(user) -> list[dict[str, str]]:
    """The sections this person may open, with their addresses, for the navigation."""
    return [
        {"key": section.key, "label": section.label, "url": reverse(section.url_name)}
        for section in SECTIONS
        if user.has_perm(section.perm)
    ]


def groups_holding(perm: str) -> list[str]:
    """Names of the groups that hold the permission now (read from the database, not assumed)."""
    app_label, _, codename = perm.partition(".")
    return list(
        Group.objects.filter(
            Q(permissions__content_type__app_label=app_label) & Q(permissions__codename=codename)
        )
        .order_by("name")
        .values_list("name", flat=True)
        .distinct()
    )


def permission_label(perm: str) -> str:
    app_label, _, codename = perm.partition(".")
    name = (
        Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        .values_list("name", flat=True)
        .first()
    )
    return f"{name} ({perm})" if name else perm


def require_permission(perm: str, request: HttpRequest) -> None:
    if not request.user.has_perm(perm):
        raise MissingPermission(f"You need the permission “{permission_label(perm)}”.", perm)


def permission_required(perm: str) -> Callable[[View], View]:
    """Like Django's, but always 403 (never a login loop) with the permission named.

    Login itself is enforced for every view by LoginRequiredMiddleware.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            require_permission(perm, request)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def navigation(request: HttpRequest) -> dict:
    """Template context: `sections`, the parts of the dashboard this person may use."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"sections": []}
    return {"sections": sections_for(user)}
