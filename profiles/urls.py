from django.urls import path

from profiles import views

app_name = "profiles"
urlpatterns = [
    path("", views.find_people, name="find_people"),
    path("<str:ct_id>/", views.profile_detail, name="detail"),
    path("<str:ct_id>/events/", views.profile_events, name="events"),
    path("<str:ct_id>/test-profile/", views.profile_mark_test_view, name="mark_test"),
    path("<str:ct_id>/delete/", views.profile_delete_view, name="delete"),
    path("<str:ct_id>/download/", views.profile_download, name="download"),
]
