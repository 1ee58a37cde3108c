from django.urls import include, path

from . import drf_views, views

urlpatterns = [
    path("", include("grantex_guard.django.urls")),
    path("mw/calendar", views.mw_calendar),
    path("mw/payments", views.mw_payments),
    path("mw/public", views.public),
    path("mw/post", views.mw_post),
    path("sync/calendar", views.sync_calendar),
    path("sync/payments", views.sync_payments),
    path("sync/public", views.public),
    path("sync/any-calendar", views.sync_any_calendar),
    path("sync/pay", views.sync_pay),
    path("sync/whoami", views.whoami),
    path("async/calendar", views.async_calendar),
    path("async/payments", views.async_payments),
    path("async/public", views.async_public),
    path("async/pay", views.async_pay),
    path("cbv/calendar", views.CalendarView.as_view()),
    path("cbv/payments", views.PaymentsView.as_view()),
    path("cbv/public", views.public),
    path("cbv/async-calendar", views.AsyncCalendarView.as_view()),
    path("cbv/async-dispatch", views.AsyncDispatchDecorated.as_view()),
    path("drf/calendar", drf_views.Calendar.as_view()),
    path("drf/payments", drf_views.Payments.as_view()),
    path("drf/public", drf_views.Public.as_view()),
    path("drf/pay", drf_views.Pay.as_view()),
    path("drf/me", drf_views.Me.as_view()),
    path("drf/either", drf_views.EitherAuth.as_view()),
    path("drf/misdeclared", drf_views.MisdeclaredScopes.as_view()),
]
