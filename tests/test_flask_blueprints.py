"""Views with their own `require_scopes(..., audience=...)` inside a `protect()`ed blueprint.

The blueprint verifies the token once; the view's decorator then checks its own scopes and
audience on that grant, without verifying (and so replaying the DPoP proof) a second time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from grantex_guard import Guard, GuardError
from grantex_guard.flask import GrantexGuard, current_grant
from grantex_guard.testing import DPoPAgent, LocalIssuer

from .conftest import API

REPORTS = "https://reports.example.com"
OTHER_API = "https://other.example.com"
BASE = "http://localhost"
PATH = "/agents/reports"


class CountingGuard(Guard):
    """A Guard counting its `verify` calls (the real verification runs unchanged)."""

    verify_calls = 0

    def verify(self, *args: Any, **kwargs: Any) -> Any:
        self.verify_calls += 1
        return super().verify(*args, **kwargs)


def protected_blueprint_app(guard: Guard) -> Flask:
    """A blueprint protected for `calendar:read`; one view narrows scopes and audience."""
    app = Flask(__name__)
    grantex = GrantexGuard(app, guard=guard)
    agents = Blueprint("agents", __name__, url_prefix="/agents")
    grantex.protect(agents, scopes=["calendar:read"], audience=[API, REPORTS])

    @agents.get("/reports")
    @grantex.require_scopes("reports:read", audience=REPORTS)
    def reports() -> dict[str, Any]:
        return {"principal": current_grant.principal_id}

    @agents.get("/stacked")
    @grantex.require_scopes("calendar:read")
    @grantex.require_scopes("reports:read", audience=REPORTS)
    def stacked() -> dict[str, Any]:
        return {"principal": current_grant.principal_id}

    app.register_blueprint(agents)
    return app


@pytest.fixture
def issuer() -> LocalIssuer:
    return LocalIssuer("ES256")  # the real clock: DPoPAgent signs proofs with it


@pytest.fixture
def guard(issuer: LocalIssuer) -> Iterator[CountingGuard]:
    guard = CountingGuard(issuer=issuer.issuer, jwks_uri=issuer.jwks_uri, audience=API,
                          http_client=httpx.Client(transport=issuer.transport()))
    with guard:
        yield guard


@pytest.fixture
def client(guard: CountingGuard) -> FlaskClient:
    return protected_blueprint_app(guard).test_client()


def dpop_get(client: FlaskClient, agent: DPoPAgent, token: str, path: str = PATH) -> TestResponse:
    return client.get(path, headers=agent.headers(token, "GET", BASE + path))


def test_bound_token_with_valid_proof_reaches_a_view_with_its_own_audience(
    issuer: LocalIssuer, client: FlaskClient
) -> None:
    agent = DPoPAgent()
    token = issuer.mint(["calendar:read", "reports:read"], audience=REPORTS, bound_to=agent.thumbprint,
                        principal_id="user_reports")

    response = dpop_get(client, agent, token)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"principal": "user_reports"}


def test_the_proof_is_still_single_use_through_the_view_decorator(
    issuer: LocalIssuer, client: FlaskClient
) -> None:
    agent = DPoPAgent()
    token = issuer.mint(["calendar:read", "reports:read"], audience=REPORTS, bound_to=agent.thumbprint)
    headers = agent.headers(token, "GET", BASE + PATH)

    assert client.get(PATH, headers=headers).status_code == 200
    replayed = client.get(PATH, headers=headers)

    assert replayed.status_code == 401
    assert replayed.get_json()["error"] == "DPOP_INVALID"


@pytest.mark.parametrize("bound", [True, False], ids=["dpop", "bearer"])
def test_token_for_another_audience_gets_the_cores_wrong_audience_error(
    issuer: LocalIssuer, guard: CountingGuard, client: FlaskClient, bound: bool
) -> None:
    # Accepted by the blueprint (aud API is one of its audiences), not by the view (REPORTS).
    agent = DPoPAgent()
    token = issuer.mint(["calendar:read", "reports:read"], audience=API,
                        bound_to=agent.thumbprint if bound else None)
    with pytest.raises(GuardError) as core:
        guard.verify(token, audience=REPORTS)

    if bound:
        response = dpop_get(client, agent, token)
    else:
        response = client.get(PATH, headers={"Authorization": f"Bearer {token}"})

    assert (response.status_code, response.get_json()) == (
        core.value.status, {"error": core.value.code, "message": core.value.message})
    assert (response.status_code, response.get_json()["error"]) == (401, "TOKEN_INVALID")
    assert response.mimetype == "application/json"
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="invalid_token"' in challenge
    assert token not in challenge and token not in response.get_data(as_text=True)


def test_a_view_audience_list_accepts_any_of_its_audiences(issuer: LocalIssuer) -> None:
    guard = issuer.guard(audience=API)
    app = Flask(__name__)
    grantex = GrantexGuard(app, guard=guard)
    agents = Blueprint("agents", __name__)
    grantex.protect(agents, audience=[API, REPORTS])

    @agents.get("/either")
    @grantex.require_scopes(audience=[OTHER_API, REPORTS])
    def either() -> str:
        return "ok"

    app.register_blueprint(agents)
    client = app.test_client()
    with guard:
        accepted = client.get("/either", headers={"Authorization": f"Bearer {issuer.mint(audience=REPORTS)}"})
        refused = client.get("/either", headers={"Authorization": f"Bearer {issuer.mint(audience=API)}"})

    assert accepted.status_code == 200
    assert (refused.status_code, refused.get_json()["error"]) == (401, "TOKEN_INVALID")


def test_view_scopes_are_still_checked_on_the_blueprints_grant(
    issuer: LocalIssuer, client: FlaskClient
) -> None:
    agent = DPoPAgent()
    token = issuer.mint(["calendar:read"], audience=REPORTS, bound_to=agent.thumbprint)

    response = dpop_get(client, agent, token)

    assert (response.status_code, response.get_json()["error"]) == (403, "SCOPE_INSUFFICIENT")


def test_wrong_audience_is_reported_before_missing_scopes_as_the_core_does(
    issuer: LocalIssuer, client: FlaskClient
) -> None:
    token = issuer.mint(["calendar:read"], audience=API)

    response = client.get(PATH, headers={"Authorization": f"Bearer {token}"})

    assert (response.status_code, response.get_json()["error"]) == (401, "TOKEN_INVALID")


@pytest.mark.parametrize("path", [PATH, "/agents/stacked"], ids=["view", "stacked decorators"])
@pytest.mark.parametrize("bound", [True, False], ids=["dpop", "bearer"])
def test_the_guard_verifies_once_per_request(
    issuer: LocalIssuer, guard: CountingGuard, client: FlaskClient, path: str, bound: bool
) -> None:
    agent = DPoPAgent()
    token = issuer.mint(["calendar:read", "reports:read"], audience=REPORTS,
                        bound_to=agent.thumbprint if bound else None)

    for _ in range(2):
        if bound:
            response = dpop_get(client, agent, token, path)
        else:
            response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.get_data(as_text=True)

    assert guard.verify_calls == 2
