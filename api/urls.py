"""The REST API in CleverTap's dialect, at the site root, and its docs."""

from django.urls import path

from api import sdk
from api import views as api

app_name = "api"
urlpatterns = [
    path("1/upload", api.upload, name="upload"),
    path("1/profile.json", api.profile_get, name="profile"),
    path("1/profiles.json", api.profiles_query, name="profiles"),
    path("1/events.json", api.events_query, name="events"),
    path("1/counts/profiles.json", api.profiles_count, name="count_profiles"),
    path("1/counts/events.json", api.events_count, name="count_events"),
    path("1/delete/profiles.json", api.profiles_delete, name="delete_profiles"),
    path("1/subscribe", api.subscribe, name="subscribe"),
    path("1/disassociate", api.disassociate, name="disassociate"),
    path("a", sdk.sdk_endpoint, name="sdk"),
    path("api/openapi.json", api.openapi_json, name="openapi"),
    path("api/docs/", api.docs, name="docs"),
]
