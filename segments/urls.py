from django.urls import path

from segments import views

app_name = "segments"
urlpatterns = [
    path("", views.index, name="list"),
    path("new/", views.builder, name="new"),
    path("count/", views.evaluate, {"preview": False}, name="count"),
    path("preview/", views.evaluate, {"preview": True}, name="preview"),
    path("values/", views.property_values, name="values"),
    path("<int:pk>/", views.builder, name="detail"),
    path("<int:pk>/reach/", views.reach, name="reach"),
    path("<int:pk>/duplicate/", views.duplicate, name="duplicate"),
    path("<int:pk>/delete/", views.delete, name="delete"),
    path("<int:pk>/recount/", views.recount, name="recount"),
    path("<int:pk>/export/", views.export_start, name="export"),
    path("exports/<int:pk>/", views.export_progress, name="export_progress"),
    path("exports/<int:pk>/download/", views.export_download, name="export_download"),
]
