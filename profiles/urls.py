from django.urls import path

from profiles import views

app_name = "profiles"
urlpatterns = [
    path("", views.find_people, name="find_people"),
    path("<str:ct_id>/", views.profile_detail, name="detail"),
]
