"""@require_grant / @require_scopes beyond the matrix."""

from __future__ import annotations

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings

from grantex_guard.django import require_scopes
from tests.django_project.served import API, ServedIssuer
from tests.matrix import GRANTED

pytest_plugins = ["tests.django_project.fixtures"]
pytestmark = pytest.mark.usefixtures("grantex_settings")


def _bearer(served_issuer: ServedIssuer, scopes: list[str] = GRANTED) -> dict[str, str]:
    return {"Authorization": f"Bearer {served_issuer.issuer.mint(scopes, audience=API)}"}


@pytest.mark.parametrize("scope", ["calendar", "calendar:read:max_1e3", "calendar: read", ""])
def test_malformed_scope_fails_when_decorating(scope: str) -> None:
    with pytest.raises(ValueError, match="Invalid scope"):
        require_scopes(scope)


def test_requirement_is_parsed_once_when_decorating() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    guard = require_scopes("calendar:read", any_of=["email:send"])
    assert [scope.text for scope in guard.required.all_of] == ["calendar:read"]
    assert require_scopes("calendar:read")(view).__wrapped__ is view  # type: ignore[attr-defined]


@pytest.mark.parametrize(("scopes", "status"), [
    (["calendar:write"], 200), (["calendar:read"], 200), (["email:send"], 403)])
def test_any_of_needs_one_of_the_scopes(scopes: list[str], status: int,
                                        served_issuer: ServedIssuer) -> None:
    response = Client().get("/sync/any-calendar", headers=_bearer(served_issuer, scopes))
    assert response.status_code == status


@pytest.mark.usefixtures("middleware_mode")
@pytest.mark.parametrize(("amount", "status"), [("500", 201), ("500.01", 403)])
def test_amount_checked_in_a_sync_view_answers_403_beyond_the_cap(
        amount: str, status: int, served_issuer: ServedIssuer) -> None:
    response = Client().post("/sync/pay", {"amount": amount}, headers=_bearer(served_issuer))
    assert response.status_code == status


@pytest.mark.usefixtures("middleware_mode")
@pytest.mark.parametrize(("amount", "status"), [("500", 201), ("501", 403)])
async def test_amount_checked_in_an_async_view_answers_403_beyond_the_cap(
        amount: str, status: int, served_issuer: ServedIssuer) -> None:
    response = await AsyncClient().post("/async/pay", {"amount": amount},
                                        headers=_bearer(served_issuer))
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"] == "SCOPE_INSUFFICIENT"


@pytest.mark.usefixtures("middleware_mode")
@pytest.mark.parametrize(("scopes", "status"), [(["calendar:read"], 200), (["email:send"], 403)])
async def test_async_class_based_view_decorated_on_its_handler(
        scopes: list[str], status: int, served_issuer: ServedIssuer) -> None:
    response = await AsyncClient().get("/cbv/async-calendar",
                                       headers=_bearer(served_issuer, scopes))
    assert response.status_code == status


@pytest.mark.usefixtures("middleware_mode")
def test_decorated_views_need_no_csrf_token(served_issuer: ServedIssuer) -> None:
    response = Client(enforce_csrf_checks=True).post("/sync/pay", {"amount": "1"},
                                                     headers=_bearer(served_issuer))
    assert response.status_code == 201


@pytest.mark.usefixtures("middleware_mode")
@pytest.mark.parametrize("path", ["/sync/calendar", "/cbv/calendar"])
def test_decorated_responses_vary_on_authorization(path: str,
                                                   served_issuer: ServedIssuer) -> None:
    response = Client().get(path, headers=_bearer(served_issuer))
    assert "Authorization" in response.headers["Vary"]


WITHOUT_OUR_MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
                          "django.contrib.auth.middleware.AuthenticationMiddleware"]


@pytest.mark.usefixtures("async_only_jwks")
async def test_async_views_verify_with_verify_async(served_issuer: ServedIssuer) -> None:
    with override_settings(MIDDLEWARE=WITHOUT_OUR_MIDDLEWARE):
        response = await AsyncClient().get("/async/calendar", headers=_bearer(served_issuer))
    assert response.status_code == 200


async def test_async_class_based_view_decorated_on_dispatch_is_reported(
        served_issuer: ServedIssuer) -> None:
    client = AsyncClient(raise_request_exception=True)
    with pytest.raises(TypeError, match="decorate the async handler"):
        await client.get("/cbv/async-dispatch", headers=_bearer(served_issuer))
