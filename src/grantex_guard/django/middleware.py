"""GrantexMiddleware: authenticates every request that carries a grant token.

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "grantex_guard.django.GrantexMiddleware", ...]

- no token: `request.grant = None` and the request goes on (401 when REQUIRED);
- a valid token: `request.grant` is the Grant and `request.user` a GrantUser;
- an invalid token: answered 401 at once, JSON with its WWW-Authenticate;
- a GuardError raised by a view (e.g. `grant.require("payments:initiate", amount=x)`)
  becomes its 401/403 answer.

Never authenticated: EXEMPT_PATHS, the RFC 9728 metadata and, once WEBHOOK_SECRET
is set, the webhook view of `grantex_guard.django.urls` (Grantex sends no grant token).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.urls import NoReverseMatch, reverse
from django.utils.cache import patch_vary_headers

from ..errors import GuardError, TokenMissing
from ..grant import Grant
from ..http import Credentials
from .authenticate import (
    AUTHORIZATION_VARY,
    attach_grant,
    error_json_response,
    read_request_credentials,
    verify_request,
    verify_request_async,
)
from .conf import adapter_settings
from .urls import WEBHOOK_ROUTE

WEBHOOK_URL_NAME = "grantex_guard:webhook"

__all__ = ["GrantexMiddleware"]

class GrantexMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._call_async(request)
        found = _credentials(request)
        if isinstance(found, Credentials):
            try:
                _admit(request, verify_request(request, credentials=found))
            except GuardError as error:
                return error_json_response(error)
        elif found is not None:
            return found
        return _vary(self.get_response(request))

    async def _call_async(self, request: HttpRequest) -> HttpResponseBase:
        found = _credentials(request)
        if isinstance(found, Credentials):
            try:
                _admit(request, await verify_request_async(request, credentials=found))
            except GuardError as error:
                return error_json_response(error)
        elif found is not None:
            return found
        return _vary(await self.get_response(request))

    def process_exception(self, request: HttpRequest,
                          exception: Exception) -> HttpResponseBase | None:
        if isinstance(exception, GuardError):
            return error_json_response(exception)
        return None


def _exempt(request: HttpRequest) -> bool:
    adapter = adapter_settings()
    if adapter.is_exempt(request.path_info):
        return True
    # The suffix test first: reverse() on every request would cost more than a cached verification.
    return (bool(adapter.webhook_secrets) and request.path.endswith(WEBHOOK_ROUTE)
            and request.path == _webhook_path())


def _webhook_path() -> str | None:
    """Where the URLconf routes the webhook view (None when it is not included)."""
    try:
        return reverse(WEBHOOK_URL_NAME)
    except NoReverseMatch:
        return None


def _credentials(request: HttpRequest) -> Credentials | HttpResponseBase | None:
    """The token to verify; None to go on without a grant; or the response to answer now."""
    request.grant = None  # type: ignore[attr-defined]
    if _exempt(request):
        return None
    try:
        return read_request_credentials(request)
    except TokenMissing as missing:
        return error_json_response(missing) if adapter_settings().required else None
    except GuardError as error:
        return error_json_response(error)


def _admit(request: HttpRequest, grant: Grant) -> None:
    attach_grant(request, grant)
    # A grant token travels in a header a browser never adds on its own, so a request
    # authenticated by one cannot be a cross-site forgery (DRF reasons the same way).
    request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]


def _vary(response: HttpResponseBase) -> HttpResponseBase:
    patch_vary_headers(response, AUTHORIZATION_VARY)
    return response
