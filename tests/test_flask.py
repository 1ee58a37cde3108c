"""The Flask adapter through Flask's test client: matrix, extension, decorators, blueprints."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from flask import Blueprint, Flask, g
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from grantex_guard import Grant, Guard, GuardError
from grantex_guard.flask import (
    EXTENSION_KEY,
    GrantexGuard,
    current_grant,
    exempt,
    get_guard,
    require_grant,
    require_scopes,
)
from grantex_guard.http import metadata_path
from grantex_guard.testing import LocalIssuer
from tests.matrix import API, CASES, Case, check, check_unavailable

OTHER_API = "https://other.example.com"
UNREACHABLE_JWKS = "http://127.0.0.1:9/.well-known/jwks.json"


def config_for(issuer: LocalIssuer, **extra: Any) -> dict[str, Any]:
    """app.config for a Guard trusting `issuer`, its JWKS served in-process."""
    return {
        "GRANTEX_ISSUER": issuer.issuer,
        "GRANTEX_JWKS_URI": issuer.jwks_uri,
        "GRANTEX_AUDIENCE": API,
        "GRANTEX_CLOCK": issuer.clock,
        "GRANTEX_HTTP_CLIENT": httpx.Client(transport=issuer.transport()),
        **extra,
    }


def matrix_app(config: dict[str, Any] | None = None, guard: Guard | None = None) -> Flask:
    """The routes of tests/matrix.py, protected with the module-level decorators."""
    app = Flask(__name__)
    app.config.update(config or {})
    GrantexGuard(app, guard=guard)

    @app.get("/calendar")
    @require_scopes("calendar:read")
    def calendar() -> dict[str, Any]:
        return {"principal": current_grant.principal_id}

    @app.get("/payments")
    @require_scopes("payments:initiate:max_1000")
    def payments() -> dict[str, Any]:
        return {"scopes": list(current_grant.scopes)}

    @app.get("/public")
    def public() -> dict[str, Any]:
        return {"grant": g.grant, "current_grant_is_falsy": not current_grant}

    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def body_of(response: TestResponse) -> Any:
    return json.loads(response.get_data(as_text=True))


@pytest.fixture
def client(issuer: LocalIssuer) -> FlaskClient:
    return matrix_app(config_for(issuer)).test_client()


@pytest.fixture
def token(issuer: LocalIssuer) -> str:
    return issuer.mint(["calendar:read", "payments:initiate:max_500"], audience=API)


# -- the shared matrix ----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_matrix(case: Case, issuer: LocalIssuer, client: FlaskClient) -> None:
    headers = case.make_headers(issuer)
    response = client.get(case.path, headers=headers)
    check(case, response.status_code, dict(response.headers), body_of(response), headers)


def test_unreachable_jwks_is_503(issuer: LocalIssuer) -> None:
    guard = Guard(issuer=issuer.issuer, jwks_uri=UNREACHABLE_JWKS, audience=API, http_timeout=0.5)
    with guard:
        response = matrix_app(guard=guard).test_client().get(
            "/calendar", headers=bearer(issuer.mint(["calendar:read"], audience=API)))
    check_unavailable(response.status_code, dict(response.headers), body_of(response))


# -- responses --------------------------------------------------------------------------------


def test_error_body_is_json(client: FlaskClient) -> None:
    response = client.get("/calendar")
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("authorized", [True, False], ids=["granted", "refused"])
def test_protected_response_varies_on_authorization(
    client: FlaskClient, token: str, authorized: bool
) -> None:
    response = client.get("/calendar", headers=bearer(token) if authorized else {})
    assert "Authorization" in response.vary


def test_public_response_does_not_vary_on_authorization(client: FlaskClient) -> None:
    assert "Authorization" not in client.get("/public").vary


def test_public_route_sees_no_grant(client: FlaskClient, token: str) -> None:
    response = client.get("/public", headers=bearer(token))
    assert body_of(response) == {"grant": None, "current_grant_is_falsy": True}


def test_current_grant_and_g_grant_are_the_verified_grant(issuer: LocalIssuer) -> None:
    app = Flask(__name__)
    app.config.update(config_for(issuer))
    GrantexGuard(app)
    seen: list[Any] = []

    @app.get("/me")
    @require_grant
    def me() -> str:
        seen.extend([g.grant, current_grant._get_current_object()])  # type: ignore[attr-defined]
        return "ok"

    token = issuer.mint(["calendar:read"], audience=API, principal_id="user_42")
    assert app.test_client().get("/me", headers=bearer(token)).status_code == 200
    assert isinstance(seen[0], Grant)
    assert seen[0] is seen[1]
    assert seen[0].principal_id == "user_42"


# -- decorators -------------------------------------------------------------------------------


def decorated_app(issuer: LocalIssuer, grantex: GrantexGuard) -> Flask:
    app = Flask(__name__)
    app.config.update(config_for(issuer))
    grantex.init_app(app)

    @app.get("/any-grant")
    @grantex.require_grant
    def any_grant() -> str:
        return current_grant.principal_id

    @app.get("/one-of")
    @grantex.require_scopes(any_of=["calendar:read", "calendar:write"])
    def one_of() -> str:
        return "ok"

    @app.get("/other-audience")
    @grantex.require_scopes("calendar:read", audience=OTHER_API)
    def other_audience() -> str:
        return "ok"

    @app.post("/pay/<int:amount>")
    @grantex.require_grant
    def pay(amount: int) -> str:
        current_grant.require("payments:initiate", amount=amount)
        return f"paid {amount}"

    @app.get("/async")
    @grantex.require_scopes("calendar:read")
    async def async_view() -> dict[str, Any]:
        return {"principal": current_grant.principal_id, "grant_is_g": g.grant is not None}

    @app.post("/async-pay/<int:amount>")
    @require_grant
    async def async_pay(amount: int) -> str:
        current_grant.require("payments:initiate", amount=amount)
        return "paid"

    return app


@pytest.fixture
def decorated(issuer: LocalIssuer) -> FlaskClient:
    return decorated_app(issuer, GrantexGuard()).test_client()


@pytest.mark.parametrize(
    ("method", "path", "scopes", "audience", "status"),
    [
        ("GET", "/any-grant", ["email:send"], API, 200),
        ("GET", "/any-grant", None, API, 401),
        ("GET", "/one-of", ["calendar:write"], API, 200),
        ("GET", "/one-of", ["email:send"], API, 403),
        ("GET", "/other-audience", ["calendar:read"], OTHER_API, 200),
        ("GET", "/other-audience", ["calendar:read"], API, 401),
        ("POST", "/pay/300", ["payments:initiate:max_500"], API, 200),
        ("POST", "/pay/800", ["payments:initiate:max_500"], API, 403),
        ("GET", "/async", ["calendar:read"], API, 200),
        ("GET", "/async", ["email:send"], API, 403),
        ("GET", "/async", None, API, 401),
        ("POST", "/async-pay/300", ["payments:initiate:max_500"], API, 200),
        ("POST", "/async-pay/800", ["payments:initiate:max_500"], API, 403),
    ],
)
def test_decorated_view_status(
    decorated: FlaskClient, issuer: LocalIssuer, method: str, path: str,
    scopes: list[str] | None, audience: str, status: int,
) -> None:
    headers = {} if scopes is None else bearer(issuer.mint(scopes, audience=audience))
    response = decorated.open(path, method=method, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)


def test_amount_check_in_view_answers_insufficient_scope(
    decorated: FlaskClient, token: str
) -> None:
    response = decorated.post("/pay/800", headers=bearer(token))
    assert body_of(response)["error"] == "SCOPE_INSUFFICIENT"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert 'scope="payments:initiate:max_800"' in response.headers["WWW-Authenticate"]


def test_async_view_sees_the_grant(decorated: FlaskClient, issuer: LocalIssuer) -> None:
    token = issuer.mint(["calendar:read"], audience=API, principal_id="user_async")
    response = decorated.get("/async", headers=bearer(token))
    assert body_of(response) == {"principal": "user_async", "grant_is_g": True}


def test_decorated_view_keeps_its_name() -> None:
    @require_scopes("calendar:read")
    def list_events() -> str:
        return "events"

    assert list_events.__name__ == "list_events"


@pytest.mark.parametrize(
    "decorate",
    [
        lambda: require_scopes("calendar"),
        lambda: require_scopes("payments:initiate:max_1e3"),
        lambda: require_scopes("calendar:read", any_of=["calendar: write"]),
        lambda: GrantexGuard().protect(Blueprint("bp", __name__), scopes=["calendar::read"]),
    ],
    ids=["one segment", "exponent limit", "whitespace", "protect"],
)
def test_malformed_scope_fails_at_decoration_time(decorate: Callable[[], Any]) -> None:
    with pytest.raises(ValueError, match="Invalid scope"):
        decorate()


# -- blueprint protection -----------------------------------------------------------------------


def blueprint_app(issuer: LocalIssuer) -> Flask:
    grantex = GrantexGuard()
    agents = Blueprint("agents", __name__, url_prefix="/agents")
    grantex.protect(agents, scopes=["calendar:read"])

    @agents.get("/events")
    def events() -> str:
        return current_grant.principal_id

    @agents.get("/health")
    @grantex.exempt
    def health() -> dict[str, Any]:
        return {"ok": True, "grant": g.grant}

    @agents.get("/version")
    @exempt
    def version() -> str:
        return "1"

    @agents.delete("/events")
    @require_scopes("calendar:write")
    def clear_events() -> str:
        return "cleared"

    app = Flask(__name__)
    app.config.update(config_for(issuer))
    grantex.init_app(app)
    app.register_blueprint(agents)

    @app.get("/outside")
    def outside() -> str:
        return "open"

    return app


@pytest.mark.parametrize(
    ("method", "path", "scopes", "status"),
    [
        ("GET", "/agents/events", ["calendar:read"], 200),
        ("GET", "/agents/events", None, 401),
        ("GET", "/agents/events", ["email:send"], 403),
        ("GET", "/agents/health", None, 200),
        ("GET", "/agents/version", None, 200),
        ("GET", "/agents/nowhere", None, 404),
        ("POST", "/agents/events", None, 405),
        ("OPTIONS", "/agents/events", None, 200),
        ("DELETE", "/agents/events", ["calendar:read", "calendar:write"], 200),
        ("DELETE", "/agents/events", ["calendar:read"], 403),
        ("DELETE", "/agents/events", ["calendar:write"], 403),
        ("GET", "/outside", None, 200),
    ],
)
def test_protected_blueprint_status(
    issuer: LocalIssuer, method: str, path: str, scopes: list[str] | None, status: int
) -> None:
    headers = {} if scopes is None else bearer(issuer.mint(scopes, audience=API))
    response = blueprint_app(issuer).test_client().open(path, method=method, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)


def test_exempt_view_sees_no_grant(issuer: LocalIssuer, token: str) -> None:
    response = blueprint_app(issuer).test_client().get("/agents/health", headers=bearer(token))
    assert body_of(response) == {"ok": True, "grant": None}


# -- the extension: configuration and apps --------------------------------------------------------


def audience_app(grantex: GrantexGuard, issuer: LocalIssuer, audience: str) -> Flask:
    app = Flask(f"app_for_{audience}")
    app.config.update(config_for(issuer, GRANTEX_AUDIENCE=audience))
    grantex.init_app(app)

    @app.get("/calendar")
    @grantex.require_scopes("calendar:read")
    def calendar() -> str:
        return "ok"

    return app


def test_two_apps_keep_their_own_audience(issuer: LocalIssuer) -> None:
    grantex = GrantexGuard()
    first, second = audience_app(grantex, issuer, API), audience_app(grantex, issuer, OTHER_API)
    token = issuer.mint(["calendar:read"], audience=API)
    assert first.test_client().get("/calendar", headers=bearer(token)).status_code == 200
    assert second.test_client().get("/calendar", headers=bearer(token)).status_code == 401


def test_two_apps_have_their_own_guard(issuer: LocalIssuer) -> None:
    grantex = GrantexGuard()
    first, second = audience_app(grantex, issuer, API), audience_app(grantex, issuer, OTHER_API)
    assert get_guard(first) is not get_guard(second)
    assert get_guard(second).config.audience == (OTHER_API,)


def test_extension_does_not_store_the_app(issuer: LocalIssuer) -> None:
    grantex = GrantexGuard()
    app = audience_app(grantex, issuer, API)
    assert app not in vars(grantex).values()
    assert get_guard(app) is app.extensions[EXTENSION_KEY].guard


def test_explicit_guard_is_used(issuer: LocalIssuer) -> None:
    guard = issuer.guard(audience=API)
    app = matrix_app(guard=guard)
    assert get_guard(app) is guard


def test_current_app_guard_inside_a_request(issuer: LocalIssuer) -> None:
    app = matrix_app(config_for(issuer))
    with app.test_request_context("/"):
        assert get_guard() is app.extensions[EXTENSION_KEY].guard


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"GRANTEX_ISUER": "https://grantex.dev"}, "GRANTEX_ISUER"),
        ({"GRANTEX_AUDIENCE": API}, "GRANTEX_ISSUER"),
        ({}, "GRANTEX_ISSUER nor GRANTEX_JWKS_URI"),
        ({"GRANTEX_ISSUER": "https://grantex.dev", "GRANTEX_LEEWAY": -1}, "leeway"),
        ({"GRANTEX_ISSUER": "https://grantex.dev", "GRANTEX_issuer": "x"}, "GRANTEX_issuer"),
        ({"GRANTEX_ISSUER": "https://grantex.dev", "GRANTEX_SCOPES_SUPPORTED": "calendar:read"},
         "GRANTEX_SCOPES_SUPPORTED"),
    ],
    ids=["unknown key", "no issuer", "empty config", "invalid value", "lower-case key",
         "scopes_supported as a string"],
)
def test_configuration_error_at_init_app(config: dict[str, Any], message: str) -> None:
    app = Flask(__name__)
    app.config.update(config)
    with pytest.raises(ValueError, match=message):
        GrantexGuard().init_app(app)


def test_guard_and_config_together_is_an_error(issuer: LocalIssuer) -> None:
    app = Flask(__name__)
    app.config["GRANTEX_AUDIENCE"] = API
    with pytest.raises(ValueError, match="GRANTEX_AUDIENCE"):
        GrantexGuard(app, guard=issuer.guard(audience=API))


def test_adapter_settings_are_not_passed_to_the_guard(issuer: LocalIssuer) -> None:
    app = Flask(__name__)
    app.config.update(config_for(issuer, GRANTEX_SCOPES_SUPPORTED=["calendar:read"]))
    GrantexGuard(app)
    assert get_guard(app).config.audience == (API,)


def test_init_app_twice_is_an_error(issuer: LocalIssuer) -> None:
    app = matrix_app(config_for(issuer))
    with pytest.raises(RuntimeError, match="already initialised"):
        GrantexGuard().init_app(app)


def test_uninitialised_app_is_a_clear_error() -> None:
    with Flask("bare").app_context(), pytest.raises(RuntimeError, match="init_app"):
        get_guard()


# -- error handlers -------------------------------------------------------------------------------


def test_app_error_handlers_still_work(issuer: LocalIssuer) -> None:
    app = matrix_app(config_for(issuer))

    @app.errorhandler(404)
    def not_found(_: Exception) -> tuple[str, int]:
        return "custom 404", 404

    @app.errorhandler(500)
    def server_error(_: Exception) -> tuple[str, int]:
        return "custom 500", 500

    @app.errorhandler(ValueError)
    def bad_value(_: ValueError) -> tuple[str, int]:
        return "custom 400", 400

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/bad")
    def bad() -> str:
        raise ValueError("bad")

    client = app.test_client()
    answers = {path: client.get(path) for path in ("/nowhere", "/boom", "/bad", "/calendar")}
    assert [(r.status_code, r.get_data(as_text=True)) for r in list(answers.values())[:3]] == [
        (404, "custom 404"), (500, "custom 500"), (400, "custom 400")]
    assert body_of(answers["/calendar"])["error"] == "TOKEN_MISSING"


def test_app_guard_error_handler_is_kept(issuer: LocalIssuer) -> None:
    app = Flask(__name__)
    app.config.update(config_for(issuer))

    @app.errorhandler(GuardError)
    def own(error: GuardError) -> tuple[str, int]:
        return f"own {error.code}", error.status

    GrantexGuard(app)

    @app.get("/calendar")
    @require_scopes("calendar:read")
    def calendar() -> str:
        return "ok"

    response = app.test_client().get("/calendar")
    assert (response.status_code, response.get_data(as_text=True)) == (401, "own TOKEN_MISSING")


# -- RFC 9728 metadata ----------------------------------------------------------------------------


RESOURCE = "https://api.example.com/v1"


def test_resource_metadata_is_served(issuer: LocalIssuer) -> None:
    app = matrix_app(config_for(issuer, GRANTEX_RESOURCE=RESOURCE,
                                GRANTEX_SCOPES_SUPPORTED=["calendar:read", "email:send"]))
    response = app.test_client().get(metadata_path(RESOURCE))
    assert response.status_code == 200
    assert body_of(response) == {
        "resource": RESOURCE,
        "authorization_servers": [issuer.issuer],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["ES256", "RS256"],
        "scopes_supported": ["calendar:read", "email:send"],
    }


def test_challenge_points_at_resource_metadata(issuer: LocalIssuer) -> None:
    app = matrix_app(config_for(issuer, GRANTEX_RESOURCE=RESOURCE))
    challenge = app.test_client().get("/calendar").headers["WWW-Authenticate"]
    assert f'resource_metadata="https://api.example.com{metadata_path(RESOURCE)}"' in challenge


def test_no_metadata_route_without_resource(client: FlaskClient) -> None:
    assert client.get("/.well-known/oauth-protected-resource").status_code == 404
