from django.urls import path

from campaigns import views

app_name = "campaigns"
urlpatterns = [
    path("", views.index, name="list"),
    path("new/", views.edit, name="new"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/edit/", views.edit, name="edit"),
    path("<int:pk>/preview/", views.preview, name="preview"),
    path("<int:pk>/test/", views.test_send, name="test"),
    path("<int:pk>/send/", views.send, name="send"),
    path("<int:pk>/report.csv", views.report, name="report"),
    path("runs/<int:pk>/", views.run_progress, name="run"),
    path("runs/<int:pk>/stop/", views.stop, name="stop"),
    path("outbox/", views.outbox, name="outbox"),
    path("delivery/twilio/<int:pk>/status/", views.twilio_status, name="twilio_status"),
]
