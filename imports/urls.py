from django.urls import include, path

from imports import views

app_name = "imports"
urlpatterns = [
    path("", views.index, name="list"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/mapping/", views.mapping, name="mapping"),
    path("<int:pk>/cancel/", views.cancel, name="cancel"),
    path("<int:pk>/rejected.csv", views.rejected_csv, name="rejected"),
    path("sftp/", include("imports.sftp.urls")),
]
