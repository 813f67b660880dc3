from django.urls import path

from api import settings_views

app_name = "settings"
urlpatterns = [
    path("api-credentials/", settings_views.api_credentials, name="api_credentials"),
    path("api-credentials/new/", settings_views.api_credential_new, name="api_credential_new"),
    path(
        "api-credentials/<str:account_id>/revoke/",
        settings_views.api_credential_revoke_view,
        name="api_credential_revoke",
    ),
    path("sdk/", settings_views.sdk_settings, name="sdk"),
    path("sdk/<str:account_id>/origins/", settings_views.sdk_origins_update, name="sdk_origins"),
]
