import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

from api.sdk import sdk_wsgi  # noqa: E402  (needs the apps loaded above)


def application(environ, start_response):
    # The web SDK's `/a` is many small anonymous calls: answered before Django's handler
    # and the dashboard's middleware, none of which it needs (api.sdk says why and keeps
    # every refusal of /a); everything else goes to Django.
    if environ.get("PATH_INFO") == "/a":
        return sdk_wsgi(environ, start_response)
    return django_application(environ, start_response)
