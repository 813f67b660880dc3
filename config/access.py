"""Permission checks that tell the person which permission is missing."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

View = Callable[..., HttpResponse]


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
        raise PermissionDenied(f"You need the permission “{permission_label(perm)}”.")


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
