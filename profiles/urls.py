from django.urls import path

from profiles import views

app_name = "profiles"
urlpatterns = [
    path("", views.find_people, name="find_people"),
    # Before the <ct_id> patterns (a CleverTap ID is never "count", "export" or "exports").
    path("count/", views.people_count, name="count"),
    path("export/", views.people_export_start_view, name="export_start"),
    path("exports/<int:pk>/", views.people_export_progress, name="export_progress"),
    path("exports/<int:pk>/download/", views.people_export_download, name="export_download"),
    path("<str:ct_id>/", views.profile_detail, name="detail"),
    path("<str:ct_id>/events/", views.profile_events, name="events"),
    path("<str:ct_id>/test-profile/", views.profile_mark_test_view, name="mark_test"),
    path("<str:ct_id>/delete/", views.profile_delete_view, name="delete"),
    path("<str:ct_id>/download/", views.profile_download, name="download"),
]
