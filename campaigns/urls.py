from django.urls import path

from campaigns import views

app_name = "campaigns"
urlpatterns = [
    path("outbox/", views.outbox, name="outbox"),
]
