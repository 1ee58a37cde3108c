"""examples/django_project: passes `manage.py check` and serves its views under runserver."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from grantex_guard.testing import LocalIssuer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "django_project"
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def example_issuer() -> Iterator[tuple[LocalIssuer, str]]:
    issuer = LocalIssuer("ES256")
    with issuer.serve() as jwks_uri:
        yield issuer, jwks_uri


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(issuer: LocalIssuer, jwks_uri: str, audience: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items()
                   if key != "DJANGO_SETTINGS_MODULE"}
    environment.update(GRANTEX_ISSUER=issuer.issuer, GRANTEX_JWKS_URI=jwks_uri,
                       GRANTEX_AUDIENCE=audience,
                       PYTHONPATH=os.pathsep.join(filter(None, [str(SRC),
                                                                os.environ.get("PYTHONPATH")])))
    return environment


def test_example_passes_manage_py_check(example_issuer: tuple[LocalIssuer, str]) -> None:
    issuer, jwks_uri = example_issuer
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=EXAMPLE,
                            env=_environment(issuer, jwks_uri, "http://127.0.0.1:8000"),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.fixture(scope="module")
def example_server(example_issuer: tuple[LocalIssuer, str]) -> Iterator[str]:
    issuer, jwks_uri = example_issuer
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=EXAMPLE, env=_environment(issuer, jwks_uri, base),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize(("path", "scopes", "status"), [
    ("/calendar", ["calendar:read"], 200),
    ("/calendar", ["email:send"], 403),
    ("/profile", ["profile:read"], 200),
    ("/payments?amount=250", ["payments:initiate:max_500"], 200),
    ("/payments?amount=750", ["payments:initiate:max_500"], 403),
    ("/contacts", ["contacts:read"], 200),
    ("/contacts", ["contacts:write"], 403),
])
def test_example_serves_its_views(path: str, scopes: list[str], status: int,
                                  example_server: str,
                                  example_issuer: tuple[LocalIssuer, str]) -> None:
    token = example_issuer[0].mint(scopes, audience=example_server)
    response = httpx.get(example_server + path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"] == "SCOPE_INSUFFICIENT"


def test_example_answers_401_without_a_token(example_server: str) -> None:
    response = httpx.get(example_server + "/calendar")
    assert response.status_code == 401
    assert response.json()["error"] == "TOKEN_MISSING"
