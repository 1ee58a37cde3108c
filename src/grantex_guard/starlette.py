"""Starlette and any ASGI app: middleware, authentication backend, scope decorator.

    app = Starlette(routes=..., middleware=[Middleware(GrantexMiddleware, guard=guard)])

    @require_scopes("calendar:read")
    async def calendar(request: Request) -> Response:
        grant = request.state.grant

Three ways in, one pipeline (`Guard.verify_async`, never the blocking one):

- `GrantexMiddleware`: a pure ASGI middleware; stores the Grant in
  `request.state.grant`, answers rejected tokens itself, serves the RFC 9728
  metadata document.
- `GrantexAuthBackend`: for Starlette's `AuthenticationMiddleware`
  (`request.user`, `request.auth.scopes`); pass `on_error=on_auth_error`.
- `require_scopes(...)`: constraint-aware scope check for endpoints, using the
  grant found by either of the above, or authenticating the request itself;
  `revocation=True` also confirms with Grantex that the grant is not revoked.
- `webhook_endpoint(guard, secret)`: receives Grantex's `grant.revoked`
  webhooks into `guard.revocation.store` (not protected by grant tokens:
  exclude its path from a `required=True` middleware).

Every rejection is `grantex_guard.http.error_response`: JSON body,
`WWW-Authenticate` (or `Retry-After`) and `Cache-Control: no-store`.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar, overload

import anyio.from_thread
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._principal import GrantPrincipal
from .config import GuardConfig
from .errors import GuardError, TokenMissing
from .grant import Grant
from .http import (
    METADATA_PATH,
    Credentials,
    error_response,
    extracted_credentials,
    metadata_path,
    read_credentials,
    request_url,
)
from .http import resource_metadata as metadata_document
from .revocation import (
    MAX_WEBHOOK_BODY,
    check_webhook_secret,
    handle_webhook_async,
    route_revocation,
    webhook_headers,
)
from .scopes import Requirement
from .verifier import Guard

__all__ = [
    "GRANT_STATE_KEY",
    "GUARD_STATE_KEY",
    "TOKEN_STATE_KEY",
    "GrantUser",
    "GrantexAuthBackend",
    "GrantexAuthenticationError",
    "GrantexMiddleware",
    "TokenExtractor",
    "authenticate",
    "confirm_remembered",
    "guard_error_handler",
    "guard_error_response",
    "metadata_endpoint",
    "metadata_paths",
    "on_auth_error",
    "read_request_credentials",
    "remember_grant",
    "remembered_grant",
    "remembered_token",
    "require_scopes",
    "verify_connection",
    "webhook_endpoint",
]

P = ParamSpec("P")
R = TypeVar("R")

TokenExtractor = Callable[[HTTPConnection], "str | None"]
"""Reads the grant token from a request (a cookie, another header...); None when absent."""

# request.state.grant / request.state.grantex_guard: what the middleware, the
# backend and the FastAPI dependency found, so a request is verified once.
GRANT_STATE_KEY = "grant"
GUARD_STATE_KEY = "grantex_guard"
# The token the grant came from: a route forcing a revocation check confirms it
# without verifying again (which would replay the request's DPoP proof).
TOKEN_STATE_KEY = "grantex_token"

_WEBSOCKET_POLICY_VIOLATION = 1008


# -- the shared pipeline ---------------------------------------------------------


def read_request_credentials(
    conn: HTTPConnection, token_extractor: TokenExtractor | None = None
) -> Credentials:
    """The request's credentials; TokenMissing when it carries no grant token.

    With `token_extractor` the token comes from it; the DPoP proof is always
    the `DPoP` header, and its presence makes the token a DPoP presentation.
    """
    authorization, proofs = _raw_credentials(conn.scope)
    if token_extractor is None:
        return read_credentials(authorization, proofs)
    token = token_extractor(conn)
    if not token:
        raise TokenMissing()
    return extracted_credentials(token, proofs)


def _raw_credentials(scope: Scope) -> tuple[str | None, list[str]]:
    """The first Authorization header and every DPoP header, in one pass over the raw
    ASGI headers (names arrive lower-cased; values are latin-1, as Starlette reads them)."""
    authorization: str | None = None
    proofs: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"dpop":
            proofs.append(value.decode("latin-1"))
    return authorization, proofs


async def verify_connection(
    conn: HTTPConnection,
    guard: Guard,
    *,
    scopes: Requirement | Iterable[str] = (),
    token_extractor: TokenExtractor | None = None,
    revocation: bool | None = None,
) -> tuple[Grant, str]:
    """(grant, token): the request's token verified with its DPoP proof, method and URL.

    Raises GuardError. `revocation=True` forces the revocation check.
    """
    credentials = read_request_credentials(conn, token_extractor)
    grant = await guard.verify_async(
        credentials.token,
        scopes=scopes,
        dpop=credentials.proof,
        method=conn.scope.get("method", "GET"),
        # Only a proof names the URL; building it costs as much as a cached verification.
        url=request_url(str(conn.url), conn.headers.get, guard.config) if credentials.proof else None,
        revocation=revocation,
    )
    return grant, credentials.token


async def authenticate(
    conn: HTTPConnection,
    guard: Guard,
    *,
    scopes: Requirement | Iterable[str] = (),
    token_extractor: TokenExtractor | None = None,
    revocation: bool | None = None,
) -> Grant:
    """Verify the request's token (with its DPoP proof, method and URL); raise GuardError."""
    grant, _ = await verify_connection(conn, guard, scopes=scopes, token_extractor=token_extractor,
                                       revocation=revocation)
    return grant


