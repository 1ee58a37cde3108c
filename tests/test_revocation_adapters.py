"""Revocation through every adapter: refusals, per-route forcing and the webhook endpoints.

One table of adapters (Starlette behind its middleware and with the decorator
alone, FastAPI, Flask with a protected blueprint and with view decorators,
Django sync and async views with and without the middleware, DRF with and
without it), each with real keys, its framework's test client, a JWKS and a
fake Grantex API served over real HTTP on 127.0.0.1. Every app exposes:

    GET  /calendar   requires calendar:read
    GET  /payments   requires payments:initiate:max_1000 (high-stakes)
    GET  /forced     requires calendar:read, revocation=True
    POST /webhooks/grantex

(Django views under /sync, /async and /drf; the webhook comes from
grantex_guard.django.urls.)
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.test import Client as DjangoClient
from django.test import override_settings
from django.urls import include, path
from fastapi import Depends, FastAPI, Security
from flask import Blueprint, Flask
from rest_framework.request import Request as DRFRequest
from rest_framework.response import Response as DRFResponse
from rest_framework.views import APIView
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from grantex_guard import Grant, Guard
from grantex_guard import django as grantex_django
from grantex_guard import fastapi as grantex_fastapi
from grantex_guard import flask as grantex_flask
from grantex_guard import starlette as grantex_starlette
from grantex_guard.django.checks import check_settings
from grantex_guard.django.conf import get_guard as django_guard
from grantex_guard.django.drf import view_revocation
from grantex_guard.revocation import RedisRevocationStore
from grantex_guard.testing import DPoPAgent, LocalIssuer

from .conftest import API
from .django_project.served import ServedIssuer
from .fake_grantex_api import API_KEY, FakeGrantexAPI, signed_webhook

pytest_plugins = ["tests.django_project.fixtures"]

SECRET = "whsec_adapters"
WEBHOOK = "/webhooks/grantex"
INVALID = 'Bearer realm="grantex", error="invalid_token"'
CLOSED_REDIS = "redis://127.0.0.1:9/0"
OUR_MIDDLEWARE = "grantex_guard.django.GrantexMiddleware"

KINDS = ["starlette-middleware", "starlette-decorator", "fastapi", "flask-blueprint", "flask-view",
         "django-sync", "django-async", "django-sync-bare", "django-async-bare", "drf", "drf-bare"]


# -- the apps --------------------------------------------------------------------------------


def starlette_app(guard: Guard, *, middleware: bool) -> Starlette:
    own_guard = {} if middleware else {"guard": guard}

    @grantex_starlette.require_scopes("calendar:read", **own_guard)
    async def calendar(request: Request) -> JSONResponse:
        return JSONResponse({"principal": request.state.grant.principal_id})

    @grantex_starlette.require_scopes("payments:initiate:max_1000", **own_guard)
    async def payments(request: Request) -> JSONResponse:
        return JSONResponse({"principal": request.state.grant.principal_id})

    @grantex_starlette.require_scopes("calendar:read", revocation=True, **own_guard)
    async def forced(request: Request) -> JSONResponse:
        return JSONResponse({"principal": request.state.grant.principal_id})

    @grantex_starlette.require_scopes("calendar:read", revocation=True, **own_guard)
    def forced_sync(request: Request) -> JSONResponse:
        return JSONResponse({"principal": request.state.grant.principal_id})

    routes = [Route("/calendar", calendar), Route("/payments", payments), Route("/forced", forced),
              Route("/forced-sync", forced_sync),
              Route(WEBHOOK, grantex_starlette.webhook_endpoint(guard, SECRET), methods=["POST"])]
    stack = [Middleware(grantex_starlette.GrantexMiddleware, guard=guard, required=True,
                        exclude_paths=[WEBHOOK])] if middleware else []
    return Starlette(routes=routes, middleware=stack)


def fastapi_app(guard: Guard) -> FastAPI:
    grantex = grantex_fastapi.GrantexBearer(guard)
    app = FastAPI()
    grantex_fastapi.install(app, guard)

    @app.get("/calendar")
    async def calendar(grant: Grant = Security(grantex, scopes=["calendar:read"])  # noqa: B008
                       ) -> dict[str, str]:
        return {"principal": grant.principal_id}

    @app.get("/payments")
    async def payments(grant: Grant = Security(grantex, scopes=["payments:initiate:max_1000"])  # noqa: B008
                       ) -> dict[str, str]:
        return {"principal": grant.principal_id}

    @app.get("/forced")
    async def forced(grant: Grant = Depends(grantex.require("calendar:read", revocation=True))  # noqa: B008
                     ) -> dict[str, str]:
        return {"principal": grant.principal_id}

    app.post(WEBHOOK, include_in_schema=False)(grantex_fastapi.webhook_endpoint(guard, SECRET))
    return app


def flask_app(guard: Guard, *, blueprint: bool) -> Flask:
    app = Flask(__name__)
    grantex = grantex_flask.GrantexGuard(app, guard=guard)
    routes: Flask | Blueprint = Blueprint("api", __name__) if blueprint else app
    if isinstance(routes, Blueprint):
        grantex.protect(routes)

    @routes.get("/calendar")
    @grantex.require_scopes("calendar:read")
    def calendar() -> dict[str, str]:
        return {"principal": grantex_flask.current_grant.principal_id}

    @routes.get("/payments")
    @grantex.require_scopes("payments:initiate:max_1000")
    def payments() -> dict[str, str]:
        return {"principal": grantex_flask.current_grant.principal_id}

    @routes.get("/forced")
    @grantex.require_scopes("calendar:read", revocation=True)
    async def forced() -> dict[str, str]:
        return {"principal": grantex_flask.current_grant.principal_id}

    # On the protected blueprint too: the webhook view is exempt from protect().
    routes.add_url_rule(WEBHOOK, view_func=grantex_flask.webhook_view(SECRET), methods=["POST"])
    if isinstance(routes, Blueprint):
        app.register_blueprint(routes)
    return app


def _summary(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"principal": grantex_django.request_grant(request).principal_id})


@grantex_django.require_scopes("calendar:read")
def sync_calendar(request: HttpRequest) -> JsonResponse:
    return _summary(request)


@grantex_django.require_scopes("payments:initiate:max_1000")
def sync_payments(request: HttpRequest) -> JsonResponse:
    return _summary(request)


@grantex_django.require_scopes("calendar:read", revocation=True)
def sync_forced(request: HttpRequest) -> JsonResponse:
    return _summary(request)


@grantex_django.require_scopes("calendar:read")
async def async_calendar(request: HttpRequest) -> JsonResponse:
    return _summary(request)


@grantex_django.require_scopes("payments:initiate:max_1000")
async def async_payments(request: HttpRequest) -> JsonResponse:
    return _summary(request)


@grantex_django.require_scopes("calendar:read", revocation=True)
async def async_forced(request: HttpRequest) -> JsonResponse:
    return _summary(request)


class DRFCalendar(APIView):
    required_scopes: ClassVar[list[str]] = ["calendar:read"]

    def get(self, request: DRFRequest) -> DRFResponse:
        return DRFResponse({"principal": request.auth.principal_id})


class DRFPayments(DRFCalendar):
    required_scopes: ClassVar[list[str]] = ["payments:initiate:max_1000"]


class DRFForced(DRFCalendar):
    revocation = True


urlpatterns = [
    path("", include("grantex_guard.django.urls")),
    path("sync/calendar", sync_calendar),
    path("sync/payments", sync_payments),
    path("sync/forced", sync_forced),
    path("async/calendar", async_calendar),
    path("async/payments", async_payments),
    path("async/forced", async_forced),
    path("drf/calendar", DRFCalendar.as_view()),
    path("drf/payments", DRFPayments.as_view()),
    path("drf/forced", DRFForced.as_view()),
]


# -- running an adapter ------------------------------------------------------------------------


Send = Callable[[str, str, dict[str, str], bytes], Any]  # (method, path, headers, body) -> response


@dataclass
class Adapter:
    issuer: LocalIssuer
    base: str  # scheme and host, as the framework's test client sends them
    prefix: str  # where the protected routes are mounted
    guard: Callable[[], Guard]
    send: Send

    def get(self, route: str, headers: dict[str, str]) -> Any:
        return self.send("GET", self.prefix + route, headers, b"")

    def post_webhook(self, body: bytes, headers: dict[str, str]) -> Any:
        return self.send("POST", WEBHOOK, {"Content-Type": "application/json", **headers}, body)


def _body(response: Any) -> Any:
    return response.json() if callable(getattr(response, "json", None)) else response.json


def _httpx_sender(client: Any) -> Send:
    return lambda method, route, headers, body: client.request(method, route, headers=headers,
                                                               content=body)


@contextmanager
def running(kind: str, api: FakeGrantexAPI, served_issuer: ServedIssuer,
            **options: Any) -> Iterator[Adapter]:
    """The adapter `kind`, trusting a served issuer, with the fake Grantex API and `options`."""
    online = {"api_key": API_KEY, "api_base_url": api.url, "http_timeout": 1, **options}
    if kind.startswith(("django", "drf")):
        settings = served_issuer.settings(REQUIRED=True, WEBHOOK_SECRET=SECRET,
                                          **{name.upper(): value for name, value in online.items()})
        with ExitStack() as stack:
            stack.enter_context(override_settings(GRANTEX_GUARD=settings, ROOT_URLCONF=__name__))
            if kind.endswith("-bare"):
                from django.conf import settings as django_settings

                without = [entry for entry in django_settings.MIDDLEWARE if entry != OUR_MIDDLEWARE]
                stack.enter_context(override_settings(MIDDLEWARE=without))
            client = DjangoClient()
            prefix = "/" + kind.split("-")[1 if kind.startswith("django") else 0]
            yield Adapter(served_issuer.issuer, "http://testserver", prefix, django_guard,
                          lambda method, route, headers, body: client.generic(
                              method, route, body, content_type=headers.pop("Content-Type", ""),
                              headers=headers))
        return
    issuer = served_issuer.issuer
    with Guard(issuer=issuer.issuer, jwks_uri=served_issuer.jwks_uri, audience=API, **online) as guard:
        if kind.startswith("flask"):
            app = flask_app(guard, blueprint=kind == "flask-blueprint")
            flask_client = app.test_client()
            yield Adapter(issuer, "http://localhost", "", lambda: guard,
                          lambda method, route, headers, body: flask_client.open(
                              route, method=method, headers=headers, data=body))
            return
        asgi = (fastapi_app(guard) if kind == "fastapi"
                else starlette_app(guard, middleware=kind == "starlette-middleware"))
        with TestClient(asgi) as client:
            yield Adapter(issuer, "http://testserver", "", lambda: guard, _httpx_sender(client))


@pytest.fixture
def api() -> Iterator[FakeGrantexAPI]:
    with FakeGrantexAPI() as server:
        yield server


@pytest.fixture(params=KINDS)
def adapter(request: pytest.FixtureRequest, api: FakeGrantexAPI,
            served_issuer: ServedIssuer) -> Iterator[Adapter]:
    with running(request.param, api, served_issuer) as running_adapter:
        yield running_adapter


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


Webhook = tuple[bytes, dict[str, str]]  # body, headers


# Signed now unless a timestamp is given; `secret=` overrides per call.
signed = functools.partial(signed_webhook, secret=SECRET)


def revoked_event(grant_id: str) -> dict[str, Any]:
    return {"id": "evt_1", "type": "grant.revoked", "createdAt": "2026-11-23T10:00:00Z",
            "data": {"grantId": grant_id}}


def assert_refused(response: Any, status: int, code: str, token: str | None = None) -> None:
    body = _body(response)
    assert response.status_code == status
    assert body == {"error": code, "message": body["message"]}
    if token is not None:
        assert token not in json.dumps(body)


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("revoke", ["jti", "grant_id"])
def test_a_locally_revoked_token_is_refused(adapter: Adapter, revoke: str) -> None:
    token = adapter.issuer.mint(["calendar:read"], audience=API)
    grant = adapter.guard().verify(token)
    adapter.guard().revoke_locally(**{revoke: grant.token_id if revoke == "jti" else grant.grant_id})

    response = adapter.get("/calendar", bearer(token))

    assert_refused(response, 401, "TOKEN_REVOKED", token)
    assert response.headers["WWW-Authenticate"].startswith(INVALID)


def test_a_high_stakes_token_is_a_503_when_grantex_fails(adapter: Adapter, api: FakeGrantexAPI) -> None:
    api.answer = "http_500"
    token = adapter.issuer.mint(["payments:initiate"], audience=API)

    response = adapter.get("/payments", bearer(token))

    assert_refused(response, 503, "GRANTEX_UNAVAILABLE", token)
    assert int(response.headers["Retry-After"]) >= 1
    assert "WWW-Authenticate" not in response.headers


# -- per-route forcing -------------------------------------------------------------------------


def test_a_forced_route_asks_grantex_once_about_a_low_stakes_token(adapter: Adapter,
                                                                    api: FakeGrantexAPI) -> None:
    token = adapter.issuer.mint(["calendar:read"], audience=API)

    assert adapter.get("/calendar", bearer(token)).status_code == 200
    assert api.calls["status"] == 0
    assert adapter.get("/forced", bearer(token)).status_code == 200
    assert api.calls["status"] == 1


def test_a_forced_route_refuses_a_token_grantex_says_is_revoked(adapter: Adapter,
                                                                 api: FakeGrantexAPI) -> None:
    api.answer = "revoked"
    token = adapter.issuer.mint(["calendar:read"], audience=API)

    assert adapter.get("/calendar", bearer(token)).status_code == 200
    assert_refused(adapter.get("/forced", bearer(token)), 401, "TOKEN_REVOKED", token)


def test_a_forced_route_does_not_replay_a_dpop_proof(adapter: Adapter, api: FakeGrantexAPI) -> None:
    agent = DPoPAgent()
    token = adapter.issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)
    url = f"{adapter.base}{adapter.prefix}/forced"

    response = adapter.get("/forced", agent.headers(token, "GET", url))

    assert response.status_code == 200, _body(response)
    assert api.calls["status"] == 1


def test_a_forced_sync_starlette_endpoint_confirms_on_the_loop(api: FakeGrantexAPI,
                                                               served_issuer: ServedIssuer) -> None:
    with running("starlette-middleware", api, served_issuer) as app:
        agent = DPoPAgent()
        token = app.issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)
        response = app.get("/forced-sync", agent.headers(token, "GET", f"{app.base}/forced-sync"))
    assert response.status_code == 200
    assert api.calls["status"] == 1


def test_a_blueprint_can_force_revocation_checks(api: FakeGrantexAPI, served_issuer: ServedIssuer) -> None:
    issuer = served_issuer.issuer
    with Guard(issuer=issuer.issuer, jwks_uri=served_issuer.jwks_uri, audience=API,
               api_key=API_KEY, api_base_url=api.url) as guard:
        app = Flask(__name__)
        grantex = grantex_flask.GrantexGuard(app, guard=guard)
        exports = Blueprint("exports", __name__)
        grantex.protect(exports, scopes=["calendar:read"], revocation=True)
        exports.add_url_rule("/export", "export", lambda: {"ok": True})
        app.register_blueprint(exports)
        api.answer = "revoked"

        response = app.test_client().get("/export", headers=bearer(issuer.mint(["calendar:read"],
                                                                                audience=API)))

    assert_refused(response, 401, "TOKEN_REVOKED")
    assert api.calls["status"] == 1


def _keyless_guard() -> Guard:
    return LocalIssuer().guard(audience=API)


REFUSED_AT_DECORATION: dict[str, tuple[Callable[[], object], str]] = {
    "starlette, False": (lambda: grantex_starlette.require_scopes("a:b", revocation=False), "off"),
    "fastapi, False": (lambda: grantex_fastapi.GrantexBearer(_keyless_guard()).require(revocation=False),
                       "off"),
    "flask, False": (lambda: grantex_flask.require_scopes("a:b", revocation=False), "off"),
    "flask protect, False": (lambda: grantex_flask.GrantexGuard().protect(Blueprint("b", __name__),
                                                                          revocation=False), "off"),
    "django, False": (lambda: grantex_django.require_scopes("a:b", revocation=False), "off"),
    "starlette, True without api_key": (
        lambda: grantex_starlette.require_scopes("a:b", guard=_keyless_guard(), revocation=True),
        "api_key"),
    "fastapi, True without api_key": (
        lambda: grantex_fastapi.GrantexBearer(_keyless_guard()).require(revocation=True), "api_key"),
    "flask, True without api_key": (
        lambda: grantex_flask.GrantexGuard(guard=_keyless_guard()).require_scopes(revocation=True),
        "api_key"),
    "flask protect, True without api_key": (
        lambda: grantex_flask.GrantexGuard(guard=_keyless_guard()).protect(Blueprint("b", __name__),
                                                                           revocation=True),
        "api_key"),
}


@pytest.mark.parametrize(("declare", "says"), REFUSED_AT_DECORATION.values(),
                         ids=REFUSED_AT_DECORATION.keys())
def test_a_route_setting_that_cannot_hold_fails_at_decoration(declare: Callable[[], object],
                                                              says: str) -> None:
    with pytest.raises(ValueError, match=says):
        declare()


DRF_DECLARATIONS: dict[str, tuple[object, str, bool | None]] = {
    "absent": (None, "GET", None),
    "True": (True, "GET", True),
    "listed method": (["post"], "POST", True),
    "unlisted method": (["POST"], "GET", None),
    "HEAD follows GET": (("GET",), "HEAD", True),
}


@pytest.mark.parametrize(("declared", "method", "forced"), DRF_DECLARATIONS.values(),
                         ids=DRF_DECLARATIONS.keys())
def test_a_drf_view_declares_revocation_for_all_or_some_methods(declared: object, method: str,
                                                                forced: bool | None) -> None:
    view = type("View", (), {} if declared is None else {"revocation": declared})()
    assert view_revocation(view, method) is forced


@pytest.mark.parametrize("declared", [False, "POST", 1, [1]])
def test_a_drf_view_cannot_switch_revocation_off_or_declare_nonsense(declared: object) -> None:
    view = type("View", (), {"revocation": declared})()
    with pytest.raises(ImproperlyConfigured):
        view_revocation(view, "GET")


# -- webhooks ----------------------------------------------------------------------------------


def test_a_signed_grant_revoked_webhook_refuses_the_grant_and_its_delegates(adapter: Adapter) -> None:
    parent = adapter.issuer.mint(["calendar:read"], audience=API, grant_id="grnt_webhooked")
    child = adapter.issuer.mint(["calendar:read"], audience=API, delegated_from=parent)
    assert adapter.get("/calendar", bearer(parent)).status_code == 200

    answer = adapter.post_webhook(*signed(revoked_event("grnt_webhooked")))

    assert (answer.status_code, _body(answer)) == (200, {"received": True})
    for token in (parent, child):
        response = adapter.get("/calendar", bearer(token))
        assert_refused(response, 401, "TOKEN_REVOKED", token)
        assert response.headers["WWW-Authenticate"].startswith(INVALID)


REJECTED_WEBHOOKS: dict[str, tuple[Callable[[bytes, dict[str, str]], Webhook], str]] = {
    "bad signature": (lambda body, headers: (body, {**headers,
                                                    "X-Grantex-Signature-V2": "sha256=" + "0" * 64}),
                      "bad_signature"),
    "body changed after signing": (lambda body, headers: (body.replace(b"grnt_", b"grnt_x"), headers),
                                   "bad_signature"),
    "stale timestamp": (lambda body, headers: signed(json.loads(body), time.time() - 3600), "stale"),
    "another secret": (lambda body, headers: signed(json.loads(body), secret="whsec_other"),
                       "bad_signature"),
}


@pytest.mark.parametrize(("tamper", "reason"), REJECTED_WEBHOOKS.values(), ids=REJECTED_WEBHOOKS.keys())
def test_an_untrustworthy_webhook_is_a_400_and_revokes_nothing(adapter: Adapter, tamper: Any,
                                                               reason: str) -> None:
    token = adapter.issuer.mint(["calendar:read"], audience=API, grant_id="grnt_kept")

    answer = adapter.post_webhook(*tamper(*signed(revoked_event("grnt_kept"))))

    assert answer.status_code == 400
    assert _body(answer)["error"] == "invalid_webhook"
    assert _body(answer)["reason"] == reason
    assert adapter.get("/calendar", bearer(token)).status_code == 200


@pytest.fixture(params=["starlette-middleware", "fastapi", "flask-blueprint", "django-sync"])
def kind(request: pytest.FixtureRequest) -> str:
    """One adapter per webhook endpoint (FastAPI mounts Starlette's)."""
    return str(request.param)


def test_a_webhook_is_a_503_when_the_store_is_unreachable(kind: str, api: FakeGrantexAPI,
                                                          served_issuer: ServedIssuer) -> None:
    with running(kind, api, served_issuer, revocation_store=RedisRevocationStore(CLOSED_REDIS)) as app:
        answer = app.post_webhook(*signed(revoked_event("grnt_1")))
    assert answer.status_code == 503
    assert _body(answer)["error"] == "store_unavailable"
    assert answer.headers["Retry-After"]


def test_a_webhook_timestamp_is_judged_by_the_guards_clock(kind: str, api: FakeGrantexAPI,
                                                           served_issuer: ServedIssuer) -> None:
    tomorrow = time.time() + 86_400
    with running(kind, api, served_issuer, clock=lambda: tomorrow) as app:
        signed_by_the_wall_clock = app.post_webhook(*signed(revoked_event("grnt_1")))
        signed_at_the_guards_time = app.post_webhook(*signed(revoked_event("grnt_2"), tomorrow))
    assert _body(signed_by_the_wall_clock)["reason"] == "stale"
    assert signed_at_the_guards_time.status_code == 200


def test_a_webhook_must_be_posted(kind: str, api: FakeGrantexAPI, served_issuer: ServedIssuer) -> None:
    with running(kind, api, served_issuer) as app:
        assert app.send("GET", WEBHOOK, {}, b"").status_code == 405


def test_the_django_webhook_is_absent_without_a_secret(served_issuer: ServedIssuer) -> None:
    with override_settings(GRANTEX_GUARD=served_issuer.settings(), ROOT_URLCONF=__name__):
        answer = DjangoClient().post(WEBHOOK, b"{}", content_type="application/json")
    assert answer.status_code == 404


@pytest.mark.parametrize("secret", ["", [], [""], 42, b"whsec"])
def test_a_malformed_django_webhook_secret_fails_the_system_check(served_issuer: ServedIssuer,
                                                                  secret: object) -> None:
    with override_settings(GRANTEX_GUARD=served_issuer.settings(WEBHOOK_SECRET=secret)):
        errors = [message for message in check_settings() if message.id == "grantex_guard.E004"]
    assert len(errors) == 1
    assert "WEBHOOK_SECRET" in errors[0].msg


def test_the_django_webhook_secret_is_not_a_guard_option(served_issuer: ServedIssuer) -> None:
    with override_settings(GRANTEX_GUARD=served_issuer.settings(WEBHOOK_SECRET=["whsec_a", "whsec_b"])):
        assert check_settings() == []
        assert isinstance(django_guard(), Guard)
