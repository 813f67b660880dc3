from django.urls import path

from profiles import views

app_name = "settings"
urlpatterns = [
    path("api-credentials/", views.api_credentials, name="api_credentials"),
]
