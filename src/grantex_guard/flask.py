"""Flask adapter: an extension with `init_app`, view decorators and blueprint protection.

    from flask import Flask
    from grantex_guard.flask import GrantexGuard, current_grant

    grantex = GrantexGuard()

    def create_app() -> Flask:
        app = Flask(__name__)
        app.config["GRANTEX_ISSUER"] = "https://grantex.dev"
        app.config["GRANTEX_AUDIENCE"] = "https://api.example.com"
        grantex.init_app(app)
        return app

    @bp.get("/calendar")
    @grantex.require_scopes("calendar:read")
    def calendar():
        return {"principal": current_grant.principal_id}

Configuration: every Guard option is read from `app.config` as `GRANTEX_<NAME>`
(`GRANTEX_ISSUER`, `GRANTEX_JWKS_URI`, `GRANTEX_AUDIENCE`, `GRANTEX_LEEWAY`, ...);
`GRANTEX_SCOPES_SUPPORTED` (adapter-only) lists the scopes announced in the RFC 9728
metadata. Each app gets its own Guard, kept in `app.extensions["grantex_guard"]`; the
extension object itself holds no app, so one `GrantexGuard()` serves any number of apps.

Releasing the Guard's HTTP client: a Guard is meant to live as long as its app, so
nothing closes it per request or per app context. A Guard the extension built from
`app.config` is closed by a `weakref.finalize` on the app: when the app is garbage
collected, or at interpreter exit at the latest. A Guard passed in as `guard=` belongs
to the caller, who closes it (`guard.close()`).

Verification runs the sync `guard.verify`, also for `async def` views: Flask runs those
in a per-request event loop on the worker thread, where blocking is harmless.

Revocation: `require_scopes(..., revocation=True)` and `protect(..., revocation=True)`
confirm with Grantex that the grant is not revoked, whatever the guard's policy;
`webhook_view(secret)` receives Grantex's `grant.revoked` webhooks:

    app.add_url_rule("/webhooks/grantex", view_func=webhook_view(secret), methods=["POST"])
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar, overload

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.local import LocalProxy

from .config import GuardConfig
from .errors import GuardError
from .grant import Grant
from .http import error_response, metadata_path, read_credentials, request_url, resource_metadata
from .revocation import (
    MAX_WEBHOOK_BODY,
    check_webhook_secret,
    handle_webhook,
    route_revocation,
    webhook_headers,
)
from .scopes import Requirement
from .verifier import Guard

__all__ = [
    "EXTENSION_KEY",
    "SETTINGS_PREFIX",
    "GrantexGuard",
    "ScopeDecorator",
    "current_grant",
    "exempt",
    "get_guard",
    "require_grant",
    "require_scopes",
    "webhook_view",
]

P = ParamSpec("P")
R = TypeVar("R")
V = TypeVar("V", bound=Callable[..., Any])

EXTENSION_KEY: Final = "grantex_guard"
SETTINGS_PREFIX: Final = "GRANTEX_"
SCOPES_SUPPORTED_SETTING: Final = "GRANTEX_SCOPES_SUPPORTED"
ADAPTER_SETTINGS: Final = frozenset({SCOPES_SUPPORTED_SETTING})
METADATA_ENDPOINT: Final = "grantex_guard.resource_metadata"

_EXEMPT_MARK = "_grantex_guard_exempt"
_CHECKED_FLAG = "_grantex_guard_checked"
_TOKEN_KEY = "_grantex_guard_token"  # in g: the token behind g.grant


@dataclass(frozen=True)
class _AppState:
    """What one app's `init_app` set up: its Guard and the metadata it announces."""

    guard: Guard
    scopes_supported: tuple[str, ...]


# -- request-time helpers ---------------------------------------------------------------


def _state(app: Flask | None = None) -> _AppState:
    target = app if app is not None else current_app
    state = target.extensions.get(EXTENSION_KEY)
    if not isinstance(state, _AppState):
        raise RuntimeError(
            f"grantex-guard is not initialised on Flask app {target.name!r}: "
            "call GrantexGuard(app) or grantex.init_app(app) in the app factory"
        )
    return state


def get_guard(app: Flask | None = None) -> Guard:
    """The Guard of `app` (default: the current app)."""
    return _state(app).guard


def _current_grant() -> Grant | None:
    grant: Grant | None = g.get("grant")
    return grant


current_grant: Grant = LocalProxy(_current_grant)  # type: ignore[assignment]
"""The request's Grant inside a protected view (same object as `g.grant`).

On routes that did not authenticate it proxies None: falsy, `== None`, but not
`is None`; test it with `if not current_grant` or read `g.grant` instead.
"""


