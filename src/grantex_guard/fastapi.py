"""FastAPI: a bearer security dependency that yields a typed Grant.

    grantex = GrantexBearer(guard)
    install(app)                      # GuardError -> 401/403/503 JSON + challenge

    @app.get("/calendar")
    async def calendar(grant: Grant = Security(grantex, scopes=["calendar:read"])): ...

    @app.post("/payments")
    async def pay(body: Payment, grant: Grant = Depends(grantex)):
        grant.require("payments:initiate", amount=body.amount)   # 403 when over the cap

    @app.post("/transfers")
    async def transfer(grant: Grant = Depends(grantex.require("calendar:read", revocation=True))): ...

    app.post("/webhooks/grantex", include_in_schema=False)(webhook_endpoint(guard, secret))

The token is verified once per request (memoised on `request.state`, shared
with GrantexMiddleware when it uses the same guard); later scope checks only
match scopes, and a forced revocation check only asks about the grant.
Builds on `grantex_guard.starlette`.
"""

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable

from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.applications import Starlette

from .errors import GuardError, TokenMissing
from .grant import Grant
from .http import error_response
from .revocation import route_revocation
from .scopes import Requirement, requirement
from .starlette import (
    GRANT_STATE_KEY,
    GUARD_STATE_KEY,
    TokenExtractor,
    confirm_remembered,
    guard_error_handler,
    metadata_endpoint,
    metadata_paths,
    remember_grant,
    verify_connection,
    webhook_endpoint,
)
from .verifier import Guard

__all__ = ["GrantexBearer", "install", "webhook_endpoint"]

logger = logging.getLogger("grantex_guard")

_DESCRIPTION = "A Grantex grant token: `Authorization: Bearer <token>`."


def install(app: Starlette | FastAPI, guard: Guard | None = None, *,
            scopes_supported: Iterable[str] = ()) -> None:
    """Answer every GuardError with its status, JSON body and WWW-Authenticate (idempotent).

    `guard` (optional) becomes `app.state.grantex_guard`: the realm and resource
    of errors raised outside a GrantexBearer dependency come from it. With a
    `resource` configured, the RFC 9728 metadata its 401 challenges point at is
    routed too (listing `scopes_supported` when given), unless a route already
    serves that path (e.g. GrantexMiddleware in front answers it first anyway).
    """
    if app.exception_handlers.get(GuardError) is not guard_error_handler:
        app.add_exception_handler(GuardError, guard_error_handler)
    if guard is None:
        return
    app.state.grantex_guard = guard
    routed = {getattr(route, "path", None) for route in app.routes}
    missing = sorted(metadata_paths(guard) - routed)
    if missing:
        endpoint = metadata_endpoint(guard, scopes_supported)
        for path in missing:
            app.add_route(path, endpoint, methods=["GET"], include_in_schema=False)


class GrantexBearer(SecurityBase):
    """FastAPI dependency: the verified Grant of the request.

    - `Depends(grantex)`: any valid grant token.
    - `Security(grantex, scopes=[...])`: also requires those scopes (constraint-aware);
      they are listed on the route's security requirement in OpenAPI.
    - `Depends(grantex.require(*scopes, any_of=[...]))`: the same, with `any_of`.
    - `auto_error=False`: None when the request has no token (an invalid token
      is still rejected).

    Errors are raised as GuardError: call `install(app)` so they become
    401/403/503 answers. Without it they fall back to FastAPI's HTTPException
    (right status and headers, body `{"detail": {...}}`) and a warning is logged.
    """

    def __init__(
        self,
        guard: Guard,
        *,
        auto_error: bool = True,
        scheme_name: str | None = None,
        description: str | None = None,
        token_extractor: TokenExtractor | None = None,
    ) -> None:
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a grantex_guard.Guard, got {type(guard).__name__}")
        self.guard = guard
        self.auto_error = auto_error
        self.token_extractor = token_extractor
        self.model = HTTPBearerModel(bearerFormat="JWT", description=description or _DESCRIPTION)
        self.scheme_name = scheme_name or "GrantexBearer"

    async def __call__(self, request: Request, security_scopes: SecurityScopes) -> Grant | None:
        try:
            grant = await self._grant(request)
            if grant is None:
                if self.auto_error:
                    raise TokenMissing()
                return None
            if security_scopes.scopes:
                requirement(security_scopes.scopes).check(grant.scope_set)
        except GuardError as error:
            raise _unhandled_fallback(request, error) from None
        return grant

    async def _grant(self, request: Request) -> Grant | None:
        state = request.scope.setdefault("state", {})
        if state.get(GUARD_STATE_KEY) is self.guard and GRANT_STATE_KEY in state:
            grant: Grant | None = state[GRANT_STATE_KEY]
            return grant
        state[GUARD_STATE_KEY] = self.guard
        try:
            grant, token = await verify_connection(request, self.guard,
                                                   token_extractor=self.token_extractor)
        except TokenMissing:
            grant, token = None, None
        remember_grant(request.scope, self.guard, grant, token)
        return grant

    def require(
        self, *scopes: str, any_of: Iterable[str] = (), revocation: bool | None = None
    ) -> Callable[..., Awaitable[Grant]]:
        """A dependency requiring every scope of `scopes` and, if given, one of `any_of`.

        Parsed now: a malformed scope raises ValueError when the route is declared.
        A grant is always required here, even with `auto_error=False`.
        `revocation=True` confirms with Grantex on every request that the grant is
        not revoked, whatever the guard's policy; it needs the guard's api_key
        (checked now) and `revocation=False` is refused (routes only tighten).
        """
        if isinstance(any_of, str):
            raise TypeError("any_of must be a list of scopes, not a single string")
        needed = Requirement.parse(scopes, tuple(any_of))
        forced = route_revocation(revocation, self.guard)
        listed = [scope.text for scope in needed.all_of]

        async def granted(
            request: Request, grant: Grant | None = Security(self, scopes=listed)  # noqa: B008
        ) -> Grant:
            try:
                if grant is None:
                    raise TokenMissing()
                if needed.any_of:
                    needed.check(grant.scope_set)
                if forced:
                    await confirm_remembered(request, self.guard, grant)
            except GuardError as error:
                raise _unhandled_fallback(request, error) from None
            return grant

        return granted


_warned_apps: "weakref.WeakSet[object]" = weakref.WeakSet()


def _unhandled_fallback(request: Request, error: GuardError) -> Exception:
    """The error itself when the app has a handler for it, else an equivalent HTTPException."""
    handlers = getattr(request.app, "exception_handlers", {})
    if any(cls in handlers for cls in type(error).__mro__ if issubclass(cls, GuardError)):
        return error
    if request.app not in _warned_apps:
        _warned_apps.add(request.app)
        logger.warning("GuardError without a handler: call grantex_guard.fastapi.install(app)")
    state = request.scope.get("state") or {}
    guard = state.get(GUARD_STATE_KEY)
    rendered = error_response(error, guard.config if isinstance(guard, Guard) else None)
    return HTTPException(rendered.status, detail=rendered.body, headers=rendered.headers)
