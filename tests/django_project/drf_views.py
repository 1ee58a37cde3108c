"""Django REST framework views (GrantexAuthentication and HasGrantScopes are the defaults)."""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grantex_guard.django.drf import GrantexAuthentication, HasGrantScopes


class Calendar(APIView):
    required_scopes: ClassVar[list[str]] = ["calendar:read"]

    def get(self, request: Request) -> Response:
        return Response({"principal": request.auth.principal_id,
                         "user": type(request.user).__name__})


class Payments(APIView):
    required_scopes_map: ClassVar[dict[str, list[str]]] = {
        "GET": ["payments:initiate:max_1000"],
        "POST": ["payments:initiate:max_5000"],
    }

    def get(self, request: Request) -> Response:
        return Response({"principal": request.auth.principal_id})

    def post(self, request: Request) -> Response:
        return Response({"created": True}, status=201)

    def delete(self, request: Request) -> Response:
        return Response(status=204)


class Public(APIView):
    permission_classes: ClassVar[list[type]] = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"public": True})


class Pay(APIView):
    required_scopes: ClassVar[list[str]] = []

    def post(self, request: Request) -> Response:
        request.auth.require("payments:initiate", amount=request.data["amount"])
        return Response({"paid": request.data["amount"]}, status=201)


class Me(APIView):
    required_scopes: ClassVar[list[str]] = []

    def get(self, request: Request) -> Response:
        user = request.user
        return Response({"type": type(user).__name__, "principal_id": user.principal_id,
                         "is_authenticated": user.is_authenticated,
                         "grant_is_auth": request.grant is request.auth})


class TestUser:
    is_authenticated = True

    def __init__(self, name: str) -> None:
        self.name = name


class HeaderAuthentication(BaseAuthentication):
    """A second authenticator: X-Test-User names the user (no password, tests only)."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        name = request.headers.get("X-Test-User")
        return (TestUser(name), None) if name else None


class EitherAuth(APIView):
    authentication_classes: ClassVar[list[type]] = [GrantexAuthentication, HeaderAuthentication]
    permission_classes: ClassVar[list[type]] = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        user = request.user
        return Response({"user": getattr(user, "name", None) or str(user)})


class MisdeclaredScopes(APIView):
    permission_classes: ClassVar[list[type]] = [HasGrantScopes]

    def get(self, request: Request) -> Response:
        return Response({})
