"""The shipped pytest plugin: fixtures a user's own API tests get without any setup."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from grantex_guard import Guard
from grantex_guard.pytest_plugin import HeaderFactory
from grantex_guard.starlette import GrantexMiddleware, require_scopes
from grantex_guard.testing import LocalIssuer


def test_the_fixtures_mint_tokens_the_guard_accepts(grantex_guard: Guard,
                                                    grantex_headers: HeaderFactory) -> None:
    token = grantex_headers(["calendar:read"])["Authorization"].removeprefix("Bearer ")
    grant = grantex_guard.verify(token, scopes=["calendar:read"])
    assert grant.audience == ("https://api.example.com",)  # the grantex_audience ini option


def test_the_issuer_fixture_is_the_guards(grantex_issuer: LocalIssuer, grantex_guard: Guard) -> None:
    assert grantex_guard.config.issuer == grantex_issuer.issuer


def test_an_app_is_tested_with_the_fixtures(grantex_guard: Guard,
                                            grantex_headers: HeaderFactory) -> None:
    @require_scopes("calendar:read")
    async def calendar(request: Request) -> JSONResponse:
        return JSONResponse({"principal": request.state.grant.principal_id})

    app = Starlette(routes=[Route("/calendar", calendar)],
                    middleware=[Middleware(GrantexMiddleware, guard=grantex_guard, required=True)])
    with TestClient(app) as client:
        assert client.get("/calendar", headers=grantex_headers(["calendar:read"])).status_code == 200
        assert client.get("/calendar", headers=grantex_headers(["email:send"])).status_code == 403
        expired = grantex_headers(["calendar:read"], expires_in=-3600)
        assert client.get("/calendar", headers=expired).json()["error"] == "TOKEN_EXPIRED"


def test_the_plugin_loads_in_a_fresh_project_by_entry_point(tmp_path: Path) -> None:
    (tmp_path / "test_api.py").write_text(textwrap.dedent("""
        def test_guard(grantex_guard, grantex_headers):
            token = grantex_headers(["calendar:read"])["Authorization"].split()[1]
            assert grantex_guard.verify(token, scopes=["calendar:read"]).scopes == ("calendar:read",)
    """))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-p", "no:django", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.parametrize("scopes", [["calendar:read"], ["payments:initiate:max_500"]])
def test_headers_carry_the_requested_scopes(grantex_guard: Guard, grantex_headers: HeaderFactory,
                                            scopes: list[str]) -> None:
    token = grantex_headers(scopes)["Authorization"].split()[1]
    assert grantex_guard.verify(token).scopes == tuple(scopes)
