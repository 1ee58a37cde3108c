"""Framework-neutral edges: reading credentials, rendering errors, RFC 9728 metadata."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from grantex_guard import Guard, InsufficientScope, ProofInvalid, TokenInvalid, TokenMissing
from grantex_guard.http import (
    error_response,
    extracted_credentials,
    read_credentials,
    request_url,
    resource_metadata,
)


@pytest.mark.parametrize(
    ("header", "scheme", "token"),
    [
        ("Bearer abc.def.ghi", "Bearer", "abc.def.ghi"),
        ("bearer abc.def.ghi", "Bearer", "abc.def.ghi"),
        ("  BEARER   abc.def.ghi  ", "Bearer", "abc.def.ghi"),
        ("DPoP abc.def.ghi", "DPoP", "abc.def.ghi"),
        ("dpop abc.def.ghi", "DPoP", "abc.def.ghi"),
    ],
)
def test_credentials_are_read_from_bearer_and_dpop(header: str, scheme: str, token: str) -> None:
    credentials = read_credentials(header, "proof")
    assert (credentials.scheme, credentials.token, credentials.dpop_proof) == (scheme, token, "proof")


@pytest.mark.parametrize("dpop", [["p1", "p2"], "p1,p2", "p1, p2"])
def test_more_than_one_dpop_header_is_refused(dpop: str | list[str]) -> None:
    with pytest.raises(ProofInvalid, match="exactly one DPoP header"):
        read_credentials("DPoP abc.def.ghi", dpop)


@pytest.mark.parametrize(("dpop", "proof"), [(None, None), ([], None), ("", None), ([" p1 "], "p1")])
def test_zero_or_one_dpop_header_is_read(dpop: str | list[str] | None, proof: str | None) -> None:
    assert read_credentials("DPoP abc.def.ghi", dpop).dpop_proof == proof


@pytest.mark.parametrize(("dpop", "scheme"), [(None, "Bearer"), ([], "Bearer"), (["p1"], "DPoP")])
def test_an_extracted_token_is_a_dpop_presentation_when_a_proof_comes_with_it(
        dpop: list[str] | None, scheme: str) -> None:
    assert extracted_credentials("abc.def.ghi", dpop).scheme == scheme


@pytest.mark.parametrize("header", [None, "", "   ", "Basic dXNlcjpwYXNz", "Token abc"])
def test_no_grant_token_is_token_missing(header: str | None) -> None:
    with pytest.raises(TokenMissing):
        read_credentials(header)


@pytest.mark.parametrize("header", ["Bearer", "Bearer   ", "Bearer a b", "Bearer a\tb"])
def test_a_broken_bearer_header_is_token_invalid(header: str) -> None:
    with pytest.raises(TokenInvalid):
        read_credentials(header)


def test_error_response_renders_status_headers_and_body() -> None:
    guard = Guard(issuer="https://issuer.example", realm="payments",
                  resource="https://api.example/v1")
    response = error_response(InsufficientScope("Missing scope 'a:b'.", required_scopes=["a:b"]),
                              guard.config)
    assert response.status == 403
    assert response.body == {"error": "SCOPE_INSUFFICIENT", "message": "Missing scope 'a:b'."}
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="payments", error="insufficient_scope", error_description="Missing scope '
        "'a:b'.\", scope=\"a:b\", resource_metadata="
        '"https://api.example/.well-known/oauth-protected-resource/v1"'
    )
    assert response.json_bytes().startswith(b'{"error": "SCOPE_INSUFFICIENT"')


def test_resource_metadata_document() -> None:
    guard = Guard(issuer="https://issuer.example", resource="https://api.example")
    document = resource_metadata(guard.config, ["calendar:read", "email:send", "calendar:read"])
    assert document == {
        "resource": "https://api.example",
        "authorization_servers": ["https://issuer.example"],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["ES256", "RS256"],
        "scopes_supported": ["calendar:read", "email:send"],
    }


def test_resource_metadata_needs_a_resource() -> None:
    with pytest.raises(ValueError, match="resource="):
        resource_metadata(Guard(issuer="https://issuer.example").config)


def _headers(**values: str) -> Callable[[str], str | None]:
    lowered = {name.replace("_", "-").lower(): value for name, value in values.items()}
    return lambda name: lowered.get(name.lower())


URL = "http://10.0.0.5:8000/calendar?x=1"


@pytest.mark.parametrize(
    ("options", "headers", "expected"),
    [
        ({}, {}, URL),
        ({}, {"X_Forwarded_Proto": "https", "X_Forwarded_Host": "api.example"}, URL),
        ({"trust_forwarded_headers": True},
         {"X_Forwarded_Proto": "https", "X_Forwarded_Host": "api.example"},
         "https://api.example/calendar?x=1"),
        ({"trust_forwarded_headers": True},
         {"Forwarded": 'for=1.2.3.4;proto=https;host="api.example", for=5.6.7.8;proto=http'},
         "https://api.example/calendar?x=1"),
        ({"public_base_url": "https://api.example/v1"}, {"X_Forwarded_Host": "evil.example"},
         "https://api.example/v1/calendar?x=1"),
    ],
)
def test_request_url_behind_a_proxy(options: dict[str, object], headers: dict[str, str],
                                    expected: str) -> None:
    config = Guard(issuer="https://issuer.example", **options).config  # type: ignore[arg-type]
    assert request_url(URL, _headers(**headers), config) == expected
