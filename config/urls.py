from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path

from config import views

handler403 = "config.views.permission_denied"
handler500 = "config.errors.server_error"

# One login form for the whole site: the admin's own would be a second door.
admin.site.login = login_required(admin.site.login)  # type: ignore[method-assign]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("people/", include("profiles.urls")),
    path("settings/messaging/", include("campaigns.settings_urls")),
    path("settings/", include("api.settings_urls")),
    path("segments/", include("segments.urls")),
    path("imports/", include("imports.urls")),
    path("campaigns/", include("campaigns.urls")),
    path("", include("api.urls")),
    path("admin/", admin.site.urls),
]
