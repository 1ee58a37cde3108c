"""pytest fixtures for testing an API protected by grantex-guard (loaded automatically).

- `grantex_issuer`: a `LocalIssuer` (RS256, standard tokens): mint tokens, rotate keys.
- `grantex_guard`: a `Guard` trusting it, with the JWKS served in-process (no network);
  its audience is the `grantex_audience` ini option (unset: none).
- `grantex_headers(scopes=[...], **mint_options)`: `{"Authorization": "Bearer <token>"}`
  for a fresh token with those scopes and that audience.

Hand `grantex_guard` to your app (app factory, settings or dependency override) and
send `grantex_headers(...)` with your test client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import LocalIssuer
    from .verifier import Guard

HeaderFactory = Callable[..., dict[str, str]]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("grantex_audience", "audience of the grantex_guard fixture and of minted tokens",
                  default="")


def _audience(config: pytest.Config) -> str | None:
    value = str(config.getini("grantex_audience"))
    return value or None


@pytest.fixture
def grantex_issuer() -> LocalIssuer:
    """A local Grantex issuer with a fresh key (function-scoped: tests stay independent)."""
    from .testing import LocalIssuer

    return LocalIssuer()


@pytest.fixture
def grantex_guard(grantex_issuer: LocalIssuer, pytestconfig: pytest.Config) -> Iterator[Guard]:
    """A Guard trusting `grantex_issuer`; closed after the test."""
    guard = grantex_issuer.guard(audience=_audience(pytestconfig))
    yield guard
    guard.close()


@pytest.fixture
def grantex_headers(grantex_issuer: LocalIssuer, pytestconfig: pytest.Config) -> HeaderFactory:
    """`grantex_headers(scopes=[...], **mint_options)` -> Authorization header for a fresh token."""

    def headers(scopes: Sequence[str] = (), **mint_options: Any) -> dict[str, str]:
        mint_options.setdefault("audience", _audience(pytestconfig))
        return {"Authorization": f"Bearer {grantex_issuer.mint(scopes, **mint_options)}"}

    return headers