def _authenticate(required: Requirement, audience: str | Sequence[str] | None,
                  revocation: bool | None = None) -> Grant:
    setattr(g, _CHECKED_FLAG, True)
    earlier: Grant | None = g.get("grant")
    token: str | None = g.get(_TOKEN_KEY)
    if earlier is not None and (token is not None or not revocation):
        # Already verified for this request (blueprint, then view): verifying again would
        # replay its DPoP proof. The view's own audience and scopes are checked on that
        # grant, in the core's order, and a forced revocation check asks about the grant.
        if audience is not None:
            get_guard().check_audience(earlier, audience)
        required.check(earlier.scope_set)
        if revocation and token is not None:
            get_guard().confirm_not_revoked(earlier, token)
        return earlier
    credentials = read_credentials(request.headers.get("Authorization"), request.headers.get("DPoP"))
    guard = get_guard()
    grant = guard.verify(
        credentials.token,
        scopes=required,
        audience=audience,
        dpop=credentials.proof,
        method=request.method,
        url=request_url(request.url, request.headers.get, guard.config) if credentials.proof else None,
        revocation=revocation,
    )
    g.grant = grant
    setattr(g, _TOKEN_KEY, credentials.token)
    return grant


# -- decorators -------------------------------------------------------------------------


class ScopeDecorator:
    """Protects a view (sync or `async def`) with one Requirement, parsed at decoration time."""

    def __init__(self, required: Requirement, audience: str | Sequence[str] | None = None,
                 revocation: bool | None = None) -> None:
        self.required = required
        self.audience = audience
        self.revocation = revocation

    @overload
    def __call__(
        self, view: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, R]: ...

    @overload
    def __call__(self, view: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, view: Callable[P, Any]) -> Callable[P, Any]:
        required, audience, revocation = self.required, self.audience, self.revocation

        @functools.wraps(view)
        def protected_view(*args: P.args, **kwargs: P.kwargs) -> Any:
            _authenticate(required, audience, revocation)
            # ensure_sync runs an `async def` view to completion (Flask[async]).
            return current_app.ensure_sync(view)(*args, **kwargs)

        return protected_view


def require_scopes(
    *scopes: str,
    any_of: Iterable[str] = (),
    audience: str | Sequence[str] | None = None,
    revocation: bool | None = None,
) -> ScopeDecorator:
    """Require a grant token holding every scope of `scopes` (and one of `any_of`, if given).

    Constraint-aware: `payments:initiate:max_1000` accepts a grant capped at 1000 or more.
    Malformed scope strings raise ValueError here, at import time. `audience` overrides
    the configured audience for this view. `revocation=True` confirms with Grantex on
    every request that the grant is not revoked, whatever the guard's policy
    (`revocation=False` is refused: a route may only tighten the policy).
    """
    return ScopeDecorator(Requirement.parse(scopes, any_of), audience, route_revocation(revocation))


_ANY_GRANT = ScopeDecorator(Requirement())


@overload
def require_grant(
    view: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, R]: ...


@overload
def require_grant(view: Callable[P, R]) -> Callable[P, R]: ...


def require_grant(view: Callable[P, Any]) -> Callable[P, Any]:
    """Require a valid grant token, whatever its scopes (check them in the view)."""
    return _ANY_GRANT(view)


def exempt(view: V) -> V:
    """Let `view` through its blueprint's `protect()` without a token."""
    setattr(view, _EXEMPT_MARK, True)
    return view


# -- the extension ----------------------------------------------------------------------


