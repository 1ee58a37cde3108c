"""GrantexMiddleware beyond the matrix: REQUIRED, EXEMPT_PATHS, request.user, CSRF, async."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient, Client, override_settings

from tests.django_project.served import API, ServedIssuer
from tests.matrix import GRANTED

pytest_plugins = ["tests.django_project.fixtures"]
pytestmark = pytest.mark.usefixtures("grantex_settings")


def _bearer(served_issuer: ServedIssuer, scopes: list[str] = GRANTED) -> dict[str, str]:
    return {"Authorization": f"Bearer {served_issuer.issuer.mint(scopes, audience=API)}"}


@pytest.fixture
def required(grantex_settings: dict[str, Any]) -> Any:
    value = {**grantex_settings, "REQUIRED": True, "EXEMPT_PATHS": ["/mw/public", "/cbv/"]}
    with override_settings(GRANTEX_GUARD=value):
        yield value


def test_without_required_a_request_without_token_reaches_the_view() -> None:
    response = Client().get("/sync/public")
    assert response.status_code == 200
    assert response.headers["Vary"] == "Authorization"


@pytest.mark.usefixtures("required")
def test_required_answers_401_before_any_view() -> None:
    response = Client().get("/sync/public")
    assert response.status_code == 401
    assert response.json()["error"] == "TOKEN_MISSING"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="grantex"'


@pytest.mark.usefixtures("required")
@pytest.mark.parametrize("path", ["/mw/public", "/cbv/public"])
def test_exempt_paths_match_exactly_or_by_prefix_ending_in_slash(path: str) -> None:
    assert Client().get(path).status_code == 200


@pytest.mark.usefixtures("required")
async def test_required_applies_to_async_requests_too() -> None:
    response = await AsyncClient().get("/async/public")
    assert response.status_code == 401
    assert response.json()["error"] == "TOKEN_MISSING"


def test_an_invalid_token_is_refused_even_on_a_public_view() -> None:
    response = Client().get("/sync/public", headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code == 401
    assert response.json()["error"] == "TOKEN_INVALID"


def test_a_valid_token_sets_request_user(served_issuer: ServedIssuer) -> None:
    response = Client().post("/mw/post", headers=_bearer(served_issuer))
    assert response.json() == {"user": "user_test"}


def test_grant_authenticated_post_needs_no_csrf_token(served_issuer: ServedIssuer) -> None:
    response = Client(enforce_csrf_checks=True).post("/mw/post", headers=_bearer(served_issuer))
    assert response.status_code == 201


def test_post_without_a_grant_still_gets_csrf_protection() -> None:
    assert Client(enforce_csrf_checks=True).post("/mw/post").status_code == 403


def test_successful_responses_vary_on_authorization(served_issuer: ServedIssuer) -> None:
    response = Client().get("/mw/calendar", headers=_bearer(served_issuer))
    assert response.status_code == 200
    assert "Authorization" in response.headers["Vary"]


@pytest.mark.usefixtures("async_only_jwks")
async def test_async_requests_verify_with_verify_async(served_issuer: ServedIssuer) -> None:
    response = await AsyncClient().get("/mw/public", headers=_bearer(served_issuer))
    assert response.status_code == 200


@pytest.mark.usefixtures("async_only_jwks")
def test_sync_requests_verify_with_the_sync_client(served_issuer: ServedIssuer) -> None:
    response = Client().get("/mw/public", headers=_bearer(served_issuer))
    assert response.status_code == 503
