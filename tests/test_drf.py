"""Django REST framework: GrantexAuthentication, HasGrantScopes, exception_handler."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from rest_framework.test import APIClient

from tests.django_project.served import API, ServedIssuer
from tests.matrix import CASES, GRANTED, Case, check, check_unavailable

pytest_plugins = ["tests.django_project.fixtures"]
pytestmark = pytest.mark.usefixtures("grantex_settings")


def _bearer(served_issuer: ServedIssuer, scopes: list[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {served_issuer.issuer.mint(scopes, audience=API)}"}


def _json(response: Any) -> Any:
    return response.json() if response["Content-Type"] == "application/json" else None


@pytest.mark.usefixtures("middleware_mode")
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_drf_views_answer_the_matrix(case: Case, served_issuer: ServedIssuer) -> None:
    headers = case.make_headers(served_issuer.issuer)
    response = APIClient().get("/drf" + case.path, headers=headers)
    check(case, response.status_code, response.headers, _json(response), headers)


@pytest.mark.usefixtures("unavailable_settings", "middleware_mode")
def test_drf_answers_503_when_jwks_is_unreachable(served_issuer: ServedIssuer) -> None:
    response = APIClient().get("/drf/calendar", headers=_bearer(served_issuer, GRANTED))
    check_unavailable(response.status_code, response.headers, response.json())


def test_public_drf_view_needs_no_token() -> None:
    assert APIClient().get("/drf/public").json() == {"public": True}


def test_request_user_is_a_grant_user_and_auth_the_grant(served_issuer: ServedIssuer) -> None:
    response = APIClient().get("/drf/me", headers=_bearer(served_issuer, GRANTED))
    assert response.json() == {"type": "GrantUser", "principal_id": "user_test",
                               "is_authenticated": True, "grant_is_auth": True}


def test_without_a_token_the_next_authenticator_runs() -> None:
    response = APIClient().get("/drf/either", headers={"X-Test-User": "alice"})
    assert response.status_code == 200
    assert response.json() == {"user": "alice"}


@pytest.mark.usefixtures("middleware_mode")
def test_unauthenticated_request_is_401_with_a_challenge_not_403() -> None:
    response = APIClient().get("/drf/either")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="grantex"'


@pytest.mark.parametrize(("method", "scopes", "status"), [
    ("get", ["payments:initiate:max_1000"], 200),
    ("post", ["payments:initiate:max_1000"], 403),
    ("post", ["payments:initiate:max_5000"], 201),
    ("delete", ["payments:initiate"], 403),
])
def test_required_scopes_map_applies_per_method(method: str, scopes: list[str], status: int,
                                                served_issuer: ServedIssuer) -> None:
    response = getattr(APIClient(), method)("/drf/payments",
                                            headers=_bearer(served_issuer, scopes))
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"] == "SCOPE_INSUFFICIENT"


def test_head_uses_the_get_requirement(served_issuer: ServedIssuer) -> None:
    response = APIClient().head("/drf/payments",
                                headers=_bearer(served_issuer, ["payments:initiate:max_1000"]))
    assert response.status_code == 200


@pytest.mark.parametrize(("amount", "status"), [("400", 201), ("600", 403)])
def test_amount_checked_in_the_view_answers_403_beyond_the_cap(
        amount: str, status: int, served_issuer: ServedIssuer) -> None:
    response = APIClient().post("/drf/pay", {"amount": amount}, format="json",
                                headers=_bearer(served_issuer, GRANTED))
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"] == "SCOPE_INSUFFICIENT"
        assert 'scope="payments:initiate:max_600"' in response.headers["WWW-Authenticate"]


def test_error_responses_are_not_cached_and_vary_on_authorization(
        served_issuer: ServedIssuer) -> None:
    response = APIClient().get("/drf/calendar", headers=_bearer(served_issuer, ["email:send"]))
    assert response.headers["Cache-Control"] == "no-store"
    assert "Authorization" in response.headers["Vary"]


@pytest.mark.usefixtures("middleware_mode")
def test_successful_responses_vary_on_authorization(served_issuer: ServedIssuer) -> None:
    response = APIClient().get("/drf/calendar", headers=_bearer(served_issuer, GRANTED))
    assert response.status_code == 200
    assert "Authorization" in response.headers["Vary"]


@pytest.mark.parametrize(("path", "headers_of", "status", "challenge"), [
    ("/drf/calendar", lambda i: {"Authorization": "Bearer not-a-jwt"}, 401,
     'Bearer realm="grantex", error="invalid_token"'),
    ("/drf/calendar", lambda i: {}, 401, 'Bearer realm="grantex"'),
    ("/drf/payments", lambda i: _bearer(i, GRANTED), 403,
     'Bearer realm="grantex", error="insufficient_scope"'),
])
def test_drf_default_exception_handler_keeps_body_and_challenge(
        path: str, headers_of: Any, status: int, challenge: str,
        served_issuer: ServedIssuer, settings: Any) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "EXCEPTION_HANDLER":
                               "rest_framework.views.exception_handler"}
    with override_settings(MIDDLEWARE=[]):
        response = APIClient().get(path, headers=headers_of(served_issuer))
    assert response.status_code == status
    assert set(response.json()) == {"error", "message"}
    assert response.headers["WWW-Authenticate"].startswith(challenge)


def test_view_without_declared_scopes_is_a_configuration_error(
        served_issuer: ServedIssuer) -> None:
    client = APIClient(raise_request_exception=True)
    with pytest.raises(ImproperlyConfigured, match="required_scopes"):
        client.get("/drf/misdeclared", headers=_bearer(served_issuer, GRANTED))
