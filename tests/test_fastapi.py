"""grantex_guard.fastapi: GrantexBearer dependencies, install(), OpenAPI.

This module uses `from __future__ import annotations` on purpose: its
module-level `app` proves the dependencies resolve when every annotation is a
string (examples/fastapi_app.py covers the module without it).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import httpx
import pytest
from fastapi import Depends, FastAPI, Security
from pydantic import BaseModel
from starlette.middleware import Middleware

from grantex_guard import Grant, Guard, GuardError
from grantex_guard.fastapi import GrantexBearer, install
from grantex_guard.starlette import GrantexMiddleware, guard_error_handler
from grantex_guard.testing import LocalIssuer
from tests.matrix import API, CASES, GRANTED, Case, check, check_unavailable
from tests.test_starlette import bearer, unavailable_guard

Style = Literal["security", "require"]


class Payment(BaseModel):
    amount: Decimal
    payee: str


def create_app(grantex: GrantexBearer, style: Style = "security") -> FastAPI:
    """The matrix routes (plus a few more) with `Security(...)` or `grantex.require(...)`."""
    app = FastAPI()
    install(app)
    optional = GrantexBearer(grantex.guard, auto_error=False, scheme_name="OptionalGrant")

    if style == "security":
        calendar_grant = Security(grantex, scopes=["calendar:read"])
        payments_grant = Security(grantex, scopes=["payments:initiate:max_1000"])
    else:
        calendar_grant = Depends(grantex.require("calendar:read"))
        payments_grant = Depends(grantex.require("payments:initiate:max_1000"))
    # Dependency markers are built before the routes (ruff B008); string annotations
    # could not name these locals, default values can.
    any_grant = Depends(grantex)
    maybe_grant = Depends(optional)
    either_grant = Depends(grantex.require(any_of=["calendar:read", "calendar:write"]))
    other_grant = Depends(grantex.require(any_of=["calendar:read", "email:send"]))

    @app.get("/calendar")
    async def calendar(grant: Grant = calendar_grant) -> dict[str, Any]:
        return {"principal": grant.principal_id}

    @app.get("/payments")
    def payments(grant: Grant = payments_grant) -> dict[str, Any]:
        return {"principal": grant.principal_id}

    @app.get("/public")
    async def public() -> dict[str, Any]:
        return {"public": True}

    @app.get("/me")
    async def me(grant: Grant = any_grant) -> dict[str, Any]:
        return {"principal": grant.principal_id}

    @app.get("/maybe")
    async def maybe(grant: Grant | None = maybe_grant) -> dict[str, Any]:
        return {"principal": grant.principal_id if grant else None}

    @app.get("/either")
    async def either(
        grant: Grant = either_grant,
    ) -> dict[str, Any]:
        return {"principal": grant.principal_id}

    @app.get("/many")
    async def many(
        first: Grant = calendar_grant,
        second: Grant = other_grant,
        third: Grant = any_grant,
    ) -> dict[str, Any]:
        return {"same": first is second is third}

    @app.post("/pay")
    async def pay(payment: Payment, grant: Grant = any_grant) -> dict[str, Any]:
        grant.require("payments:initiate", amount=payment.amount)
        return {"paid": str(payment.amount), "to": payment.payee}

    return app


# A module-level app, as users write it (annotations are strings here).
module_issuer = LocalIssuer()
module_grantex = GrantexBearer(module_issuer.guard(audience=API))
app = create_app(module_grantex)


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
def grantex(guard: Guard) -> GrantexBearer:
    return GrantexBearer(guard)


# -- the matrix --------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["security", "require"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_matrix_case_is_answered_as_specified(
    style: Style, case: Case, issuer: LocalIssuer, grantex: GrantexBearer
) -> None:
    headers = case.make_headers(issuer)
    async with client_for(create_app(grantex, style)) as client:
        response = await client.get(case.path, headers=headers)
    check(case, response.status_code, response.headers, response.json(), headers)
    if case.code is not None:
        assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("style", ["security", "require"])
async def test_unreachable_jwks_is_503(style: Style, issuer: LocalIssuer) -> None:
    token = issuer.mint(GRANTED, audience=API)
    async with client_for(create_app(GrantexBearer(unavailable_guard(issuer)), style)) as client:
        response = await client.get("/calendar", headers=bearer(token))
    check_unavailable(response.status_code, response.headers, response.json())


async def test_module_level_app_with_string_annotations_works() -> None:
    token = module_issuer.mint(["payments:initiate:max_500"], audience=API, principal_id="user_m")
    async with client_for(app) as client:
        response = await client.post("/pay", json={"amount": "20", "payee": "acme"},
                                     headers=bearer(token))
    assert (response.status_code, response.json()) == (200, {"paid": "20", "to": "acme"})


# -- dependencies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "status"),
    [(["calendar:write"], 200), (["calendar:read"], 200), (["email:send"], 403)],
)
async def test_require_any_of_needs_one_of_them(
    issuer: LocalIssuer, grantex: GrantexBearer, granted: list[str], status: int
) -> None:
    async with client_for(create_app(grantex)) as client:
        response = await client.get("/either", headers=bearer(issuer.mint(granted, audience=API)))
    assert response.status_code == status


async def test_token_is_verified_once_per_request(issuer: LocalIssuer) -> None:
    # No token cache: each verification would build a new Grant object.
    grantex = GrantexBearer(issuer.guard(audience=API, token_cache_size=0))
    async with client_for(create_app(grantex)) as client:
        response = await client.get("/many", headers=bearer(issuer.mint(GRANTED, audience=API)))
    assert response.json() == {"same": True}


async def test_grant_verified_by_the_middleware_is_reused(issuer: LocalIssuer) -> None:
    guard = issuer.guard(audience=API, token_cache_size=0)
    grantex = GrantexBearer(guard)
    seen: list[Grant] = []

    application = FastAPI(middleware=[Middleware(GrantexMiddleware, guard=guard)])
    install(application)

    any_grant = Depends(grantex)

    @application.get("/me")
    async def me(grant: Grant = any_grant) -> dict[str, Any]:
        seen.append(grant)
        return {}

    @application.middleware("http")
    async def capture(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        seen.append(request.state.grant)
        return response

    async with client_for(application) as client:
        await client.get("/me", headers=bearer(issuer.mint(GRANTED, audience=API)))
    assert len(seen) == 2 and seen[0] is seen[1]


@pytest.mark.parametrize(
    ("headers", "status", "body"),
    [
        ({}, 200, {"principal": None}),
        ({"token": True}, 200, {"principal": "user_test"}),
        ({"Authorization": "Bearer not-a-jwt"}, 401, None),
    ],
)
async def test_optional_bearer_gives_none_without_token_and_still_rejects_bad_ones(
    issuer: LocalIssuer, grantex: GrantexBearer, headers: dict[str, Any], status: int,
    body: dict[str, Any] | None,
) -> None:
    if headers.pop("token", False):
        headers = bearer(issuer.mint(GRANTED, audience=API))
    async with client_for(create_app(grantex)) as client:
        response = await client.get("/maybe", headers=headers)
    assert response.status_code == status
    if body is not None:
        assert response.json() == body


async def test_dependency_overrides_can_swap_the_grant(
    issuer: LocalIssuer, grantex: GrantexBearer, guard: Guard
) -> None:
    fake = guard.verify(issuer.mint(GRANTED, audience=API, principal_id="user_fake"))
    application = create_app(grantex)
    application.dependency_overrides[grantex] = lambda: fake
    async with client_for(application) as client:
        response = await client.get("/me")
    assert response.json() == {"principal": "user_fake"}


@pytest.mark.parametrize("scope", ["calendar", "payments:initiate:max_-1", "a::b"])
def test_malformed_required_scope_fails_when_the_route_is_declared(
    grantex: GrantexBearer, scope: str
) -> None:
    with pytest.raises(ValueError, match=r"."):
        grantex.require(scope)


# -- run-time amounts and the exception handler -------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "amount", "status"),
    [
        (["payments:initiate:max_500"], "500", 200),
        (["payments:initiate:max_500"], "500.5", 403),
        (["payments:initiate"], "1000000", 200),
        (["calendar:read"], "1", 403),
    ],
)
async def test_run_time_amount_check_answers_403_through_the_handler(
    issuer: LocalIssuer, grantex: GrantexBearer, granted: list[str], amount: str, status: int
) -> None:
    token = issuer.mint(granted, audience=API)
    async with client_for(create_app(grantex)) as client:
        response = await client.post("/pay", json={"amount": amount, "payee": "acme"},
                                     headers=bearer(token))
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"] == "SCOPE_INSUFFICIENT"
        assert response.headers["WWW-Authenticate"].startswith(
            'Bearer realm="grantex", error="insufficient_scope"'
        )


def test_install_is_idempotent() -> None:
    application = FastAPI()
    install(application)
    handlers = dict(application.exception_handlers)
    install(application)
    assert application.exception_handlers == handlers
    assert application.exception_handlers[GuardError] is guard_error_handler


async def test_errors_use_the_guards_realm_and_resource(issuer: LocalIssuer) -> None:
    guard = issuer.guard(audience=API, realm="payments", resource="https://api.example.com")
    async with client_for(create_app(GrantexBearer(guard))) as client:
        response = await client.get("/calendar")
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="payments", resource_metadata='
        '"https://api.example.com/.well-known/oauth-protected-resource"'
    )


@pytest.mark.parametrize("resource", ["https://api.example.com", "https://api.example.com/v2"])
async def test_install_serves_the_metadata_its_challenges_point_at(issuer: LocalIssuer,
                                                                  resource: str) -> None:
    guard = issuer.guard(audience=API, resource=resource)
    application = create_app(GrantexBearer(guard))
    install(application, guard, scopes_supported=["calendar:read"])
    async with client_for(application) as client:
        challenge = (await client.get("/calendar")).headers["WWW-Authenticate"]
        metadata_url = challenge.split('resource_metadata="')[1].rstrip('"')
        metadata = await client.get(httpx.URL(metadata_url).path)
    assert metadata.status_code == 200
    assert metadata.json()["resource"] == resource
    assert metadata.json()["scopes_supported"] == ["calendar:read"]
    assert "/.well-known/oauth-protected-resource" not in application.openapi()["paths"]


def test_install_routes_the_metadata_once(issuer: LocalIssuer) -> None:
    guard = issuer.guard(audience=API, resource="https://api.example.com/v2")
    application = FastAPI()
    install(application, guard)
    install(application, guard)
    paths = [getattr(route, "path", None) for route in application.routes]
    assert paths.count("/.well-known/oauth-protected-resource/v2") == 1


async def test_without_install_errors_fall_back_to_http_exceptions(
    grantex: GrantexBearer,
) -> None:
    application = FastAPI()

    any_grant = Depends(grantex)

    @application.get("/me")
    async def me(grant: Grant = any_grant) -> dict[str, Any]:
        return {}

    async with client_for(application) as client:
        response = await client.get("/me", headers=bearer("not-a-jwt"))
    assert response.status_code == 401
    assert response.json()["detail"]["error"] == "TOKEN_INVALID"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="grantex", error=')


# -- OpenAPI -----------------------------------------------------------------------------------


def test_openapi_declares_a_bearer_scheme_and_each_routes_scopes(grantex: GrantexBearer) -> None:
    document = create_app(grantex).openapi()
    assert document["components"]["securitySchemes"]["GrantexBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A Grantex grant token: `Authorization: Bearer <token>`.",
    }
    paths = document["paths"]
    assert paths["/calendar"]["get"]["security"] == [{"GrantexBearer": ["calendar:read"]}]
    assert paths["/payments"]["get"]["security"] == [
        {"GrantexBearer": ["payments:initiate:max_1000"]}
    ]
    assert paths["/me"]["get"]["security"] == [{"GrantexBearer": []}]
    assert "security" not in paths["/public"]["get"]


def test_openapi_lists_the_scopes_of_require_dependencies(grantex: GrantexBearer) -> None:
    paths = create_app(grantex, "require").openapi()["paths"]
    assert paths["/calendar"]["get"]["security"] == [{"GrantexBearer": ["calendar:read"]}]


# -- the example -------------------------------------------------------------------------------


async def test_example_app_serves_reads_and_checks_payment_amounts(issuer: LocalIssuer) -> None:
    from examples import fastapi_app

    guard = issuer.guard(audience=API)
    token = issuer.mint(["calendar:read", "payments:initiate:max_100"], audience=API)
    async with client_for(fastapi_app.create_app(guard)) as client:
        events = await client.get("/calendar/events", headers=bearer(token))
        small = await client.post("/payments", json={"amount": "99.50", "currency": "USD",
                                                     "payee": "acme"}, headers=bearer(token))
        large = await client.post("/payments", json={"amount": "150", "currency": "USD",
                                                     "payee": "acme"}, headers=bearer(token))
        health = await client.get("/health")
    assert events.status_code == 200 and events.json()["principal"] == "user_test"
    assert small.status_code == 201
    assert (large.status_code, large.json()["error"]) == (403, "SCOPE_INSUFFICIENT")
    assert health.json() == {"ok": True}
