"""DPoP-bound tokens through every adapter: each passes the proof, method and URL to the Guard.

One table of requests, run against Starlette, FastAPI, Flask, Django (sync and
async views) and DRF, each with real keys and its framework's test client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client as DjangoClient
from django.test import override_settings
from fastapi import FastAPI, Security
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from grantex_guard import Grant, Guard
from grantex_guard.dpop import RedisReplayStore
from grantex_guard.fastapi import GrantexBearer, install
from grantex_guard.flask import GrantexGuard
from grantex_guard.starlette import GrantexMiddleware, require_scopes
from grantex_guard.testing import DPoPAgent, LocalIssuer

from .conftest import API
from .django_project.served import ServedIssuer

pytest_plugins = ["tests.django_project.fixtures"]

Headers = dict[str, str] | list[tuple[str, str]]
Send = Callable[[str, Headers], Any]  # (path, headers) -> response with .status_code


@dataclass
class Adapter:
    issuer: LocalIssuer
    base: str
    path: str
    send: Send


def starlette_app(guard: Guard) -> Starlette:
    @require_scopes("calendar:read")
    async def calendar(request: Request) -> JSONResponse:
        return JSONResponse({"principal": request.state.grant.principal_id})

    return Starlette(routes=[Route("/calendar", calendar)],
                     middleware=[Middleware(GrantexMiddleware, guard=guard, required=True)])


def fastapi_app(guard: Guard) -> FastAPI:
    grantex = GrantexBearer(guard)
    app = FastAPI()
    install(app, guard)

    @app.get("/calendar")
    async def calendar(
        grant: Grant = Security(grantex, scopes=["calendar:read"]),  # noqa: B008 (a local scheme)
    ) -> dict[str, str]:
        return {"principal": grant.principal_id}

    return app


def flask_app(guard: Guard) -> Flask:
    app = Flask(__name__)
    grantex = GrantexGuard(app, guard=guard)

    @app.get("/calendar")
    @grantex.require_scopes("calendar:read")
    def calendar() -> dict[str, str]:
        return {"ok": "yes"}

    return app


def _joined(headers: Headers) -> dict[str, str]:
    """Headers as a WSGI/ASGI server hands them to Django: repeated ones joined by commas."""
    joined: dict[str, str] = {}
    for name, value in headers.items() if isinstance(headers, dict) else headers:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def _test_client_sender(client: Any) -> Send:
    return lambda path, headers: client.get(path, headers=headers)


@pytest.fixture(params=["starlette", "fastapi", "flask", "django-sync", "django-async", "drf"])
def adapter(request: pytest.FixtureRequest, served_issuer: ServedIssuer,
            grantex_settings: dict[str, Any]) -> Iterator[Adapter]:
    kind = request.param
    if kind.startswith(("django", "drf")):
        path = {"django-sync": "/sync/calendar", "django-async": "/async/calendar",
                "drf": "/drf/calendar"}[kind]
        client = DjangoClient()
        yield Adapter(served_issuer.issuer, "http://testserver", path,
                      lambda path, headers: client.get(path, headers=_joined(headers)))
        return
    issuer = LocalIssuer()
    guard = issuer.guard(audience=API)
    if kind == "flask":
        yield Adapter(issuer, "http://localhost", "/calendar",
                      _test_client_sender(flask_app(guard).test_client()))
        return
    app = starlette_app(guard) if kind == "starlette" else fastapi_app(guard)
    with TestClient(app) as client:
        yield Adapter(issuer, "http://testserver", "/calendar", _test_client_sender(client))


def _headers(agent: DPoPAgent, token: str, method: str, url: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"DPoP {token}", "DPoP": agent.proof(method, url, token, claims=claims)}


REQUESTS: dict[str, tuple[Callable[[DPoPAgent, str, str], dict[str, str]], int, str | None]] = {
    "valid proof": (lambda agent, token, url: _headers(agent, token, "GET", url), 200, None),
    "wrong method": (lambda agent, token, url: _headers(agent, token, "POST", url), 401, "DPOP_INVALID"),
    "wrong URL": (lambda agent, token, url: _headers(agent, token, "GET", url + "/other"),
                  401, "DPOP_INVALID"),
    "stale iat": (lambda agent, token, url: _headers(agent, token, "GET", url,
                                                     iat=int(time.time()) - 3600), 401, "DPOP_INVALID"),
    "wrong key": (lambda agent, token, url: _headers(DPoPAgent(), token, "GET", url),
                  401, "DPOP_INVALID"),
    "missing ath": (lambda agent, token, url: _headers(agent, token, "GET", url, ath=None),
                    401, "DPOP_INVALID"),
    "proof for another token": (
        lambda agent, token, url: {"Authorization": f"DPoP {token}",
                                   "DPoP": agent.proof("GET", url, token[:-2] + "xx")},
        401, "DPOP_INVALID"),
    "bound token sent as Bearer": (
        lambda agent, token, url: {"Authorization": f"Bearer {token}",
                                   "DPoP": agent.proof("GET", url, token)},
        401, "DPOP_REQUIRED"),
    "bound token without proof": (lambda agent, token, url: {"Authorization": f"DPoP {token}"},
                                  401, "DPOP_REQUIRED"),
}


def _body(response: Any) -> Any:
    return response.json() if callable(getattr(response, "json", None)) else response.json


@pytest.mark.parametrize(("make_headers", "status", "code"), REQUESTS.values(), ids=REQUESTS.keys())
def test_bound_tokens_through_every_adapter(adapter: Adapter, make_headers: Any, status: int,
                                            code: str | None) -> None:
    agent = DPoPAgent()
    token = adapter.issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)

    response = adapter.send(adapter.path, make_headers(agent, token, adapter.base + adapter.path))

    assert response.status_code == status
    if code is not None:
        assert _body(response) == {"error": code, "message": _body(response)["message"]}
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('DPoP algs="ES256 RS256", error="invalid_dpop_proof"')
        assert token not in challenge and token not in str(_body(response))


def test_a_replayed_proof_is_refused_by_every_adapter(adapter: Adapter) -> None:
    agent = DPoPAgent()
    token = adapter.issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)
    headers = _headers(agent, token, "GET", adapter.base + adapter.path)

    assert adapter.send(adapter.path, headers).status_code == 200
    replayed = adapter.send(adapter.path, headers)

    assert replayed.status_code == 401
    assert _body(replayed)["error"] == "DPOP_INVALID"


def test_two_dpop_headers_are_refused_by_every_adapter(adapter: Adapter) -> None:
    agent = DPoPAgent()
    token = adapter.issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)
    url = adapter.base + adapter.path
    first, second = agent.proof("GET", url, token), agent.proof("GET", url, token)
    # However the framework presents a repeated header (a list, or one comma-joined value).
    response = adapter.send(adapter.path, [("Authorization", f"DPoP {token}"), ("DPoP", first),
                                           ("DPoP", second)])

    assert response.status_code == 401
    assert _body(response)["error"] == "DPOP_INVALID"


def test_a_proof_replayed_to_another_worker_is_refused(redis_url: str) -> None:
    issuer, agent = LocalIssuer(), DPoPAgent()
    workers = [TestClient(starlette_app(issuer.guard(audience=API,
                                                     replay_store=RedisReplayStore(redis_url))))
               for _ in range(2)]
    token = issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)
    headers = _headers(agent, token, "GET", "http://testserver/calendar")

    assert workers[0].get("/calendar", headers=headers).status_code == 200
    replayed = workers[1].get("/calendar", headers=headers)

    assert replayed.status_code == 401
    assert replayed.json()["error"] == "DPOP_INVALID"


def test_django_workers_share_the_replay_store(served_issuer: ServedIssuer, redis_url: str) -> None:
    agent = DPoPAgent()
    token = served_issuer.issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)
    headers = _headers(agent, token, "GET", "http://testserver/sync/calendar")
    with override_settings(GRANTEX_GUARD=served_issuer.settings(REPLAY_STORE=RedisReplayStore(redis_url))):
        assert DjangoClient().get("/sync/calendar", headers=headers).status_code == 200
    with override_settings(GRANTEX_GUARD=served_issuer.settings(REPLAY_STORE=RedisReplayStore(redis_url))):
        replayed = DjangoClient().get("/sync/calendar", headers=headers)
    assert replayed.status_code == 401


def test_public_base_url_names_the_url_behind_a_proxy() -> None:
    issuer, agent = LocalIssuer(), DPoPAgent()
    guard = issuer.guard(audience=API, public_base_url="https://api.example.com")
    token = issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)
    with TestClient(starlette_app(guard)) as client:
        public = client.get("/calendar", headers=_headers(agent, token, "GET",
                                                          "https://api.example.com/calendar"))
        internal = client.get("/calendar", headers=_headers(agent, token, "GET",
                                                            "http://testserver/calendar"))
    assert public.status_code == 200
    assert internal.status_code == 401
