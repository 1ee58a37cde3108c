"""tests/matrix.py against every way the Django adapter protects a view.

    mw     GrantexMiddleware alone (the view calls request_grant(request).require(...))
    sync   @require_scopes on function views       (django.test.Client)
    cbv    method_decorator(require_scopes)        (django.test.Client)
    async  @require_scopes on async def views      (django.test.AsyncClient)

The decorated flavours run with and without the middleware in front.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient, Client

from tests.django_project.served import ServedIssuer
from tests.matrix import CASES, Case, check, check_unavailable

pytest_plugins = ["tests.django_project.fixtures"]
pytestmark = pytest.mark.usefixtures("grantex_settings")

DECORATED = ["sync", "cbv"]


def _body(response: Any) -> Any:
    return response.json() if response["Content-Type"] == "application/json" else None


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_middleware_answers_the_matrix(case: Case, served_issuer: ServedIssuer) -> None:
    headers = case.make_headers(served_issuer.issuer)
    response = Client().get("/mw" + case.path, headers=headers)
    check(case, response.status_code, response.headers, _body(response), headers)


@pytest.mark.usefixtures("middleware_mode")
@pytest.mark.parametrize("flavour", DECORATED)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decorated_sync_views_answer_the_matrix(case: Case, flavour: str,
                                                served_issuer: ServedIssuer) -> None:
    headers = case.make_headers(served_issuer.issuer)
    response = Client().get(f"/{flavour}{case.path}", headers=headers)
    check(case, response.status_code, response.headers, _body(response), headers)


@pytest.mark.usefixtures("middleware_mode")
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_decorated_async_views_answer_the_matrix(case: Case,
                                                       served_issuer: ServedIssuer) -> None:
    headers = case.make_headers(served_issuer.issuer)
    response = await AsyncClient().get(f"/async{case.path}", headers=headers)
    check(case, response.status_code, response.headers, _body(response), headers)


def _unavailable_response(path: str, served_issuer: ServedIssuer) -> Any:
    token = served_issuer.issuer.mint(["calendar:read"], audience="https://api.example.com")
    return Client().get(path, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.usefixtures("unavailable_settings")
def test_middleware_answers_503_when_jwks_is_unreachable(served_issuer: ServedIssuer) -> None:
    response = _unavailable_response("/mw/calendar", served_issuer)
    check_unavailable(response.status_code, response.headers, response.json())


@pytest.mark.usefixtures("unavailable_settings", "middleware_mode")
@pytest.mark.parametrize("flavour", DECORATED)
def test_decorated_sync_views_answer_503_when_jwks_is_unreachable(
        flavour: str, served_issuer: ServedIssuer) -> None:
    response = _unavailable_response(f"/{flavour}/calendar", served_issuer)
    check_unavailable(response.status_code, response.headers, response.json())


@pytest.mark.usefixtures("unavailable_settings", "middleware_mode")
async def test_decorated_async_views_answer_503_when_jwks_is_unreachable(served_issuer: ServedIssuer) -> None:
    token = served_issuer.issuer.mint(["calendar:read"], audience="https://api.example.com")
    response = await AsyncClient().get("/async/calendar",
                                       headers={"Authorization": f"Bearer {token}"})
    check_unavailable(response.status_code, response.headers, response.json())


@pytest.mark.parametrize("prefix", ["/mw", "/sync", "/cbv", "/async"])
def test_public_route_needs_no_token(prefix: str) -> None:
    response = Client().get(f"{prefix}/public")
    assert response.status_code == 200
    assert response.json() == {"public": True}
