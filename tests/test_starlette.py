"""grantex_guard.starlette: middleware, authentication backend, require_scopes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from grantex_guard import Guard, GuardError
from grantex_guard.starlette import (
    GrantexAuthBackend,
    GrantexMiddleware,
    GrantUser,
    guard_error_handler,
    on_auth_error,
    require_scopes,
)
from grantex_guard.testing import DPoPAgent, LocalIssuer
from tests.matrix import API, CASES, GRANTED, Case, check, check_unavailable

UNREACHABLE_JWKS = "http://127.0.0.1:9/.well-known/jwks.json"


def unavailable_guard(issuer: LocalIssuer) -> Guard:
    return Guard(issuer=issuer.issuer, jwks_uri=UNREACHABLE_JWKS, audience=API, http_timeout=0.5)


# -- the matrix apps (also served by uvicorn in test_asgi_server.py) ----------------


def _principal(grant: Any) -> JSONResponse:
    return JSONResponse({"principal": grant.principal_id})


def _grant_of(request: Request) -> Any:
    return getattr(request.state, "grant", None) or request.user.grant


@require_scopes("calendar:read")
async def calendar(request: Request) -> Response:
    return _principal(_grant_of(request))


@require_scopes("payments:initiate:max_1000")
async def payments(request: Request) -> Response:
    return _principal(_grant_of(request))


async def public(request: Request) -> Response:
    return JSONResponse({"public": True})


MATRIX_ROUTES = [
    Route("/calendar", calendar),
    Route("/payments", payments),
    Route("/public", public),
]


def middleware_app(guard: Guard, routes: list[Any] | None = None, **options: Any) -> Starlette:
    """Matrix routes behind GrantexMiddleware (required=False: the decorator answers 401)."""
    return Starlette(
        routes=[*MATRIX_ROUTES, *(routes or [])],
        middleware=[Middleware(GrantexMiddleware, guard=guard, **options)],
    )


def backend_app(guard: Guard, routes: list[Any] | None = None) -> Starlette:
    """Matrix routes behind AuthenticationMiddleware with GrantexAuthBackend."""
    return Starlette(
        routes=[*MATRIX_ROUTES, *(routes or [])],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=GrantexAuthBackend(guard),
                       on_error=on_auth_error)
        ],
    )


def decorator_app(guard: Guard, routes: list[Any] | None = None) -> Starlette:
    """Matrix routes with no middleware: require_scopes uses app.state.grantex_guard."""
    app = Starlette(routes=[*MATRIX_ROUTES, *(routes or [])])
    app.state.grantex_guard = guard
    return app


APPS: dict[str, Callable[[Guard], Starlette]] = {
    "middleware": middleware_app,
    "backend": backend_app,
    "decorator": decorator_app,
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the matrix --------------------------------------------------------------------


@pytest.mark.parametrize("app_kind", APPS)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_matrix_case_is_answered_as_specified(
    app_kind: str, case: Case, issuer: LocalIssuer, guard: Guard
) -> None:
    headers = case.make_headers(issuer)
    with TestClient(APPS[app_kind](guard)) as client:
        response = client.get(case.path, headers=headers)
    check(case, response.status_code, response.headers, response.json(), headers)
    if case.code is not None:
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("app_kind", APPS)
def test_unreachable_jwks_is_503(app_kind: str, issuer: LocalIssuer) -> None:
    token = issuer.mint(GRANTED, audience=API)
    with TestClient(APPS[app_kind](unavailable_guard(issuer))) as client:
        response = client.get("/calendar", headers=bearer(token))
    check_unavailable(response.status_code, response.headers, response.json())


# -- middleware ----------------------------------------------------------------------


async def whoami(request: Request) -> Response:
    grant = request.state.grant
    return JSONResponse({"principal": grant.principal_id if grant else None})


WHOAMI = [Route("/whoami", whoami)]


def test_middleware_stores_the_grant_in_request_state(issuer: LocalIssuer, guard: Guard) -> None:
    token = issuer.mint(GRANTED, audience=API, principal_id="user_42")
    client = TestClient(middleware_app(guard, WHOAMI))
    assert client.get("/whoami", headers=bearer(token)).json() == {"principal": "user_42"}


def test_middleware_lets_a_request_without_token_through_with_grant_none(guard: Guard) -> None:
    client = TestClient(middleware_app(guard, WHOAMI))
    response = client.get("/whoami")
    assert (response.status_code, response.json()) == (200, {"principal": None})


def test_middleware_rejects_an_invalid_token_even_when_not_required(guard: Guard) -> None:
    response = TestClient(middleware_app(guard)).get("/public", headers=bearer("not-a-jwt"))
    assert response.status_code == 401
    assert response.json()["error"] == "TOKEN_INVALID"


def test_required_middleware_rejects_a_missing_token_before_the_route(guard: Guard) -> None:
    response = TestClient(middleware_app(guard, required=True)).get("/public")
    assert response.status_code == 401
    assert response.json()["error"] == "TOKEN_MISSING"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="grantex"'


@pytest.mark.parametrize(
    ("exclude", "path", "excluded"),
    [
        ("/public", "/public", True),
        ("/public", "/public/x", False),
        ("/public/", "/public", True),
        ("/public/", "/public/deep/x", True),
        ("/public/", "/publicity", False),
        ("/pub*", "/publicity", True),
        ("/pub*", "/pu", False),
    ],
)
def test_exclude_paths_match_exact_directory_and_star_entries(
    guard: Guard, exclude: str, path: str, excluded: bool
) -> None:
    async def anything(request: Request) -> Response:
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/{rest:path}", anything)],
        middleware=[Middleware(GrantexMiddleware, guard=guard, required=True,
                               exclude_paths=[exclude])],
    )
    response = TestClient(app).get(path)
    assert response.status_code == (200 if excluded else 401)


@pytest.mark.parametrize(
    ("exclude_paths", "error"),
    [("/health", TypeError), (["health"], ValueError)],
)
def test_malformed_exclude_paths_fail_at_start_up(
    guard: Guard, exclude_paths: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        GrantexMiddleware(public, guard=guard, exclude_paths=exclude_paths)


def test_middleware_adds_vary_authorization_to_what_the_route_sends(
    issuer: LocalIssuer, guard: Guard
) -> None:
    async def negotiated(request: Request) -> Response:
        return JSONResponse({}, headers={"Vary": "Accept-Encoding"})

    client = TestClient(middleware_app(guard, [Route("/negotiated", negotiated)]))
    token = issuer.mint(GRANTED, audience=API)
    assert client.get("/negotiated", headers=bearer(token)).headers["Vary"] == (
        "Accept-Encoding, Authorization"
    )
    assert client.get("/calendar").headers["Vary"] == "Authorization"


def test_excluded_paths_get_no_vary_header(guard: Guard) -> None:
    client = TestClient(middleware_app(guard, exclude_paths=["/public"]))
    assert "Vary" not in client.get("/public").headers


def test_token_extractor_reads_the_token_from_a_cookie(issuer: LocalIssuer, guard: Guard) -> None:
    def from_cookie(conn: HTTPConnection) -> str | None:
        return conn.cookies.get("grant")

    client = TestClient(middleware_app(guard, WHOAMI, token_extractor=from_cookie))
    client.cookies.set("grant", issuer.mint(GRANTED, audience=API, principal_id="user_c"))
    assert client.get("/whoami").json() == {"principal": "user_c"}


def test_a_bound_token_from_a_cookie_is_proven_by_its_dpop_header(issuer: LocalIssuer, guard: Guard) -> None:
    def from_cookie(conn: HTTPConnection) -> str | None:
        return conn.cookies.get("grant")

    agent = DPoPAgent(clock=issuer.clock)
    token = issuer.mint(GRANTED, audience=API, principal_id="user_c", bound_to=agent.thumbprint)
    client = TestClient(middleware_app(guard, WHOAMI, token_extractor=from_cookie))
    client.cookies.set("grant", token)
    proven = client.get("/whoami", headers={"DPoP": agent.proof("GET", "http://testserver/whoami", token)})
    unproven = client.get("/whoami")
    assert proven.json() == {"principal": "user_c"}
    assert (unproven.status_code, unproven.json()["error"]) == (401, "DPOP_REQUIRED")


def test_lifespan_passes_through_the_middleware(guard: Guard) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = Starlette(routes=MATRIX_ROUTES, lifespan=lifespan,
                    middleware=[Middleware(GrantexMiddleware, guard=guard, required=True)])
    with TestClient(app):
        pass
    assert events == ["startup", "shutdown"]


async def echo_principal(websocket: WebSocket) -> None:
    await websocket.accept()
    grant = websocket.scope.get("state", {}).get("grant")
    await websocket.send_json({"principal": grant.principal_id if grant else None})
    await websocket.close()


WEBSOCKET = [WebSocketRoute("/ws", echo_principal)]


def test_websockets_pass_untouched_by_default(guard: Guard) -> None:
    client = TestClient(middleware_app(guard, WEBSOCKET, required=True))
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"principal": None}


def test_websocket_handshake_token_is_verified_when_enabled(
    issuer: LocalIssuer, guard: Guard
) -> None:
    client = TestClient(middleware_app(guard, WEBSOCKET, required=True, websocket=True))
    token = issuer.mint(GRANTED, audience=API, principal_id="user_ws")
    with client.websocket_connect("/ws", headers=bearer(token)) as websocket:
        assert websocket.receive_json() == {"principal": "user_ws"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-jwt"}])
def test_rejected_websocket_handshake_closes_with_policy_violation(
    guard: Guard, headers: dict[str, str]
) -> None:
    client = TestClient(middleware_app(guard, WEBSOCKET, required=True, websocket=True))
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/ws",
                                                                              headers=headers):
        pass
    assert closed.value.code == 1008


# -- RFC 9728 metadata ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/v1"],
)
def test_middleware_serves_resource_metadata_without_a_token(
    issuer: LocalIssuer, path: str
) -> None:
    guard = issuer.guard(audience=API, resource="https://api.example.com/v1")
    app = middleware_app(guard, required=True, scopes_supported=["calendar:read"])
    response = TestClient(app).get(path)
    assert response.status_code == 200
    assert response.json() == {
        "resource": "https://api.example.com/v1",
        "authorization_servers": [issuer.issuer],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["ES256", "RS256"],
        "scopes_supported": ["calendar:read"],
    }


def test_challenges_point_to_the_resource_metadata(issuer: LocalIssuer) -> None:
    guard = issuer.guard(audience=API, resource="https://api.example.com/v1")
    response = TestClient(middleware_app(guard)).get("/calendar")
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="grantex", resource_metadata='
        '"https://api.example.com/.well-known/oauth-protected-resource/v1"'
    )


def test_metadata_path_is_an_ordinary_route_without_a_resource(guard: Guard) -> None:
    response = TestClient(middleware_app(guard)).get("/.well-known/oauth-protected-resource")
    assert response.status_code == 404


# -- authentication backend --------------------------------------------------------------


async def user_info(request: Request) -> Response:
    user = request.user
    if not isinstance(user, GrantUser):
        return JSONResponse({"authenticated": user.is_authenticated})
    return JSONResponse({
        "authenticated": user.is_authenticated,
        "principal_id": user.principal_id,
        "agent_did": user.agent_did,
        "display_name": user.display_name,
        "identity": user.identity,
        "token_id": user.grant.token_id,
        "scopes": request.auth.scopes,
    })


@requires("calendar:read")
async def starlette_requires(request: Request) -> Response:
    return JSONResponse({"ok": True})


def test_backend_exposes_the_grant_as_request_user(issuer: LocalIssuer, guard: Guard) -> None:
    token = issuer.mint(GRANTED, audience=API, principal_id="user_b", agent="ag_B")
    client = TestClient(backend_app(guard, [Route("/user", user_info)]))
    body = client.get("/user", headers=bearer(token)).json()
    assert body.pop("token_id").startswith("tok_")
    assert body == {
        "authenticated": True,
        "principal_id": "user_b",
        "agent_did": "did:grantex:ag_B",
        "display_name": "user_b",
        "identity": "user_b",
        "scopes": GRANTED,
    }


def test_backend_leaves_a_request_without_token_unauthenticated(guard: Guard) -> None:
    client = TestClient(backend_app(guard, [Route("/user", user_info)]))
    assert client.get("/user").json() == {"authenticated": False}


@pytest.mark.parametrize(("scopes", "status"), [(["calendar:read"], 200), (["email:send"], 403)])
def test_starlettes_own_requires_works_with_the_backend(
    issuer: LocalIssuer, guard: Guard, scopes: list[str], status: int
) -> None:
    client = TestClient(backend_app(guard, [Route("/exact", starlette_requires)]))
    token = issuer.mint(scopes, audience=API)
    assert client.get("/exact", headers=bearer(token)).status_code == status


def test_on_auth_error_keeps_other_authentication_errors_plain(guard: Guard) -> None:
    from starlette.authentication import AuthenticationError

    response = on_auth_error(HTTPConnection({"type": "http", "headers": []}),
                             AuthenticationError("bad credentials"))
    assert (response.status_code, response.body) == (400, b"bad credentials")


# -- require_scopes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "status"),
    [
        (["payments:initiate:max_1000"], 200),
        (["payments:initiate:max_5000"], 200),
        (["payments:initiate:max_999.99"], 403),
        (["payments:initiate"], 200),
        (["payments:refund"], 403),
    ],
)
def test_require_scopes_applies_max_constraints(
    issuer: LocalIssuer, guard: Guard, granted: list[str], status: int
) -> None:
    token = issuer.mint(granted, audience=API)
    assert TestClient(middleware_app(guard)).get("/payments", headers=bearer(token)).status_code \
        == status


@require_scopes(any_of=["calendar:read", "calendar:write"])
async def either_calendar(request: Request) -> Response:
    return JSONResponse({"ok": True})


@pytest.mark.parametrize(
    ("granted", "status"),
    [(["calendar:write"], 200), (["calendar:read"], 200), (["email:send"], 403)],
)
def test_require_scopes_any_of_needs_one_of_them(
    issuer: LocalIssuer, guard: Guard, granted: list[str], status: int
) -> None:
    client = TestClient(middleware_app(guard, [Route("/either", either_calendar)]))
    response = client.get("/either", headers=bearer(issuer.mint(granted, audience=API)))
    assert response.status_code == status


@pytest.mark.parametrize(
    "scope", ["calendar", "payments:initiate:max_1e3", "calendar::read", " calendar:read", ""]
)
def test_malformed_required_scope_fails_at_decoration(scope: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        require_scopes(scope)


@require_scopes("calendar:read")
def sync_calendar(request: Request) -> Response:
    return _principal(request.state.grant)


class CalendarEndpoint(HTTPEndpoint):
    @require_scopes("calendar:read")
    async def get(self, request: Request) -> Response:
        return _principal(request.state.grant)

    @require_scopes("calendar:read")
    def post(self, request: Request) -> Response:
        return _principal(request.state.grant)


EXTRA_ENDPOINTS = [Route("/sync", sync_calendar), Route("/endpoint", CalendarEndpoint)]
ENDPOINT_CALLS = [("GET", "/sync"), ("GET", "/endpoint"), ("POST", "/endpoint")]


@pytest.mark.parametrize("app_kind", ["middleware", "decorator"])
@pytest.mark.parametrize(("method", "path"), ENDPOINT_CALLS)
def test_require_scopes_wraps_sync_functions_and_endpoint_methods(
    issuer: LocalIssuer, guard: Guard, app_kind: str, method: str, path: str
) -> None:
    app = middleware_app(guard, EXTRA_ENDPOINTS) if app_kind == "middleware" else \
        decorator_app(guard, EXTRA_ENDPOINTS)
    client = TestClient(app)
    allowed = client.request(method, path, headers=bearer(issuer.mint(["calendar:read"],
                                                                      audience=API)))
    refused = client.request(method, path, headers=bearer(issuer.mint(["email:send"],
                                                                      audience=API)))
    assert (allowed.status_code, allowed.json()) == (200, {"principal": "user_test"})
    assert (refused.status_code, refused.json()["error"]) == (403, "SCOPE_INSUFFICIENT")


def test_require_scopes_uses_the_guard_it_is_given(issuer: LocalIssuer, guard: Guard) -> None:
    @require_scopes("calendar:read", guard=guard)
    async def guarded(request: Request) -> Response:
        return _principal(request.state.grant)

    client = TestClient(Starlette(routes=[Route("/guarded", guarded)]))
    token = issuer.mint(GRANTED, audience=API, principal_id="user_g")
    assert client.get("/guarded", headers=bearer(token)).json() == {"principal": "user_g"}
    assert client.get("/guarded").status_code == 401


def test_require_scopes_without_any_guard_is_a_configuration_error(issuer: LocalIssuer) -> None:
    client = TestClient(Starlette(routes=MATRIX_ROUTES))
    with pytest.raises(RuntimeError, match="no guard"):
        client.get("/calendar", headers=bearer(issuer.mint(GRANTED, audience=API)))


async def pay(request: Request) -> Response:
    grant = request.state.grant
    amount = request.query_params["amount"]
    grant.require("payments:initiate", amount=amount)
    return JSONResponse({"paid": amount})


@pytest.mark.parametrize(("amount", "status"), [("500", 200), ("500.01", 403)])
def test_run_time_amount_check_answers_403_through_the_handler(
    issuer: LocalIssuer, guard: Guard, amount: str, status: int
) -> None:
    app = Starlette(
        routes=[Route("/pay", pay)],
        middleware=[Middleware(GrantexMiddleware, guard=guard, required=True)],
        exception_handlers={GuardError: guard_error_handler},
    )
    token = issuer.mint(GRANTED, audience=API)
    response = TestClient(app).get("/pay", params={"amount": amount}, headers=bearer(token))
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"] == "SCOPE_INSUFFICIENT"
        assert 'scope="payments:initiate:max_500.01"' in response.headers["WWW-Authenticate"]


# -- packaging -------------------------------------------------------------------------------


def test_importing_grantex_guard_loads_no_web_framework() -> None:
    code = (
        "import sys, grantex_guard, grantex_guard.testing\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'fastapi', 'django', 'flask', 'anyio')]\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


# -- the example -------------------------------------------------------------------------------


def test_example_app_serves_reads_and_checks_payment_amounts(issuer: LocalIssuer) -> None:
    from examples import starlette_app

    guard = issuer.guard(audience=API)
    token = issuer.mint(["calendar:read", "payments:initiate:max_100"], audience=API)
    with TestClient(starlette_app.create_app(guard)) as client:
        events = client.get("/calendar/events", headers=bearer(token))
        small = client.post("/payments", json={"amount": "99.50"}, headers=bearer(token))
        large = client.post("/payments", json={"amount": "150"}, headers=bearer(token))
        anonymous = client.get("/calendar/events")
        health = client.get("/health")
    assert events.status_code == 200 and events.json()["principal"] == "user_test"
    assert small.status_code == 201
    assert (large.status_code, large.json()["error"]) == (403, "SCOPE_INSUFFICIENT")
    assert anonymous.status_code == 401
    assert health.json() == {"ok": True}
