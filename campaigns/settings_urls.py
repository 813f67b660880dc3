"""Settings → Messaging, mounted under /settings/messaging/ next to the other settings pages."""

from django.urls import path

from campaigns import views

app_name = "messaging_settings"
urlpatterns = [
    path("", views.messaging_settings, name="edit"),
    path("vapid/", views.vapid_keys_generate, name="vapid"),
]
