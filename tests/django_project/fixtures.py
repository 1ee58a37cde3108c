"""Fixtures of the Django adapter's tests (`pytest_plugins = ["tests.django_project.fixtures"]`).

The project's GRANTEX_GUARD is replaced per test by one trusting a LocalIssuer
whose JWKS is served over real HTTP on 127.0.0.1 for the whole session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import override_settings

from grantex_guard.testing import LocalIssuer

from .served import ServedIssuer

CLOSED_PORT_JWKS = "http://127.0.0.1:9/.well-known/jwks.json"
OUR_MIDDLEWARE = "grantex_guard.django.GrantexMiddleware"


@pytest.fixture(scope="session")
def served_issuer() -> Iterator[ServedIssuer]:
    issuer = LocalIssuer("RS256")
    with issuer.serve() as jwks_uri:
        yield ServedIssuer(issuer, jwks_uri)


@pytest.fixture
def grantex_settings(served_issuer: ServedIssuer) -> Iterator[dict[str, Any]]:
    """GRANTEX_GUARD trusting the served issuer (the guard is rebuilt for every test)."""
    if os.environ.get("DJANGO_SETTINGS_MODULE") != "tests.django_project.settings":
        pytest.fail("Django is not configured for these tests: pytest needs "
                    "DJANGO_SETTINGS_MODULE = tests.django_project.settings (see pyproject.toml)")
    value = served_issuer.settings()
    with override_settings(GRANTEX_GUARD=value):
        yield value


@pytest.fixture
def unavailable_settings(grantex_settings: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """GRANTEX_GUARD whose JWKS is on a closed port: every fresh token answers 503."""
    value = {**grantex_settings, "JWKS_URI": CLOSED_PORT_JWKS, "HTTP_TIMEOUT": 0.5}
    with override_settings(GRANTEX_GUARD=value):
        yield value


@pytest.fixture(params=["with middleware", "without middleware"])
def middleware_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test behind GrantexMiddleware and again without it."""
    if request.param == "with middleware":
        yield request.param
        return
    without = [path for path in settings.MIDDLEWARE if path != OUR_MIDDLEWARE]
    with override_settings(MIDDLEWARE=without):
        yield request.param


@pytest.fixture
def async_only_jwks(served_issuer: ServedIssuer,
                    grantex_settings: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A JWKS reachable only through the async client: a blocking fetch answers 503."""
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    value = {**grantex_settings, "JWKS_URI": served_issuer.issuer.jwks_uri,
             "HTTP_CLIENT": httpx.Client(transport=httpx.MockTransport(refuse)),
             "ASYNC_HTTP_CLIENT": httpx.AsyncClient(transport=served_issuer.issuer.transport())}
    with override_settings(GRANTEX_GUARD=value):
        yield value
