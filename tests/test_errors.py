"""The error hierarchy: codes, statuses, RFC 6750 challenges, JSON bodies."""

from __future__ import annotations

import pytest

from grantex_guard import (
    DelegationDenied,
    GrantexUnavailable,
    GuardError,
    InsufficientScope,
    ProofInvalid,
    ProofRequired,
    TokenExpired,
    TokenInvalid,
    TokenMissing,
    TokenRevoked,
)

TABLE = [
    (TokenMissing, "TOKEN_MISSING", 401, 'Bearer realm="grantex"'),
    (TokenInvalid, "TOKEN_INVALID", 401, 'Bearer realm="grantex", error="invalid_token"'),
    (TokenExpired, "TOKEN_EXPIRED", 401, 'Bearer realm="grantex", error="invalid_token"'),
    (TokenRevoked, "TOKEN_REVOKED", 401, 'Bearer realm="grantex", error="invalid_token"'),
    (InsufficientScope, "SCOPE_INSUFFICIENT", 403,
     'Bearer realm="grantex", error="insufficient_scope"'),
    (DelegationDenied, "DELEGATION_DENIED", 403,
     'Bearer realm="grantex", error="insufficient_scope"'),
    (ProofRequired, "DPOP_REQUIRED", 401, 'DPoP algs="ES256 RS256", error="invalid_dpop_proof"'),
    (ProofInvalid, "DPOP_INVALID", 401, 'DPoP algs="ES256 RS256", error="invalid_dpop_proof"'),
]


@pytest.mark.parametrize(("error_class", "code", "status", "challenge"), TABLE,
                         ids=[row[1] for row in TABLE])
def test_each_error_has_its_code_status_and_challenge(error_class: type[GuardError], code: str,
                                                      status: int, challenge: str) -> None:
    error = error_class()
    assert isinstance(error, GuardError)
    assert (error.code, error.status) == (code, status)
    assert error.www_authenticate is not None
    assert error.www_authenticate.startswith(challenge)
    assert error.to_dict() == {"error": code, "message": error.message}


def test_token_missing_has_a_bare_challenge() -> None:
    assert TokenMissing().www_authenticate == 'Bearer realm="grantex"'


def test_expired_and_revoked_are_kinds_of_invalid() -> None:
    assert issubclass(TokenExpired, TokenInvalid)
    assert issubclass(TokenRevoked, TokenInvalid)


def test_insufficient_scope_names_the_required_scopes() -> None:
    error = InsufficientScope("Missing scope.", required_scopes=["calendar:read", "email:send"])
    assert 'scope="calendar:read email:send"' in (error.www_authenticate or "")


def test_proof_errors_offer_a_bearer_challenge_beside_dpop() -> None:
    header = ProofInvalid().www_authenticate or ""
    assert header.startswith('DPoP algs="ES256 RS256", error="invalid_dpop_proof"')
    assert header.endswith('Bearer realm="grantex"')


def test_unavailable_has_retry_after_and_no_challenge() -> None:
    error = GrantexUnavailable(retry_after=12)
    assert error.status == 503
    assert error.www_authenticate is None
    assert error.headers() == {"Retry-After": "12"}


def test_challenge_parameters_cannot_break_out_of_their_quotes() -> None:
    error = TokenInvalid('bad "quoted" \\ value\r\nX-Injected: 1')
    header = error.www_authenticate or ""
    assert "\r" not in header and "\n" not in header
    assert header.count('"') == 6


def test_resource_metadata_is_added_to_challenges() -> None:
    headers = TokenMissing().headers("api", "https://api.example/.well-known/oauth-protected-resource")
    assert headers["WWW-Authenticate"] == (
        'Bearer realm="api", resource_metadata="https://api.example/.well-known/oauth-protected-resource"'
    )


def test_detail_is_kept_apart_from_the_public_message() -> None:
    error = TokenInvalid("The token is invalid.", detail="expected iss 'a', got 'b'")
    assert error.to_dict()["message"] == "The token is invalid."
    assert "expected iss" in str(error)
