from django.urls import path

from profiles import settings_views

app_name = "settings"
urlpatterns = [
    path("api-credentials/", settings_views.api_credentials, name="api_credentials"),
]