def remember_grant(scope: Scope, guard: Guard, grant: Grant | None, token: str | None) -> None:
    """Record what authenticated this request, so later checks neither verify nor replay it."""
    state = scope.setdefault("state", {})
    state[GRANT_STATE_KEY] = grant
    state[GUARD_STATE_KEY] = guard
    state[TOKEN_STATE_KEY] = token


def remembered_token(conn: HTTPConnection) -> str | None:
    """The token behind the remembered grant (None when no grant was found)."""
    state = conn.scope.get("state") or {}
    token = state.get(TOKEN_STATE_KEY)
    return token if isinstance(token, str) else None


async def confirm_remembered(conn: HTTPConnection, guard: Guard, grant: Grant) -> None:
    """The forced revocation check for the grant remembered for this request: only that
    step runs again (verifying again would replay the request's DPoP proof)."""
    token = remembered_token(conn)
    if token is None:
        raise RuntimeError("revocation=True needs the token behind the grant: GrantexMiddleware, "
                           "GrantexAuthBackend and GrantexBearer record it with the grant")
    await guard.confirm_not_revoked_async(grant, token)


def remembered_grant(conn: HTTPConnection) -> tuple[bool, Grant | None, Guard | None]:
    """(authenticated already, the grant or None, the guard that did it) for this request.

    "Authenticated already" is True once the middleware, the backend or a
    dependency has looked at the request, even when it found no token.
    """
    state = conn.scope.get("state") or {}
    if GRANT_STATE_KEY in state:
        return True, state[GRANT_STATE_KEY], state.get(GUARD_STATE_KEY)
    user = conn.scope.get("user")
    if isinstance(user, GrantUser):
        return True, user.grant, None
    return False, None, None


def _app_guard(conn: HTTPConnection) -> Guard | None:
    app = conn.scope.get("app")
    state = getattr(app, "state", None)
    guard = getattr(state, GUARD_STATE_KEY, None)
    return guard if isinstance(guard, Guard) else None


def _config_for(conn: HTTPConnection) -> GuardConfig | None:
    guard = remembered_grant(conn)[2] or _app_guard(conn)
    return guard.config if guard is not None else None


# -- responses -------------------------------------------------------------------


def guard_error_response(error: GuardError, config: GuardConfig | None = None) -> Response:
    """The HTTP answer to a GuardError: status, JSON body, challenge headers."""
    rendered = error_response(error, config)
    return Response(
        rendered.json_bytes(), rendered.status, rendered.headers, media_type="application/json"
    )


async def guard_error_handler(conn: HTTPConnection, exc: Exception) -> Response:
    """Exception handler for GuardError (register it for `GuardError`).

    Lets routes call `grant.require("payments:initiate", amount=x)` and get a 403.
    The realm comes from the guard that authenticated the request, else
    `app.state.grantex_guard`.
    """
    if not isinstance(exc, GuardError):
        raise exc
    return guard_error_response(exc, _config_for(conn))


# -- pure ASGI middleware --------------------------------------------------------


