from django.urls import path

from imports import sftp_views

app_name = "sftp"
urlpatterns = [
    path("", sftp_views.source_list, name="list"),
]
