from django.urls import path

from imports.sftp import views as sftp_views

app_name = "sftp"
urlpatterns = [
    path("", sftp_views.source_list, name="list"),
    path("new/", sftp_views.source_create, name="create"),
    path("<int:pk>/", sftp_views.source_detail, name="detail"),
    path("<int:pk>/edit/", sftp_views.source_edit, name="edit"),
    path("<int:pk>/delete/", sftp_views.source_delete, name="delete"),
    path("<int:pk>/test/", sftp_views.source_test, name="test"),
    path("<int:pk>/trust/", sftp_views.source_trust_key, name="trust"),
    path("<int:pk>/run/", sftp_views.source_run_now, name="run"),
]