def _path_matcher(exclude_paths: Iterable[str]) -> Callable[[str], bool]:
    if isinstance(exclude_paths, str):
        raise TypeError("exclude_paths must be a list of paths, not a single string")
    exact: set[str] = set()
    prefixes: list[str] = []
    for entry in exclude_paths:
        if not entry.startswith("/"):
            raise ValueError(f"exclude_paths entries must start with '/': {entry!r}")
        if entry.endswith("*"):
            prefixes.append(entry[:-1])
        elif entry.endswith("/") and entry != "/":
            exact.add(entry.rstrip("/"))
            prefixes.append(entry)
        else:
            exact.add(entry)
    prefix_tuple = tuple(prefixes)
    return lambda path: path in exact or path.startswith(prefix_tuple)


def _add_vary(send: Send) -> Send:
    async def send_with_vary(message: Message) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", [])
            MutableHeaders(scope=message).add_vary_header("Authorization")
        await send(message)

    return send_with_vary


class GrantexMiddleware:
    """Verifies the grant token of every request and stores the Grant in `request.state.grant`.

    - `required=False` (default): no token passes through with `grant = None`;
      an invalid token is still answered 401/403/503. `required=True`: a
      request without a token is answered 401 too.
    - `exclude_paths`: never authenticated (state untouched). An entry is an
      exact path ("/health"); ending in "/" it is a directory ("/static/"
      covers "/static" and everything below it); ending in "*" it is a plain
      string prefix ("/docs*" covers "/docs", "/docs/oauth2-redirect" and
      "/docsearch"). Matched against the ASGI `path`.
    - `token_extractor(conn) -> str | None` reads the token from elsewhere
      (a cookie, a query parameter for websockets) instead of `Authorization`.
    - `websocket=True` also verifies websocket handshakes; a rejected one is
      closed with 1008 (policy violation) before accept. Otherwise websocket
      and lifespan scopes pass untouched.
    - With `guard.config.resource` set, `GET /.well-known/oauth-protected-resource`
      (and the RFC 9728 path with the resource's path appended) answers the
      metadata document, listing `scopes_supported` when given.

    Responses of authenticated paths carry `Vary: Authorization`.
    """

    def __init__(
        self,
        app: ASGIApp,
        guard: Guard,
        *,
        required: bool = False,
        exclude_paths: Iterable[str] = (),
        token_extractor: TokenExtractor | None = None,
        websocket: bool = False,
        scopes_supported: Iterable[str] = (),
    ) -> None:
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a grantex_guard.Guard, got {type(guard).__name__}")
        self.app = app
        self.guard = guard
        self.required = required
        self.token_extractor = token_extractor
        self.websocket = websocket
        self._excluded = _path_matcher(exclude_paths)
        self._metadata_paths: frozenset[str] = frozenset()
        self._metadata_body = b""
        if guard.config.resource:
            self._metadata_body = _metadata_json(guard, scopes_supported)
            self._metadata_paths = metadata_paths(guard)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"] in self._metadata_paths and scope["method"] in ("GET", "HEAD"):
                await self._send_metadata(scope, receive, send)
            elif self._excluded(scope["path"]):
                await self.app(scope, receive, send)
            else:
                await self._http(scope, receive, send)
        elif kind == "websocket" and self.websocket and not self._excluded(scope["path"]):
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        send = _add_vary(send)
        try:
            grant, token = await self._grant(HTTPConnection(scope))
        except GuardError as error:
            await guard_error_response(error, self.guard.config)(scope, receive, send)
            return
        remember_grant(scope, self.guard, grant, token)
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            grant, token = await self._grant(HTTPConnection(scope))
        except GuardError as error:
            await send(
                {"type": "websocket.close", "code": _WEBSOCKET_POLICY_VIOLATION,
                 "reason": error.code}
            )
            return
        remember_grant(scope, self.guard, grant, token)
        await self.app(scope, receive, send)

    async def _grant(self, conn: HTTPConnection) -> tuple[Grant | None, str | None]:
        try:
            return await verify_connection(conn, self.guard, token_extractor=self.token_extractor)
        except TokenMissing:
            if self.required:
                raise
            return None, None

    async def _send_metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _metadata_response(self._metadata_body)(scope, receive, send)


# -- RFC 9728 protected-resource metadata ------------------------------------------


def metadata_paths(guard: Guard) -> frozenset[str]:
    """Where the metadata of `guard.config.resource` is served (none without a resource)."""
    resource = guard.config.resource
    return frozenset({METADATA_PATH, metadata_path(resource)}) if resource else frozenset()


