"""Guard options: validated once at construction, derivations, settings mappings."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from grantex_guard import Guard
from grantex_guard.config import GuardConfig

ISSUER = "https://issuer.example"


@pytest.mark.parametrize(
    ("options", "issuer", "jwks_uri"),
    [
        ({"issuer": ISSUER}, ISSUER, ISSUER + "/.well-known/jwks.json"),
        ({"issuer": ISSUER + "/"}, ISSUER + "/", ISSUER + "/.well-known/jwks.json"),
        ({"jwks_uri": ISSUER + "/.well-known/jwks.json"}, ISSUER, ISSUER + "/.well-known/jwks.json"),
        ({"jwks_uri": "https://api.grantex.dev/.well-known/jwks.json"}, "https://grantex.dev",
         "https://api.grantex.dev/.well-known/jwks.json"),
        ({"issuer": "https://grantex.dev"}, "https://grantex.dev",
         "https://api.grantex.dev/.well-known/jwks.json"),
        ({"issuer": ISSUER, "jwks_uri": "https://keys.example/jwks"}, ISSUER,
         "https://keys.example/jwks"),
    ],
)
def test_issuer_and_jwks_uri_derive_from_each_other(options: dict[str, str], issuer: str,
                                                    jwks_uri: str) -> None:
    config = Guard(**options).config  # type: ignore[arg-type]
    assert (config.issuer, config.jwks_uri) == (issuer, jwks_uri)


INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "neither issuer nor jwks_uri": ({}, "issuer= or jwks_uri="),
    "jwks_uri not ending in the well-known path": (
        {"jwks_uri": "https://keys.example/jwks"}, "cannot derive the issuer"),
    "issuer not a URL": ({"issuer": "grantex.dev"}, "absolute http"),
    "jwks_uri ftp": ({"issuer": ISSUER, "jwks_uri": "ftp://x/jwks"}, "absolute http"),
    "jwks_uri with credentials": ({"issuer": ISSUER, "jwks_uri": "https://u:p@x/jwks"}, "credentials"),
    "jwks_uri plain http off loopback": ({"issuer": "http://auth.internal"}, "plain http"),
    "negative leeway": ({"issuer": ISSUER, "leeway": -1}, "leeway"),
    "leeway a string": ({"issuer": ISSUER, "leeway": "30"}, "leeway"),
    "depth above the protocol cap": ({"issuer": ISSUER, "max_delegation_depth": 11}, "max_delegation_depth"),
    "depth negative": ({"issuer": ISSUER, "max_delegation_depth": -1}, "max_delegation_depth"),
    "depth a bool": ({"issuer": ISSUER, "max_delegation_depth": True}, "max_delegation_depth"),
    "algorithm HS256": ({"issuer": ISSUER, "algorithms": ("RS256", "HS256")}, "algorithms"),
    "algorithm none": ({"issuer": ISSUER, "algorithms": ("none",)}, "algorithms"),
    "no algorithms": ({"issuer": ISSUER, "algorithms": ()}, "algorithms"),
    "algorithms a string": ({"issuer": ISSUER, "algorithms": "RS256"}, "not a string"),
    "audience_check unknown": ({"issuer": ISSUER, "audience_check": "maybe"}, "audience_check"),
    "audience empty": ({"issuer": ISSUER, "audience": ""}, "audience"),
    "negative ttl": ({"issuer": ISSUER, "jwks_ttl": -5}, "jwks_ttl"),
    "zero timeout": ({"issuer": ISSUER, "http_timeout": 0}, "http_timeout"),
    "negative cache size": ({"issuer": ISSUER, "token_cache_size": -1}, "token_cache_size"),
    "tiny max_token_bytes": ({"issuer": ISSUER, "max_token_bytes": 10}, "max_token_bytes"),
    "legacy_claims not a bool": ({"issuer": ISSUER, "legacy_claims": "no"}, "legacy_claims"),
    "clock not callable": ({"issuer": ISSUER, "clock": 5}, "clock"),
    "http_client of the wrong kind": ({"issuer": ISSUER, "http_client": object()}, "http_client"),
    "resource not a URL": ({"issuer": ISSUER, "resource": "my-api"}, "resource"),
}


@pytest.mark.parametrize(("options", "message"), INVALID.values(), ids=INVALID.keys())
def test_bad_options_fail_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Guard(**options)


@pytest.mark.parametrize("jwks_uri", ["http://127.0.0.1:8000/.well-known/jwks.json",
                                      "http://localhost/.well-known/jwks.json",
                                      "http://[::1]:80/.well-known/jwks.json"])
def test_plain_http_is_allowed_on_loopback(jwks_uri: str) -> None:
    assert Guard(jwks_uri=jwks_uri).config.jwks_uri == jwks_uri


def test_plain_http_elsewhere_needs_allow_http() -> None:
    guard = Guard(issuer="http://auth.internal:3001", allow_http=True)
    assert guard.config.jwks_uri == "http://auth.internal:3001/.well-known/jwks.json"


def test_nothing_is_fetched_at_construction() -> None:
    guard = Guard(jwks_uri="http://127.0.0.1:9/.well-known/jwks.json")
    assert guard.keys.fetch_count == 0


def test_from_settings_maps_upper_case_keys() -> None:
    guard = Guard.from_settings({"ISSUER": ISSUER, "AUDIENCE": "https://api.example",
                                 "LEEWAY": 10, "MAX_DELEGATION_DEPTH": 1})
    assert guard.config.audience == ("https://api.example",)
    assert guard.config.leeway == 10
    assert guard.config.max_delegation_depth == 1


@pytest.mark.parametrize(("key", "hint"), [("AUDIANCE", "AUDIENCE"), ("issuer", "ISSUER"),
                                           ("REFRESH", None)])
def test_from_settings_names_an_unknown_key(key: str, hint: str | None) -> None:
    with pytest.raises(ValueError, match=key) as caught:
        Guard.from_settings({"ISSUER": ISSUER, key: "x"})
    if hint:
        assert f"did you mean '{hint}'" in str(caught.value)


def test_from_settings_validates_values_like_the_constructor() -> None:
    with pytest.raises(ValueError, match="leeway"):
        Guard.from_settings({"ISSUER": ISSUER, "LEEWAY": -3})


def test_guard_accepts_exactly_the_config_options() -> None:
    parameters = list(inspect.signature(Guard.__init__).parameters)[1:]
    assert parameters == list(GuardConfig.option_names())
