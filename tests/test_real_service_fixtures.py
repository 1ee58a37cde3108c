"""Tokens captured from a real Grantex service (../shared/fixtures), verified at their recorded time.

The JWKS the service published is served over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from grantex_guard import Guard, GuardError

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real-service-v1"
CAPTURE: dict[str, Any] = json.loads((FIXTURES / "tokens.json").read_text())


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    body = json.dumps(CAPTURE["jwks"]).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("case", CAPTURE["cases"], ids=[case["name"] for case in CAPTURE["cases"]])
def test_captured_token(case: dict[str, Any], jwks_url: str) -> None:
    guard = Guard(
        issuer=CAPTURE["issuer"],
        jwks_uri=jwks_url,
        audience=case.get("audience"),
        max_delegation_depth=case.get("max_delegation_depth", 3),
        clock=lambda: float(case["verify_at"]),
    )
    if case["expect"] == "valid":
        grant = guard.verify(case["token"])
        assert grant.token_format == "v1"
        assert grant.principal_id == "user_alice"
    else:
        with pytest.raises(GuardError) as caught:
            guard.verify(case["token"])
        assert caught.value.code == case["expect"]


def test_captured_scopes_enforce_the_payment_cap(jwks_url: str) -> None:
    root = next(case for case in CAPTURE["cases"] if case["name"] == "root")
    guard = Guard(issuer=CAPTURE["issuer"], jwks_uri=jwks_url, clock=lambda: root["verify_at"])

    grant = guard.verify(root["token"], scopes=["payments:initiate:max_500"])

    assert grant.limit("payments:initiate") == 500
    assert grant.has("payments:initiate", amount=499)
    assert not grant.has("payments:initiate", amount="500.01")