def _metadata_json(guard: Guard, scopes_supported: Iterable[str]) -> bytes:
    if isinstance(scopes_supported, str):
        raise TypeError("scopes_supported must be a list of scopes, not a string")
    return json.dumps(metadata_document(guard.config, scopes_supported)).encode("utf-8")


def _metadata_response(body: bytes) -> Response:
    return Response(body, media_type="application/json", headers={"Cache-Control": "public, max-age=3600"})


def metadata_endpoint(guard: Guard, scopes_supported: Iterable[str] = ()) -> Callable[[Request], Response]:
    """An endpoint serving the RFC 9728 metadata of `guard.config.resource`.

    GrantexMiddleware serves it by itself; FastAPI's `install(app, guard)` routes
    this endpoint. ValueError when the guard has no `resource`.
    """
    body = _metadata_json(guard, scopes_supported)

    def protected_resource_metadata(request: Request) -> Response:
        return _metadata_response(body)

    return protected_resource_metadata


# -- AuthenticationMiddleware backend ----------------------------------------------


class GrantUser(GrantPrincipal, BaseUser):
    """`request.user` for a request with a verified grant token."""

    @property
    def display_name(self) -> str:
        return self.grant.principal_id

    @property
    def identity(self) -> str:
        return self.grant.principal_id


class GrantexAuthenticationError(AuthenticationError):
    """AuthenticationError carrying the GuardError; `on_auth_error` renders it."""

    def __init__(self, error: GuardError, config: GuardConfig) -> None:
        super().__init__(error.message)
        self.error = error
        self.config = config


class GrantexAuthBackend(AuthenticationBackend):
    """Starlette AuthenticationBackend: `request.user` is a GrantUser, `request.auth.scopes`
    the granted scopes. No token: unauthenticated (None). A rejected token raises
    GrantexAuthenticationError: use `AuthenticationMiddleware(..., on_error=on_auth_error)`.
    """

    def __init__(self, guard: Guard, *, token_extractor: TokenExtractor | None = None) -> None:
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a grantex_guard.Guard, got {type(guard).__name__}")
        self.guard = guard
        self.token_extractor = token_extractor

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        try:
            grant, token = await verify_connection(conn, self.guard,
                                                   token_extractor=self.token_extractor)
        except TokenMissing:
            remember_grant(conn.scope, self.guard, None, None)
            return None
        except GuardError as error:
            raise GrantexAuthenticationError(error, self.guard.config) from error
        remember_grant(conn.scope, self.guard, grant, token)
        return AuthCredentials(grant.scopes), GrantUser(grant)


def on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """`AuthenticationMiddleware(on_error=...)`: our JSON and challenge instead of a plain 400."""
    if isinstance(exc, GrantexAuthenticationError):
        return guard_error_response(exc.error, exc.config)
    return PlainTextResponse(str(exc), status_code=400)


# -- endpoint decorator ------------------------------------------------------------


def _connection_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> HTTPConnection:
    for value in (*args, *kwargs.values()):
        if isinstance(value, HTTPConnection):
            return value
    raise TypeError("require_scopes: the decorated endpoint received no Request argument")


