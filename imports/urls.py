from django.urls import include, path

from imports import views

app_name = "imports"
urlpatterns = [
    path("", views.index, name="list"),
    path("sftp/", include("imports.sftp_urls")),
]
