"""The Flask adapter behind a real HTTP server (werkzeug, 127.0.0.1), driven by httpx.

Keys are fetched over real HTTP too (`LocalIssuer.serve()`), and the example app is
exercised here with a LocalIssuer-backed configuration.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import httpx
import pytest
from examples.flask_app import create_app
from flask import Flask
from werkzeug.serving import make_server

from grantex_guard import Guard
from grantex_guard.flask import get_guard
from grantex_guard.testing import LocalIssuer
from tests.conftest import FakeClock
from tests.matrix import API, CASES, Case, check, check_unavailable
from tests.test_flask import UNREACHABLE_JWKS, bearer, config_for, matrix_app


@contextmanager
def running(app: Flask) -> Iterator[httpx.Client]:
    """Serve `app` on 127.0.0.1 (free port) in a thread; yield a client for it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=10) as client:
            yield client
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def server_issuer() -> LocalIssuer:
    return LocalIssuer("ES256", clock=FakeClock())


@pytest.fixture(scope="module")
def server(server_issuer: LocalIssuer) -> Iterator[httpx.Client]:
    with server_issuer.serve() as jwks_url:
        guard = Guard(issuer=server_issuer.issuer, jwks_uri=jwks_url, audience=API,
                      clock=server_issuer.clock)
        with guard, running(matrix_app(guard=guard)) as client:
            yield client


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_matrix_over_http(case: Case, server_issuer: LocalIssuer, server: httpx.Client) -> None:
    # On the wire a field value has no surrounding whitespace (RFC 9110 5.5): httpx refuses
    # to send it, and servers strip it. Whitespace inside the value is kept.
    headers = {name: value.strip() for name, value in case.make_headers(server_issuer).items()}
    response = server.get(case.path, headers=headers)
    body = response.json()
    check(case, response.status_code, response.headers, body, headers)


def test_unreachable_jwks_is_503_over_http(server_issuer: LocalIssuer) -> None:
    guard = Guard(issuer=server_issuer.issuer, jwks_uri=UNREACHABLE_JWKS, audience=API,
                  http_timeout=0.5, clock=server_issuer.clock)
    token = server_issuer.mint(["calendar:read"], audience=API)
    with guard, running(matrix_app(guard=guard)) as client:
        response = client.get("/calendar", headers=bearer(token))
    check_unavailable(response.status_code, response.headers, response.json())


def test_a_revoked_grant_is_refused_over_http(server_issuer: LocalIssuer) -> None:
    token = server_issuer.mint(["calendar:read"], audience=API, grant_id="grnt_revoked")
    with server_issuer.serve() as jwks_url:
        guard = Guard(issuer=server_issuer.issuer, jwks_uri=jwks_url, audience=API,
                      clock=server_issuer.clock)
        guard.revoke_locally(grant_id="grnt_revoked")
        with guard, running(matrix_app(guard=guard)) as client:
            response = client.get("/calendar", headers=bearer(token))
    assert (response.status_code, response.json()["error"]) == (401, "TOKEN_REVOKED")
    assert response.headers["www-authenticate"].startswith('Bearer realm="grantex", error="invalid_token"')
    assert token not in response.text


def test_concurrent_requests_share_one_key_fetch() -> None:
    issuer = LocalIssuer("ES256", clock=FakeClock())
    with issuer.serve() as jwks_url:
        guard = Guard(issuer=issuer.issuer, jwks_uri=jwks_url, audience=API, clock=issuer.clock)
        tokens = [issuer.mint(["calendar:read"], audience=API) for _ in range(8)]
        with guard, running(matrix_app(guard=guard)) as client:
            statuses: list[int] = []

            def call(token: str) -> None:
                statuses.append(client.get("/calendar", headers=bearer(token)).status_code)

            threads = [threading.Thread(target=call, args=(token,)) for token in tokens]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    assert statuses == [200] * len(tokens)
    assert issuer.jwks_hits == 1


# -- the example app ----------------------------------------------------------------------------


@pytest.fixture
def example(issuer: LocalIssuer) -> Iterator[httpx.Client]:
    with running(create_app(config_for(issuer))) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "scopes", "amount", "status"),
    [
        ("GET", "/", None, None, 200),
        ("GET", "/calendar", ["calendar:read"], None, 200),
        ("GET", "/calendar", ["email:send"], None, 403),
        ("GET", "/calendar", None, None, 401),
        ("POST", "/payments", ["payments:initiate:max_500"], "300.50", 201),
        ("POST", "/payments", ["payments:initiate:max_500"], 800, 403),
        ("POST", "/payments", ["payments:initiate"], 800, 201),
        ("POST", "/payments", ["calendar:read"], 10, 403),
        ("POST", "/payments", ["payments:initiate:max_500"], "-5", 400),
        ("POST", "/payments", ["payments:initiate:max_500"], "lots", 400),
        ("POST", "/payments", None, 10, 401),
        ("GET", "/payments/limit", ["payments:initiate:max_500"], None, 200),
        ("GET", "/payments/currencies", None, None, 200),
    ],
)
def test_example_app_status(
    example: httpx.Client, issuer: LocalIssuer, method: str, path: str,
    scopes: list[str] | None, amount: object, status: int,
) -> None:
    headers = {} if scopes is None else bearer(issuer.mint(scopes, audience=API))
    payload = None if amount is None else {"amount": amount}
    response = example.request(method, path, headers=headers, json=payload)
    assert response.status_code == status, response.text


def test_example_payment_limit_reports_the_cap(example: httpx.Client, issuer: LocalIssuer) -> None:
    token = issuer.mint(["payments:initiate:max_500"], audience=API)
    response = example.get("/payments/limit", headers=bearer(token))
    assert Decimal(response.json()["payments:initiate"]) == 500


def test_example_defaults_to_hosted_grantex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRANTEX_ISSUER", raising=False)
    monkeypatch.delenv("GRANTEX_AUDIENCE", raising=False)
    assert get_guard(create_app()).config.issuer == "https://grantex.dev"
