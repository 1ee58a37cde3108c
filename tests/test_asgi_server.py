"""The ASGI adapters over a real uvicorn server on 127.0.0.1.

Every matrix case is sent to four apps (Starlette middleware, Starlette
backend + require_scopes, FastAPI Security scopes, FastAPI require()), which
must answer with the same status, body and headers. The JWKS is served over
real HTTP too. A slow JWKS server shows the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from grantex_guard import Guard
from grantex_guard._demo import uvicorn_server
from grantex_guard.fastapi import GrantexBearer
from grantex_guard.testing import LocalIssuer
from tests.jwks_server import JWKSServer
from tests.matrix import API, CASES, GRANTED, Case, check, check_unavailable
from tests.test_fastapi import create_app
from tests.test_starlette import backend_app, bearer, middleware_app, unavailable_guard

AppFactory = Callable[[Guard], Any]

APPS: dict[str, AppFactory] = {
    "starlette middleware": middleware_app,
    "starlette backend": backend_app,
    "fastapi security": lambda guard: create_app(GrantexBearer(guard), "security"),
    "fastapi require": lambda guard: create_app(GrantexBearer(guard), "require"),
}


@pytest.fixture(scope="module")
def served_issuer() -> LocalIssuer:
    return LocalIssuer()


@pytest.fixture(scope="module")
def servers(served_issuer: LocalIssuer) -> Iterator[dict[str, str]]:
    """Each app behind uvicorn, trusting the issuer's JWKS served over HTTP."""
    with served_issuer.serve() as jwks_url, _many(
        uvicorn_server(factory(Guard(issuer=served_issuer.issuer, jwks_uri=jwks_url,
                                     audience=API)))
        for factory in APPS.values()
    ) as urls:
        yield dict(zip(APPS, urls, strict=True))


@contextmanager
def _many(managers: Any) -> Iterator[list[str]]:
    entered: list[Any] = []
    try:
        values = []
        for manager in managers:
            values.append(manager.__enter__())
            entered.append(manager)
        yield values
    finally:
        for manager in reversed(entered):
            manager.__exit__(None, None, None)


def _observed(response: httpx.Response) -> tuple[Any, ...]:
    headers = response.headers
    return (response.status_code, response.json(), headers.get("www-authenticate"),
            headers.get("cache-control"), headers.get("content-type"))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_adapter_answers_the_matrix_case_identically(
    case: Case, served_issuer: LocalIssuer, servers: dict[str, str]
) -> None:
    # h11 refuses to send trailing whitespace (servers strip it anyway, RFC 9110 5.5).
    headers = {name: value.strip() for name, value in case.make_headers(served_issuer).items()}
    observed = {}
    for name, base_url in servers.items():
        response = httpx.get(base_url + case.path, headers=headers)
        check(case, response.status_code, response.headers, response.json(), headers)
        observed[name] = _observed(response)
    assert len(set(map(repr, observed.values()))) == 1, observed


def test_every_adapter_answers_503_identically_when_jwks_is_unreachable(
    served_issuer: LocalIssuer,
) -> None:
    token = served_issuer.mint(GRANTED, audience=API)
    observed = {}
    for name, factory in APPS.items():
        with uvicorn_server(factory(unavailable_guard(served_issuer))) as base_url:
            response = httpx.get(base_url + "/calendar", headers=bearer(token))
        check_unavailable(response.status_code, response.headers, response.json())
        observed[name] = _observed(response)
    assert len(set(map(repr, observed.values()))) == 1, observed


def test_every_adapter_refuses_a_revoked_grant_identically(served_issuer: LocalIssuer) -> None:
    token = served_issuer.mint(GRANTED, audience=API, grant_id="grnt_revoked")
    observed = {}
    with served_issuer.serve() as jwks_url:
        for name, factory in APPS.items():
            guard = Guard(issuer=served_issuer.issuer, jwks_uri=jwks_url, audience=API)
            guard.revoke_locally(grant_id="grnt_revoked")
            with uvicorn_server(factory(guard)) as base_url:
                response = httpx.get(base_url + "/calendar", headers=bearer(token))
            assert (response.status_code, response.json()["error"]) == (401, "TOKEN_REVOKED")
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="grantex", error="invalid_token"')
            assert token not in response.text
            observed[name] = _observed(response)
    assert len(set(map(repr, observed.values()))) == 1, observed


@pytest.mark.parametrize("app_kind", ["starlette middleware", "fastapi security"])
async def test_a_slow_key_fetch_never_blocks_other_requests(app_kind: str) -> None:
    issuer = LocalIssuer()
    with JWKSServer(issuer.jwks()) as jwks_server:
        jwks_server.delay = 1.0
        guard = Guard(issuer=issuer.issuer, jwks_uri=jwks_server.url, audience=API)
        with uvicorn_server(APPS[app_kind](guard)) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                await client.get("/public")  # connection warm, no key fetched yet
                started = time.monotonic()
                protected = asyncio.create_task(client.get(
                    "/calendar", headers=bearer(issuer.mint(GRANTED, audience=API))))
                while jwks_server.hits == 0:
                    await asyncio.sleep(0.005)
                latencies = []
                for _ in range(10):
                    sent = time.monotonic()
                    assert (await client.get("/public")).status_code == 200
                    latencies.append(time.monotonic() - sent)
                assert not protected.done()
                response = await protected
    assert response.status_code == 200
    assert time.monotonic() - started >= 1.0
    assert max(latencies) < 0.5, latencies  # a blocked loop would hold them for the 1 s fetch
