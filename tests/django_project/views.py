"""Plain Django views: the matrix routes once per way of protecting them.

    /mw/...     no decorator: GrantexMiddleware authenticates, the view checks the scope
    /sync/...   @require_scopes on function views
    /async/...  @require_scopes on async def views
    /cbv/...    method_decorator(require_scopes) on class-based views
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View

from grantex_guard.django import request_grant, require_grant, require_scopes

CALENDAR = "calendar:read"
PAYMENTS = "payments:initiate:max_1000"


def _grant_summary(request: HttpRequest) -> JsonResponse:
    grant = request_grant(request)
    return JsonResponse({"principal": grant.principal_id, "agent": grant.agent_did,
                         "scopes": list(grant.scopes)})


def public(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"public": True})


async def async_public(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"public": True})


# -- middleware only -----------------------------------------------------------------


def mw_calendar(request: HttpRequest) -> JsonResponse:
    request_grant(request).require(CALENDAR)
    return _grant_summary(request)


def mw_payments(request: HttpRequest) -> JsonResponse:
    request_grant(request).require(PAYMENTS)
    return _grant_summary(request)


def mw_post(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"user": str(request.user)}, status=201)


# -- function views ------------------------------------------------------------------


@require_scopes(CALENDAR)
def sync_calendar(request: HttpRequest) -> JsonResponse:
    return _grant_summary(request)


@require_scopes(PAYMENTS)
def sync_payments(request: HttpRequest) -> JsonResponse:
    return _grant_summary(request)


@require_scopes(any_of=["calendar:read", "calendar:write"])
def sync_any_calendar(request: HttpRequest) -> JsonResponse:
    return _grant_summary(request)


@require_grant
def sync_pay(request: HttpRequest) -> JsonResponse:
    # A capped grant (payments:initiate:max_500) passes only for amounts within its cap.
    request_grant(request).require("payments:initiate", amount=request.POST["amount"])
    return JsonResponse({"paid": request.POST["amount"]}, status=201)


@require_grant
def whoami(request: HttpRequest) -> JsonResponse:
    user = request.user
    return JsonResponse({
        "is_authenticated": user.is_authenticated,
        "is_anonymous": user.is_anonymous,
        "principal_id": getattr(user, "principal_id", None),
        "agent_did": getattr(user, "agent_did", None),
        "pk": user.pk,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "has_perm": user.has_perm("auth.view_user"),
        "type": type(user).__name__,
    })


# -- async views ---------------------------------------------------------------------


@require_scopes(CALENDAR)
async def async_calendar(request: HttpRequest) -> JsonResponse:
    return _grant_summary(request)


@require_scopes(PAYMENTS)
async def async_payments(request: HttpRequest) -> JsonResponse:
    return _grant_summary(request)


@require_grant
async def async_pay(request: HttpRequest) -> JsonResponse:
    request_grant(request).require("payments:initiate", amount=request.POST["amount"])
    return JsonResponse({"paid": request.POST["amount"]}, status=201)


# -- class-based views ---------------------------------------------------------------


@method_decorator(require_scopes(CALENDAR), name="dispatch")
class CalendarView(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return _grant_summary(request)


@method_decorator(require_scopes(PAYMENTS), name="dispatch")
class PaymentsView(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return _grant_summary(request)


class AsyncCalendarView(View):
    @method_decorator(require_scopes(CALENDAR))
    async def get(self, request: HttpRequest) -> JsonResponse:
        return _grant_summary(request)


@method_decorator(require_scopes(CALENDAR), name="dispatch")
class AsyncDispatchDecorated(View):
    """The mistake the decorator reports: an async view decorated on its (sync) dispatch."""

    async def get(self, request: HttpRequest) -> JsonResponse:
        return _grant_summary(request)
