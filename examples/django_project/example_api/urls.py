from django.urls import include, path

from . import views

urlpatterns = [
    path("", include("grantex_guard.django.urls")),
    path("health", views.health),
    path("calendar", views.calendar),
    path("profile", views.Profile.as_view()),
    path("payments", views.payments),
    path("contacts", views.Contacts.as_view()),
]