def _settings_from(config: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in config.items():
        if not key.startswith(SETTINGS_PREFIX) or key in ADAPTER_SETTINGS:
            continue
        try:
            options.update(GuardConfig.options_from_settings({key[len(SETTINGS_PREFIX):]: value}))
        except ValueError as exc:
            raise ValueError(f"app.config[{key!r}]: {exc}") from exc
    return options


def _guard_from_config(app: Flask) -> Guard:
    options = _settings_from(app.config)
    if not options.get("issuer") and not options.get("jwks_uri"):
        raise ValueError(
            f"grantex-guard: Flask app {app.name!r} has neither GRANTEX_ISSUER nor "
            "GRANTEX_JWKS_URI in app.config. Set one (hosted Grantex: GRANTEX_ISSUER = "
            "'https://grantex.dev'), or pass guard=Guard(...) to GrantexGuard."
        )
    try:
        guard = Guard(**options)
    except ValueError as exc:
        raise ValueError(f"grantex-guard configuration of Flask app {app.name!r}: {exc}") from exc
    weakref.finalize(app, guard.close)
    return guard


def _scopes_supported(app: Flask) -> tuple[str, ...]:
    scopes = app.config.get(SCOPES_SUPPORTED_SETTING, ())
    if isinstance(scopes, str) or not all(isinstance(scope, str) for scope in scopes):
        raise ValueError(f"{SCOPES_SUPPORTED_SETTING} must be a list of scope strings")
    return tuple(scopes)


def _error_handler(error: GuardError) -> Response:
    answer = error_response(error, get_guard().config)
    return current_app.response_class(
        answer.json_bytes(), status=answer.status, headers=answer.headers,
        mimetype="application/json",
    )


def _reset_grant() -> None:
    g.grant = None


def _vary_on_authorization(response: Response) -> Response:
    if g.get(_CHECKED_FLAG):
        response.vary.add("Authorization")
    return response


def _metadata_view() -> Response:
    state = _state()
    document = resource_metadata(state.guard.config, state.scopes_supported)
    return current_app.response_class(json.dumps(document), mimetype="application/json")


def _skips_protection() -> bool:
    rule = request.url_rule
    if rule is None:
        return True  # routing failed: let the 404/405 through
    if request.method == "OPTIONS" and getattr(rule, "provide_automatic_options", False):
        return True  # CORS preflight answered by Flask itself, never by the view
    view = current_app.view_functions.get(rule.endpoint)
    return bool(getattr(view, _EXEMPT_MARK, False))


class GrantexGuard:
    """The Flask extension: `GrantexGuard(app)` or `grantex = GrantexGuard(); grantex.init_app(app)`.

    `guard=` shares one explicit Guard with every app this extension initialises;
    without it, each app builds its own from its `GRANTEX_*` configuration.
    """

    def __init__(self, app: Flask | None = None, guard: Guard | None = None) -> None:
        self._guard = guard
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build (or take) the app's Guard, register the error handler, hooks and metadata route.

        Raises ValueError for an unknown `GRANTEX_*` key, a missing issuer, or any
        invalid option, so misconfiguration fails at start-up.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"grantex-guard is already initialised on Flask app {app.name!r}")
        if self._guard is not None:
            configured = sorted(SETTINGS_PREFIX + name.upper() for name in _settings_from(app.config))
            if configured:
                raise ValueError(
                    f"grantex-guard: Flask app {app.name!r} has Guard options in app.config "
                    f"({', '.join(configured)}) and guard= was passed; use one or the other"
                )
        scopes_supported = _scopes_supported(app)
        guard = self._guard if self._guard is not None else _guard_from_config(app)
        app.extensions[EXTENSION_KEY] = _AppState(guard, scopes_supported)
        # An app that already handles GuardError its own way keeps its handler.
        if GuardError not in app.error_handler_spec[None][None]:
            app.register_error_handler(GuardError, _error_handler)
        app.before_request(_reset_grant)
        app.after_request(_vary_on_authorization)
        if guard.config.resource:
            app.add_url_rule(metadata_path(guard.config.resource), METADATA_ENDPOINT,
                             _metadata_view, methods=["GET"])

    # The decorators are the module-level ones: state is looked up through current_app.

    @overload
    def require_grant(
        self, view: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, R]: ...

    @overload
    def require_grant(self, view: Callable[P, R]) -> Callable[P, R]: ...

    def require_grant(self, view: Callable[P, Any]) -> Callable[P, Any]:
        """Require a valid grant token, whatever its scopes."""
        return _ANY_GRANT(view)

    def require_scopes(
        self,
        *scopes: str,
        any_of: Iterable[str] = (),
        audience: str | Sequence[str] | None = None,
        revocation: bool | None = None,
    ) -> ScopeDecorator:
        """Require scopes; see the module-level `require_scopes`.

        With `guard=` given to the extension, `revocation=True` is checked against
        that guard now.
        """
        route_revocation(revocation, self._guard)
        return require_scopes(*scopes, any_of=any_of, audience=audience, revocation=revocation)

    def exempt(self, view: V) -> V:
        """Exempt `view` from its blueprint's `protect()`."""
        return exempt(view)

    def protect(
        self,
        blueprint: Blueprint,
        scopes: Iterable[str] = (),
        any_of: Iterable[str] = (),
        audience: str | Sequence[str] | None = None,
        revocation: bool | None = None,
    ) -> None:
        """Require a grant token (with `scopes` / one of `any_of`) on every view of `blueprint`.

        Views marked `@exempt` are let through, as are unmatched URLs (404/405) and
        Flask's automatic OPTIONS answers (CORS preflights carry no token).
        `revocation=True` forces a revocation check on every view of the blueprint.
        """
        required = Requirement.parse(scopes, any_of)
        forced = route_revocation(revocation, self._guard)

        def check_grant() -> None:
            if not _skips_protection():
                _authenticate(required, audience, forced)

        blueprint.before_request(check_grant)


# -- Grantex webhooks -------------------------------------------------------------------


def webhook_view(
    secret: str | Sequence[str], *, allow_legacy: bool = False, tolerance: float = 300
) -> Callable[[], Response]:
    """A view receiving Grantex webhooks: `grant.revoked` goes into the app guard's revocation store.

        app.add_url_rule("/webhooks/grantex", view_func=webhook_view(secret), methods=["POST"])

    Answers 200 `{"received": true}`, 400 for a bad signature, timestamp or body,
    503 when the store is unreachable (Grantex retries). Exempt from `protect()`:
    Grantex sends no grant token. `secret` may list several secrets while one is rotated.
    """
    check_webhook_secret(secret)

    def grantex_webhook() -> Response:
        # The raw bytes: the signature covers them, so nothing parses them first.
        body = request.stream.read(MAX_WEBHOOK_BODY + 1)
        headers = dict(request.headers.items())
        guard = get_guard()
        status, answer = handle_webhook(body, headers, secret=secret, store=guard.revocation.store,
                                        tolerance=tolerance, allow_legacy=allow_legacy,
                                        now=guard.config.now())
        return current_app.response_class(json.dumps(answer), status=status, mimetype="application/json",
                                          headers=webhook_headers(status))

    return exempt(grantex_webhook)
