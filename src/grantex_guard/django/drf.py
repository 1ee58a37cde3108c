"""Django REST framework: authentication, scope permission and exception handler.

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["grantex_guard.django.drf.GrantexAuthentication"],
        "EXCEPTION_HANDLER": "grantex_guard.django.drf.exception_handler",
    }

    class Events(APIView):
        permission_classes = [HasGrantScopes]
        required_scopes = ["calendar:read"]
        required_scopes_map = {"POST": ["calendar:write"]}   # optional, per method
        revocation = True          # optional: always ask Grantex (or ["POST"]: those methods)

Errors keep the `{"error", "message"}` body and codes of every other adapter:
they are raised as `GrantexAPIException`, which carries its challenge and
Retry-After, so even DRF's default handler sends them; `exception_handler`
adds `Cache-Control: no-store` and `Vary: Authorization` too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.utils.cache import patch_vary_headers
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from ..errors import GrantexUnavailable, GuardError, InsufficientScope, TokenMissing
from ..grant import Grant
from ..http import error_response
from .authenticate import (
    AUTHORIZATION_VARY,
    attach_grant,
    attached_grant,
    confirm_not_revoked,
    read_request_credentials,
    verify_request,
)
from .conf import get_guard
from .scopes import view_requirements
from .user import GrantUser

if TYPE_CHECKING:
    from rest_framework.views import APIView

__all__ = ["GrantexAPIException", "GrantexAuthentication", "HasGrantScopes",
           "exception_handler", "view_revocation"]


class GrantexAPIException(APIException):
    """A GuardError as DRF sees it: same status, body, challenge and Retry-After."""

    def __init__(self, error: GuardError) -> None:
        self.guard_error = error
        self.status_code = error.status
        rendered = error_response(error, get_guard().config)
        super().__init__(detail=rendered.body, code=error.code)
        self.response_headers = rendered.headers
        # Read by DRF's default exception handler:
        self.auth_header = rendered.headers.get("WWW-Authenticate")
        if isinstance(error, GrantexUnavailable):
            self.wait = error.retry_after


class GrantexAuthentication(BaseAuthentication):
    """`request.user` a GrantUser, `request.auth` the Grant; None without a grant token.

    A view's `revocation` attribute forces a revocation check (see `view_revocation`).
    """

    def authenticate(self, request: Request) -> tuple[GrantUser, Grant] | None:
        _vary_on_authorization(request)
        django_request: HttpRequest = request._request
        forced = view_revocation((request.parser_context or {}).get("view"), request.method or "GET")
        grant = attached_grant(django_request)  # GrantexMiddleware verified it already
        try:
            if grant is None:
                try:
                    credentials = read_request_credentials(django_request)
                except TokenMissing:
                    return None  # let the next authenticator (session, ...) try
                grant = verify_request(django_request, credentials=credentials, revocation=forced)
                attach_grant(django_request, grant)
            elif forced:
                # Verified by the middleware: ask about the grant only (verifying again would
                # replay the request's DPoP proof).
                confirm_not_revoked(django_request, grant)
        except GuardError as error:
            raise GrantexAPIException(error) from None
        return GrantUser(grant), grant

    def authenticate_header(self, request: Request) -> str:
        """The bare challenge: DRF then answers an unauthenticated request 401, not 403."""
        return error_response(TokenMissing(), get_guard().config).headers["WWW-Authenticate"]


class HasGrantScopes(BasePermission):
    """The request's grant holds the view's `required_scopes` (or `required_scopes_map` entry)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        grant = request.auth
        if not isinstance(grant, Grant):
            raise GrantexAPIException(TokenMissing())
        try:
            declared = view_requirements(view)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(f"{type(view).__qualname__}: {exc}") from exc
        if not declared.declared:
            raise ImproperlyConfigured(
                f"{type(view).__qualname__} uses HasGrantScopes but declares no "
                "required_scopes or required_scopes_map (required_scopes = [] accepts any grant)."
            )
        required = declared.for_method(request.method or "GET")
        try:
            if required is None:
                raise InsufficientScope(f"Grant tokens may not {request.method} this resource.")
            required.check(grant.scope_set)
        except GuardError as error:
            raise GrantexAPIException(error) from None
        return True


def view_revocation(view: object, method: str) -> bool | None:
    """True when the view forces a revocation check for `method`, else None (the policy).

    A view's `revocation` is True (every method), a list of methods (HEAD follows
    GET) or absent; False is refused: a view may only tighten the guard's policy.
    """
    declared = getattr(view, "revocation", None)
    if declared is None:
        return None
    if declared is True:
        return True
    if declared is False:
        raise ImproperlyConfigured(f"{type(view).__qualname__}.revocation = False: a view cannot switch "
                                   "revocation checks off; use True, a list of methods, or nothing")
    listed = isinstance(declared, (list, tuple, set, frozenset))
    if not listed or not all(isinstance(item, str) for item in declared):
        raise ImproperlyConfigured(f"{type(view).__qualname__}.revocation must be True or a list of HTTP "
                                   f"methods, got {declared!r}")
    methods = {item.upper() for item in declared}
    method = method.upper()
    return True if method in methods or (method == "HEAD" and "GET" in methods) else None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: our errors as-is, anything else to DRF's default.

    Also turns a GuardError raised inside a view (`grant.require(..., amount=x)`)
    into its 401/403 answer.
    """
    # rest_framework.views imports the authentication classes named in the settings,
    # i.e. this module: importing it at the top would be circular.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    if isinstance(exc, GuardError):
        exc = GrantexAPIException(exc)
    if not isinstance(exc, GrantexAPIException):
        return drf_exception_handler(exc, context)
    error = exc.guard_error
    set_rollback()
    response = Response(error.to_dict(), status=error.status, headers=exc.response_headers)
    patch_vary_headers(response, AUTHORIZATION_VARY)
    return response


def _vary_on_authorization(request: Request) -> None:
    # The view's response headers are only reachable through the parser context;
    # finalize_response merges their Vary into the response, errors included.
    view = (request.parser_context or {}).get("view")
    headers = getattr(view, "headers", None)
    if isinstance(headers, dict):
        vary = headers.get("Vary")
        headers["Vary"] = f"{vary}, Authorization" if vary else "Authorization"