class ScopeDecorator:
    """What `require_scopes(...)` returns: wraps an async or sync endpoint (or method)."""

    def __init__(self, needed: Requirement, guard: Guard | None, revocation: bool | None = None) -> None:
        self.needed = needed
        self.guard = guard
        self.revocation = revocation

    @overload
    def __call__(
        self, endpoint: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R | Response]]: ...

    @overload
    def __call__(self, endpoint: Callable[P, R]) -> Callable[P, R | Response]: ...

    def __call__(self, endpoint: Callable[P, Any]) -> Callable[P, Any]:
        if inspect.iscoroutinefunction(endpoint):
            async_endpoint: Callable[P, Awaitable[Any]] = endpoint

            @functools.wraps(endpoint)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                refusal = await self.refusal(_connection_in(args, kwargs))
                if refusal is not None:
                    return refusal
                return await async_endpoint(*args, **kwargs)

            return async_wrapper

        @functools.wraps(endpoint)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            conn = _connection_in(args, kwargs)
            done, grant, guard = remembered_grant(conn)
            # Starlette runs sync endpoints in a worker thread: any I/O (verifying, asking
            # Grantex) goes back to the event loop.
            if done and not self.revocation:
                refusal = self._check(grant, guard)
            else:
                refusal = anyio.from_thread.run(self.refusal, conn)
            if refusal is not None:
                return refusal
            return endpoint(*args, **kwargs)

        return sync_wrapper

    async def refusal(self, conn: HTTPConnection) -> Response | None:
        """None when the request may proceed, else the error response to send."""
        done, grant, guard = remembered_grant(conn)
        if done:
            return await self._confirm(conn, grant, guard)
        guard = self.guard or _app_guard(conn)
        if guard is None:
            raise RuntimeError(
                "require_scopes found no grant and no guard: add GrantexMiddleware or "
                "GrantexAuthBackend, pass guard=..., or set app.state.grantex_guard"
            )
        try:
            grant, token = await verify_connection(conn, guard, scopes=self.needed,
                                                   revocation=self.revocation)
        except GuardError as error:
            return guard_error_response(error, guard.config)
        remember_grant(conn.scope, guard, grant, token)
        return None

    async def _confirm(self, conn: HTTPConnection, grant: Grant | None,
                       guard: Guard | None) -> Response | None:
        """A grant verified earlier in this request: its scopes, then a forced revocation check."""
        refusal = self._check(grant, guard)
        if refusal is not None or not self.revocation or grant is None:
            return refusal
        guard = guard or self.guard or _app_guard(conn)
        if guard is None:
            raise RuntimeError("require_scopes(revocation=True) needs the guard that verified the "
                               "grant: use GrantexMiddleware or GrantexAuthBackend (they record it)")
        try:
            await confirm_remembered(conn, guard, grant)
        except GuardError as error:
            return guard_error_response(error, guard.config)
        return None

    def _check(self, grant: Grant | None, guard: Guard | None) -> Response | None:
        guard = guard or self.guard
        try:
            if grant is None:
                raise TokenMissing()
            self.needed.check(grant.scope_set)
        except GuardError as error:
            return guard_error_response(error, guard.config if guard is not None else None)
        return None


def require_scopes(
    *scopes: str, any_of: Iterable[str] = (), guard: Guard | None = None,
    revocation: bool | None = None,
) -> ScopeDecorator:
    """Require every scope of `scopes` and, if given, one of `any_of` (DESIGN.md semantics).

    The grant comes from `request.state.grant` (GrantexMiddleware) or
    `request.user.grant` (GrantexAuthBackend); when neither ran, the request is
    authenticated here with `guard` or `app.state.grantex_guard`. A refusal is
    returned as the JSON error response. Scope strings are parsed now: a
    malformed one raises ValueError at import time.

    `revocation=True` confirms with Grantex on every request that the grant is
    not revoked, whatever the guard's policy (a grant verified earlier in the
    request is confirmed, never verified twice).
    """
    if isinstance(any_of, str):
        raise TypeError("any_of must be a list of scopes, not a single string")
    return ScopeDecorator(Requirement.parse(scopes, tuple(any_of)), guard,
                          route_revocation(revocation, guard))


# -- Grantex webhooks ----------------------------------------------------------------


async def _raw_body(request: Request, limit: int) -> bytes:
    """The body as sent (never parsed: the signature covers these bytes), at most `limit` + 1."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


def webhook_endpoint(
    guard: Guard, secret: str | Sequence[str], *, allow_legacy: bool = False, tolerance: float = 300
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint receiving Grantex webhooks: `grant.revoked` goes into `guard.revocation.store`.

        Route("/webhooks/grantex", webhook_endpoint(guard, secret), methods=["POST"])
        app.post("/webhooks/grantex", include_in_schema=False)(webhook_endpoint(guard, secret))

    Answers 200 `{"received": true}`, 400 for a bad signature, timestamp or
    body, 503 when the store is unreachable (Grantex retries). It is not
    protected by grant tokens: list its path in the middleware's `exclude_paths`.
    `secret` may list several secrets while one is rotated.
    """
    if not isinstance(guard, Guard):
        raise TypeError(f"guard must be a grantex_guard.Guard, got {type(guard).__name__}")
    check_webhook_secret(secret)

    async def grantex_webhook(request: Request) -> Response:
        if request.method != "POST":
            return PlainTextResponse("Method Not Allowed", 405, headers={"Allow": "POST"})
        body = await _raw_body(request, MAX_WEBHOOK_BODY)
        status, answer = await handle_webhook_async(
            body, request.headers, secret=secret, store=guard.revocation.store,
            tolerance=tolerance, allow_legacy=allow_legacy, now=guard.config.now(),
        )
        return JSONResponse(answer, status, headers=webhook_headers(status))

    return grantex_webhook
