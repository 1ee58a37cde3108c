"""One request's authentication, shared by the middleware, the decorators and DRF.

Everything here goes through the core's `http` edges: credentials from the
headers, errors as `{"error", "message"}` with their challenge.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.utils.cache import patch_vary_headers

from ..errors import GuardError, TokenMissing
from ..grant import Grant
from ..http import Credentials, error_response, read_credentials, request_url
from ..scopes import Requirement
from ..verifier import Guard
from .conf import get_guard
from .user import GrantUser

__all__ = ["attach_grant", "confirm_not_revoked", "confirm_not_revoked_async", "error_json_response",
           "request_grant", "verify_request", "verify_request_async"]

AUTHORIZATION_VARY = ("Authorization",)
_NOTHING = Requirement()


def read_request_credentials(request: HttpRequest) -> Credentials:
    """The grant token and DPoP proof; TokenMissing / TokenInvalid like `read_credentials`."""
    return read_credentials(request.headers.get("Authorization"), request.headers.get("DPoP"))


def verify_request(request: HttpRequest, required: Requirement = _NOTHING,
                   credentials: Credentials | None = None, guard: Guard | None = None,
                   revocation: bool | None = None) -> Grant:
    """Verify the request's grant token for `required`; raise a GuardError otherwise.

    `revocation=True` forces the revocation check.
    """
    credentials = credentials or read_request_credentials(request)
    guard = guard or get_guard()
    return guard.verify(credentials.token, scopes=required, dpop=credentials.proof,
                        method=request.method, url=_url(request, guard, credentials),
                        revocation=revocation)


async def verify_request_async(request: HttpRequest, required: Requirement = _NOTHING,
                               credentials: Credentials | None = None,
                               guard: Guard | None = None,
                               revocation: bool | None = None) -> Grant:
    """`verify_request` for async views and middleware (`verify_async`: never blocks)."""
    credentials = credentials or read_request_credentials(request)
    guard = guard or get_guard()
    return await guard.verify_async(credentials.token, scopes=required, dpop=credentials.proof,
                                    method=request.method, url=_url(request, guard, credentials),
                                    revocation=revocation)


# A grant verified earlier in the request (middleware, DRF authentication) is only asked
# about, never verified again: that would replay the request's DPoP proof.


def confirm_not_revoked(request: HttpRequest, grant: Grant) -> None:
    """The forced revocation check for the grant verified earlier in this request."""
    get_guard().confirm_not_revoked(grant, read_request_credentials(request).token)


async def confirm_not_revoked_async(request: HttpRequest, grant: Grant) -> None:
    """`confirm_not_revoked` for async views: never blocks the event loop."""
    await get_guard().confirm_not_revoked_async(grant, read_request_credentials(request).token)


def _url(request: HttpRequest, guard: Guard, credentials: Credentials) -> str | None:
    """The URL a DPoP proof names (Django's own proxy settings apply, then ours); only a
    request carrying a proof needs it."""
    if not credentials.proof:
        return None
    return request_url(request.build_absolute_uri(), request.headers.get, guard.config)


def attach_grant(request: HttpRequest, grant: Grant) -> None:
    """`request.grant` and a non-database `request.user` for the verified grant."""
    request.grant = grant  # type: ignore[attr-defined]
    request.user = GrantUser(grant)  # type: ignore[assignment]


def attached_grant(request: HttpRequest) -> Grant | None:
    """The grant a middleware (or an outer decorator) already verified for this request."""
    grant = getattr(request, "grant", None)
    return grant if isinstance(grant, Grant) else None


def request_grant(request: HttpRequest) -> Grant:
    """The request's verified grant, or TokenMissing (answered 401 by the middleware/decorators).

    The typed way for a view to read `request.grant`.
    """
    grant = attached_grant(request)
    if grant is None:
        raise TokenMissing()
    return grant


def error_json_response(error: GuardError, guard: Guard | None = None) -> JsonResponse:
    """The error as JSON with its WWW-Authenticate or Retry-After and Cache-Control headers."""
    config = (guard or get_guard()).config
    status, headers, body = error_response(error, config)
    response = JsonResponse(body, status=status)
    for name, value in headers.items():
        response[name] = value
    patch_vary_headers(response, AUTHORIZATION_VARY)
    return response
