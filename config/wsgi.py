import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

from api.sdk import sdk_wsgi  # noqa: E402  (needs the apps loaded above)

# Granian builds each request's environ on a copy of the process environment (as
# wsgiref does; gunicorn did not). Left there, SECRET_KEY, DATABASE_URL and the rest
# would be part of every request's META (shown by DEBUG's error page, logged with
# errors), and a variable named like a header (HTTP_X_CLEVERTAP_PASSCODE, HTTP_HOST)
# would pass for one the client sent. The process's own entries are taken out again.
_process_environment: dict[str, str] = {}


def _process_environment_now() -> dict[str, str]:
    """A copy of os.environ, taken again when a variable was added or removed (reading
    os.environ itself per request would decode every value each time)."""
    global _process_environment
    if len(_process_environment) != len(os.environ):
        _process_environment = dict(os.environ)
    return _process_environment


def request_environ(environ: dict) -> dict:
    """`environ` without the entries it holds only because the process environment does
    (same name and value); what the request and the server set stays."""
    process = _process_environment_now()
    return {key: value for key, value in environ.items() if process.get(key, process) != value}


def application(environ, start_response):
    environ = request_environ(environ)
    # The web SDK's `/a` is many small anonymous calls: answered before Django's handler
    # and the dashboard's middleware, none of which it needs (api.sdk says why and keeps
    # every refusal of /a); everything else goes to Django.
    if environ.get("PATH_INFO") == "/a":
        return sdk_wsgi(environ, start_response)
    return django_application(environ, start_response)
