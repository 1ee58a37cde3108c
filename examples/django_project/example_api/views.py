from __future__ import annotations

from typing import ClassVar

from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grantex_guard.django import request_grant, require_grant, require_scopes


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@require_scopes("calendar:read")
def calendar(request: HttpRequest) -> JsonResponse:
    """A function view: the grant must hold calendar:read."""
    grant = request_grant(request)
    return JsonResponse({"events": [], "for": grant.principal_id, "agent": grant.agent_did})


@method_decorator(require_scopes("profile:read"), name="dispatch")
class Profile(View):
    """A class-based view; request.user is the principal (never a database row)."""

    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"principal": str(request.user)})


@require_grant
async def payments(request: HttpRequest) -> JsonResponse:
    """An async view that checks the amount itself, so capped grants (max_N) work too."""
    amount = request.GET.get("amount", "0")
    request_grant(request).require("payments:initiate", amount=amount)
    return JsonResponse({"initiated": amount})


class Contacts(APIView):
    """A DRF view: GrantexAuthentication and HasGrantScopes are the project defaults."""

    required_scopes_map: ClassVar[dict[str, list[str]]] = {
        "GET": ["contacts:read"],
        "POST": ["contacts:write"],
    }

    def get(self, request: Request) -> Response:
        return Response({"contacts": [], "for": request.auth.principal_id})

    def post(self, request: Request) -> Response:
        return Response({"created": True}, status=201)
