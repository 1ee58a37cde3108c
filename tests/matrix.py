"""The status/body/header matrix every adapter must answer identically.

Each adapter's test app exposes the same routes:

    GET  /calendar   requires "calendar:read"
    GET  /payments   requires "payments:initiate:max_1000"
    GET  /public     no token needed (unprotected)

and is protected by a Guard built with `issuer.guard(audience=API)` (or the
same options through the framework's settings), max_delegation_depth 3.
`cases(issuer)` yields (case, request headers); `check(case, status, headers, body)`
asserts the response.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from grantex_guard.testing import LocalIssuer, SigningKey

API = "https://api.example.com"
GRANTED = ["calendar:read", "payments:initiate:max_500"]


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    status: int
    code: str | None  # None for 200
    challenge: str | None  # expected WWW-Authenticate prefix; None = header must be absent
    make_headers: Callable[[LocalIssuer], dict[str, str]]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _delegated(issuer: LocalIssuer, depth: int) -> str:
    token = issuer.mint(GRANTED, audience=API)
    for _ in range(depth):
        token = issuer.mint(GRANTED, audience=API, delegated_from=token)
    return token


INVALID = 'Bearer realm="grantex", error="invalid_token"'
INSUFFICIENT = 'Bearer realm="grantex", error="insufficient_scope"'

CASES = [
    Case("valid token", "/calendar", 200, None, None,
         lambda i: _bearer(i.mint(GRANTED, audience=API))),
    Case("valid token, lower-case scheme", "/calendar", 200, None, None,
         lambda i: {"Authorization": f"bearer  {i.mint(GRANTED, audience=API)}"}),
    Case("payment cap below the route's amount", "/payments", 403, "SCOPE_INSUFFICIENT", INSUFFICIENT,
         lambda i: _bearer(i.mint(GRANTED, audience=API))),
    Case("uncapped payment grant", "/payments", 200, None, None,
         lambda i: _bearer(i.mint(["payments:initiate"], audience=API))),
    Case("missing token", "/calendar", 401, "TOKEN_MISSING", 'Bearer realm="grantex"',
         lambda i: {}),
    Case("another auth scheme", "/calendar", 401, "TOKEN_MISSING", 'Bearer realm="grantex"',
         lambda i: {"Authorization": "Basic dXNlcjpwYXNz"}),
    Case("malformed token", "/calendar", 401, "TOKEN_INVALID", INVALID,
         lambda i: _bearer("not-a-jwt")),
    Case("expired token", "/calendar", 401, "TOKEN_EXPIRED", INVALID,
         lambda i: _bearer(i.mint(GRANTED, audience=API, issued_at=i.clock() - 7200,
                                  expires_in=3600))),
    Case("bad signature", "/calendar", 401, "TOKEN_INVALID", INVALID,
         lambda i: _bearer(i.mint(GRANTED, audience=API, signing_key=SigningKey("RS256"),
                                  kid=i.key.kid))),
    Case("wrong audience", "/calendar", 401, "TOKEN_INVALID", INVALID,
         lambda i: _bearer(i.mint(GRANTED, audience="https://other.example"))),
    Case("missing scope", "/calendar", 403, "SCOPE_INSUFFICIENT", INSUFFICIENT,
         lambda i: _bearer(i.mint(["email:send"], audience=API))),
    Case("delegation too deep", "/calendar", 403, "DELEGATION_DENIED", INSUFFICIENT,
         lambda i: _bearer(_delegated(i, 4))),
]


def check(case: Case, status: int, headers: Mapping[str, str], body: Any,
          token_headers: Mapping[str, str] | None = None) -> None:
    """Assert one response against its case (headers: any case-insensitive mapping)."""
    assert status == case.status, (case.name, status, body)
    challenge = headers.get("WWW-Authenticate") or headers.get("www-authenticate")
    if case.code is None:
        assert challenge is None, case.name
        return
    assert isinstance(body, dict), (case.name, body)
    assert body["error"] == case.code, (case.name, body)
    assert isinstance(body["message"], str) and body["message"], case.name
    assert set(body) == {"error", "message"}, case.name
    if case.challenge is None:
        assert challenge is None, case.name
    else:
        assert challenge is not None and challenge.startswith(case.challenge), (case.name, challenge)
    if case.code == "SCOPE_INSUFFICIENT":
        assert challenge is not None and 'scope="' in challenge, challenge
    for value in (token_headers or {}).values():
        token = value.split()[-1] if value.split() else ""
        if len(token) > 20:
            assert token not in str(body) and token not in (challenge or ""), case.name


UNAVAILABLE_CODE = "GRANTEX_UNAVAILABLE"


def check_unavailable(status: int, headers: Mapping[str, str], body: Any) -> None:
    """A guard whose JWKS cannot be reached answers 503 with Retry-After and no challenge."""
    assert status == 503, (status, body)
    assert body == {"error": UNAVAILABLE_CODE, "message": body["message"]}
    retry_after = headers.get("Retry-After") or headers.get("retry-after")
    assert retry_after is not None and retry_after.isdigit()
    assert (headers.get("WWW-Authenticate") or headers.get("www-authenticate")) is None
