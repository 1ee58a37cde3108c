"""The verification pipeline, end to end through Guard.verify / verify_async."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from grantex_guard import (
    DelegationDenied,
    Grant,
    GrantexUnavailable,
    Guard,
    GuardError,
    InsufficientScope,
    TokenExpired,
    TokenInvalid,
)
from grantex_guard.jose import b64url_encode
from grantex_guard.testing import LocalIssuer, SigningKey, unverified_claims

from .conftest import API, NOW, FakeClock

SCOPES = ["calendar:read", "payments:initiate:max_500"]


def resign(issuer: LocalIssuer, token: str, header: dict[str, Any] | None = None,
           **claims: Any) -> str:
    """The same token with claims changed (a value of ... deletes one), signed by the issuer."""
    payload = unverified_claims(token)
    for keyword, value in claims.items():
        name = keyword.replace("__", ":")
        if value is ...:
            payload.pop(name, None)
        else:
            payload[name] = value
    head = json.loads(base64.urlsafe_b64decode(token.split(".", maxsplit=1)[0] + "=="))
    head.update(header or {})
    return issuer.key.compact(head, payload)


def raw_token(header: bytes, payload: bytes, signature: bytes = b"sig") -> str:
    return ".".join(b64url_encode(part) for part in (header, payload, signature))


# -- what is accepted ---------------------------------------------------------------


@pytest.mark.parametrize("shape", ["standard", "dual", "v1"])
def test_every_token_shape_verifies_with_both_algorithms(alg: str, shape: str,
                                                         clock: FakeClock) -> None:
    issuer = LocalIssuer(alg, shape, clock=clock)  # type: ignore[arg-type]
    token = issuer.mint(SCOPES, audience=API)

    grant = issuer.guard(audience=API).verify(token, scopes=["calendar:read"])

    assert grant.token_format == shape
    assert grant.scopes == tuple(SCOPES)
    assert grant.audience == (API,)


def test_standard_token_fills_every_grant_field(issuer: LocalIssuer) -> None:
    guard = issuer.guard(audience=API, proof_of_possession="off")  # the binding is only read here
    token = issuer.mint(SCOPES, audience=API, principal_id="user_alice", agent="did:grantex:ag_A",
                        budget=(Decimal("400.50"), "EUR"), bound_to="thumb", grant_id="grnt_1")
    claims = unverified_claims(token)

    grant = guard.verify(token)

    assert grant.token_id == claims["jti"]
    assert grant.grant_id == "grnt_1"
    assert grant.principal_id == "user_alice"
    assert grant.agent_did == "did:grantex:ag_A"
    assert grant.client_id == "ag_A"
    assert grant.developer_id == issuer.developer_id
    assert grant.issuer == issuer.issuer
    assert grant.issued_at == datetime.fromtimestamp(NOW, timezone.utc)
    assert grant.expires_at == datetime.fromtimestamp(NOW + 3600, timezone.utc)
    assert grant.expires_at.tzinfo is timezone.utc
    assert grant.key_thumbprint == "thumb"
    assert grant.budget is not None and grant.budget.amount == Decimal("400.5")
    assert grant.budget.currency == "EUR"
    assert grant.authorization_details[0]["currency"] == "EUR"
    assert grant.delegation_depth == 0 and not grant.is_delegated
    assert grant.delegation_chain == () and grant.parent_agent_did is None
    assert grant.legacy_claims_used == ()
    assert grant.claims["jti"] == claims["jti"]


def test_v1_token_reports_the_legacy_claims_it_was_read_from(clock: FakeClock) -> None:
    issuer = LocalIssuer(token_format="v1", clock=clock)
    grant = issuer.guard().verify(issuer.mint(SCOPES, budget=(25, "USD")))

    assert grant.token_format == "v1"
    assert grant.client_id is None
    assert set(grant.legacy_claims_used) >= {"agt", "dev", "scp", "grnt", "bdg"}
    assert grant.budget is not None and grant.budget.amount == 25


def test_grant_id_falls_back_to_the_token_id(issuer: LocalIssuer, guard: Guard) -> None:
    token = issuer.mint(audience=API)
    claims = unverified_claims(token)
    del claims["urn:grantex:grant"]["grant_id"]

    grant = guard.verify(issuer.key.compact({"alg": "RS256", "kid": issuer.key.kid}, claims))

    assert grant.grant_id == claims["jti"]


def test_dual_token_with_a_whitespace_scope_reads_scp(clock: FakeClock) -> None:
    issuer = LocalIssuer(token_format="dual", clock=clock)
    token = issuer.mint(["calendar:read", "notes:write:label=a b"])
    assert "scope" not in unverified_claims(token)

    grant = issuer.guard().verify(token)

    assert grant.scopes == ("calendar:read", "notes:write:label=a b")
    assert grant.legacy_claims_used == ("scp",)


@pytest.mark.parametrize(
    ("shape", "scopes", "accepted"),
    [
        ("standard", ["calendar:read"], True),
        ("dual", ["calendar:read"], False),
        ("dual", ["notes:write:label=a b"], False),
        ("v1", ["calendar:read"], False),
    ],
)
def test_strict_mode_accepts_only_standard_claims(shape: str, scopes: list[str], accepted: bool,
                                                  clock: FakeClock) -> None:
    issuer = LocalIssuer(token_format=shape, clock=clock)  # type: ignore[arg-type]
    guard = issuer.guard(legacy_claims=False)
    token = issuer.mint(scopes)
    if accepted:
        assert guard.verify(token).token_format == "standard"
    else:
        with pytest.raises(TokenInvalid):
            guard.verify(token)


def test_strict_mode_requires_the_at_jwt_type(issuer: LocalIssuer) -> None:
    guard = issuer.guard(legacy_claims=False)
    with pytest.raises(TokenInvalid, match="not a grant token"):
        guard.verify(issuer.mint(header={"typ": "JWT"}))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt"])
def test_lenient_mode_accepts_the_grant_token_types(issuer: LocalIssuer, typ: str) -> None:
    assert issuer.guard().verify(issuer.mint(header={"typ": typ})).token_id


def test_delegated_tokens_expose_the_chain_most_recent_first(issuer: LocalIssuer,
                                                             guard: Guard) -> None:
    root = issuer.mint(SCOPES, agent="did:grantex:ag_ROOT", audience=API)
    child = issuer.mint(SCOPES, agent="did:grantex:ag_CHILD", delegated_from=root, audience=API)
    grandchild = issuer.mint(["calendar:read"], agent="did:grantex:ag_GRAND",
                             delegated_from=child, audience=API)

    grant = guard.verify(grandchild)

    assert grant.delegation_depth == 2 and grant.is_delegated
    assert grant.delegation_chain == ("did:grantex:ag_CHILD", "did:grantex:ag_ROOT")
    assert grant.parent_agent_did == "did:grantex:ag_CHILD"
    assert grant.parent_grant_id == guard.verify(child).grant_id


async def test_verify_async_gives_the_same_grant(issuer: LocalIssuer) -> None:
    token = issuer.mint(SCOPES, audience=API)
    sync_grant = issuer.guard(audience=API).verify(token)

    async_grant = await issuer.guard(audience=API).verify_async(token, scopes=["calendar:read"])

    assert async_grant.token_id == sync_grant.token_id
    assert async_grant.scopes == sync_grant.scopes


async def test_verify_async_rejects_like_verify(issuer: LocalIssuer, guard: Guard) -> None:
    with pytest.raises(InsufficientScope):
        await guard.verify_async(issuer.mint(audience=API), scopes=["calendar:write"])


# -- header and signature -------------------------------------------------------------


def _unsigned(issuer: LocalIssuer, alg: object) -> str:
    header = json.dumps({"alg": alg, "kid": issuer.key.kid}).encode()
    payload = base64.urlsafe_b64decode(issuer.mint(audience=API).split(".")[1] + "==")
    return raw_token(header, payload, b"")


def _hs256_with_public_key(issuer: LocalIssuer) -> str:
    """Key confusion: HMAC keyed with the RSA public key the verifier knows."""
    from cryptography.hazmat.primitives import serialization

    secret = issuer.key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64url_encode(json.dumps({"alg": "HS256", "kid": issuer.key.kid}).encode())
    payload = issuer.mint(audience=API).split(".")[1]
    signing_input = f"{header}.{payload}".encode()
    return f"{header}.{payload}." + b64url_encode(hmac.new(secret, signing_input, hashlib.sha256).digest())


def _es256_naming_the_rsa_kid(issuer: LocalIssuer) -> str:
    ec_key = SigningKey("ES256")
    return issuer.mint(audience=API, signing_key=ec_key, kid=issuer.key.kid)


def _tampered(issuer: LocalIssuer) -> str:
    header, _, signature = issuer.mint(audience=API).split(".")
    forged = issuer.mint(["admin:all"], audience=API).split(".")[1]
    return f"{header}.{forged}.{signature}"


HEADER_ATTACKS: dict[str, Callable[[LocalIssuer], str]] = {
    "alg none": lambda issuer: _unsigned(issuer, "none"),
    "alg NONE": lambda issuer: _unsigned(issuer, "NONE"),
    "alg null": lambda issuer: _unsigned(issuer, None),
    "alg missing": lambda issuer: issuer.mint(audience=API, header={"alg": None}),
    "alg HS256 keyed with the public key": _hs256_with_public_key,
    "alg PS256": lambda issuer: issuer.mint(audience=API, header={"alg": "PS256"}),
    "alg EdDSA": lambda issuer: issuer.mint(audience=API, header={"alg": "EdDSA"}),
    "alg RS512": lambda issuer: issuer.mint(audience=API, header={"alg": "RS512"}),
    "ES256 token naming an RSA kid": _es256_naming_the_rsa_kid,
    "typ decision+jwt": lambda issuer: issuer.mint(audience=API, header={"typ": "decision+jwt"}),
    "typ dpop+jwt": lambda issuer: issuer.mint(audience=API, header={"typ": "dpop+jwt"}),
    "typ vc+sd-jwt": lambda issuer: issuer.mint(audience=API, header={"typ": "vc+sd-jwt"}),
    "typ agent-key-proof+jwt": lambda issuer: issuer.mint(
        audience=API, header={"typ": "agent-key-proof+jwt"}),
    "typ not a string": lambda issuer: issuer.mint(audience=API, header={"typ": 7}),
    "crit header": lambda issuer: issuer.mint(audience=API, header={"crit": ["exp"]}),
    "kid not a string": lambda issuer: issuer.mint(audience=API, header={"kid": 12}),
    "kid huge": lambda issuer: issuer.mint(audience=API, kid="k" * 5000),
    "kid unknown": lambda issuer: issuer.mint(audience=API, kid="grantex-unknown"),
    "signed by a foreign key under our kid": lambda issuer: issuer.mint(
        audience=API, signing_key=SigningKey("RS256"), kid=issuer.key.kid),
    "payload tampered after signing": _tampered,
}


@pytest.mark.parametrize("make_token", HEADER_ATTACKS.values(), ids=HEADER_ATTACKS.keys())
def test_hostile_header_or_signature_is_refused(issuer: LocalIssuer, guard: Guard,
                                                make_token: Callable[[LocalIssuer], str]) -> None:
    with pytest.raises(TokenInvalid) as caught:
        guard.verify(make_token(issuer))
    assert type(caught.value) is TokenInvalid
    assert caught.value.status == 401


def test_algorithms_can_be_narrowed(clock: FakeClock) -> None:
    issuer = LocalIssuer("ES256", clock=clock)
    with pytest.raises(TokenInvalid, match="algorithm"):
        issuer.guard(algorithms=("RS256",)).verify(issuer.mint())


MALFORMED = {
    "two parts": "a.b",
    "five parts (JWE)": "a.b.c.d.e",
    "empty": "",
    "padding": raw_token(b'{"alg":"RS256"}', b"{}") + "==",
    "non-base64url characters": "eyJ+.eyJ/.abc",
    "header not JSON": raw_token(b"not json", b"{}"),
    "header a JSON array": raw_token(b'["RS256"]', b"{}"),
    "header with duplicate alg": raw_token(b'{"alg":"none","alg":"RS256"}', b"{}"),
    "header deeply nested": raw_token(b'{"x":' + b"[" * 3000 + b"]" * 3000 + b', "alg":"RS256"}',
                                      b"{}"),
    "header NaN": raw_token(b'{"alg":"RS256","n":NaN}', b"{}"),
    "non-ASCII": "eyJhbGciOiJSUzI1NiJ9.é.abc",
}


@pytest.mark.parametrize("token", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_tokens_are_refused(guard: Guard, token: str) -> None:
    with pytest.raises(TokenInvalid):
        guard.verify(token)


@pytest.mark.parametrize("token", [None, b"abc.def.ghi", 42])
def test_a_token_that_is_not_a_string_is_refused(guard: Guard, token: Any) -> None:
    with pytest.raises(TokenInvalid):
        guard.verify(token)


def test_oversized_token_is_refused_before_any_decoding(issuer: LocalIssuer) -> None:
    guard = issuer.guard(max_token_bytes=1024)
    with pytest.raises(TokenInvalid, match="too large"):
        guard.verify("!" * 1025)  # not base64url either: the size check must come first
    assert issuer.jwks_hits == 0


def test_duplicate_claims_in_a_signed_payload_are_refused(issuer: LocalIssuer,
                                                          guard: Guard) -> None:
    claims = json.dumps(unverified_claims(issuer.mint(audience=API)))
    payload = (claims[:-1] + ', "sub": "user_mallory"}').encode()
    token = issuer.key.compact({"alg": "RS256", "kid": issuer.key.kid, "typ": "at+jwt"}, payload)
    with pytest.raises(TokenInvalid):
        guard.verify(token)


def test_a_token_without_kid_uses_the_only_key(issuer: LocalIssuer, guard: Guard) -> None:
    token = issuer.mint(audience=API, header={"kid": None})
    assert guard.verify(token).token_id


# -- time -------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds_after_exp", "expired"), [(0, False), (30, False), (31, True)])
def test_expiry_allows_the_leeway_only(issuer: LocalIssuer, clock: FakeClock,
                                       seconds_after_exp: int, expired: bool) -> None:
    guard = issuer.guard(audience=API)
    token = issuer.mint(audience=API, expires_in=60)
    clock.advance(60 + seconds_after_exp)
    if expired:
        with pytest.raises(TokenExpired) as caught:
            guard.verify(token)
        assert caught.value.code == "TOKEN_EXPIRED"
    else:
        assert guard.verify(token)


def test_expired_detail_says_how_long_ago(issuer: LocalIssuer, guard: Guard,
                                          clock: FakeClock) -> None:
    token = issuer.mint(audience=API, expires_in=60)
    clock.advance(3 * 3600 + 60)
    with pytest.raises(TokenExpired, match="expired 3 h ago"):
        guard.verify(token)


def test_a_cached_token_still_expires(issuer: LocalIssuer, guard: Guard, clock: FakeClock) -> None:
    token = issuer.mint(audience=API, expires_in=120)
    guard.verify(token)
    clock.advance(120 + 31)
    with pytest.raises(TokenExpired):
        guard.verify(token)


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        ({"iat": int(NOW) + 120}, "future"),
        ({"nbf": int(NOW) + 120}, "not valid yet"),
    ],
    ids=["iat in the future", "nbf in the future"],
)
def test_tokens_from_the_future_are_refused(issuer: LocalIssuer, guard: Guard,
                                            claims: dict[str, int], match: str) -> None:
    with pytest.raises(TokenInvalid, match=match):
        guard.verify(resign(issuer, issuer.mint(audience=API), **claims))


# -- issuer and audience ------------------------------------------------------------------


@pytest.mark.parametrize("iss", ["https://evil.example", "https://issuer.grantex.test/", ...,
                                 ["https://issuer.grantex.test"]])
def test_issuer_must_match_exactly(issuer: LocalIssuer, guard: Guard, iss: Any) -> None:
    with pytest.raises(TokenInvalid, match="issuer"):
        guard.verify(resign(issuer, issuer.mint(audience=API), iss=iss))


AUDIENCE_TABLE = [
    # configured, token aud, per-call override, accepted
    (API, API, None, True),
    (API, [API, "https://other.example"], None, True),
    ([API, "https://alias.example"], "https://alias.example", None, True),
    (API, None, None, False),
    (API, "https://other.example", None, False),
    (API, "https://API.example.com", None, False),
    (API, API + "/v1", None, False),
    (API, "https://api.example", None, False),
    (None, None, None, True),
    (None, API, None, False),
    (None, API, API, True),
    (API, "https://other.example", "https://other.example", True),
    (API, API, "https://other.example", False),
]


@pytest.mark.parametrize(("configured", "aud", "override", "accepted"), AUDIENCE_TABLE)
def test_audience_policy(issuer: LocalIssuer, configured: Any, aud: Any, override: str | None,
                         accepted: bool) -> None:
    guard = issuer.guard(audience=configured)
    token = issuer.mint(audience=aud)
    if accepted:
        assert guard.verify(token, audience=override)
    else:
        with pytest.raises(TokenInvalid):
            guard.verify(token, audience=override)


def test_audience_check_off_ignores_aud(issuer: LocalIssuer) -> None:
    guard = issuer.guard(audience_check="off")
    assert guard.verify(issuer.mint(audience="https://anything.example"))


# -- claims -----------------------------------------------------------------------------------

NULLABLE = ["sub", "jti", "iat", "exp", "aud", "iss", "scope", "client_id", "cnf", "act",
            "authorization_details", "urn:grantex:grant"]


@pytest.mark.parametrize("claim", NULLABLE)
def test_a_claim_present_with_null_is_invalid(issuer: LocalIssuer, claim: str) -> None:
    guard = issuer.guard(audience=API, proof_of_possession="off")
    payload = unverified_claims(issuer.mint(audience=API, bound_to="t"))
    payload[claim] = None
    with pytest.raises(TokenInvalid):
        guard.verify(issuer.key.compact({"alg": "RS256", "kid": issuer.key.kid}, payload))


@pytest.mark.parametrize("member", ["agent_did", "developer_id", "grant_id", "delegation_depth"])
def test_a_null_grant_member_is_invalid(issuer: LocalIssuer, guard: Guard, member: str) -> None:
    payload = unverified_claims(issuer.mint(audience=API))
    payload["urn:grantex:grant"][member] = None
    with pytest.raises(TokenInvalid):
        guard.verify(issuer.key.compact({"alg": "RS256", "kid": issuer.key.kid}, payload))


GRANT_MEMBER = "urn__grantex__grant"
WRONG_TYPES: dict[str, dict[str, Any]] = {
    "exp as string": {"exp": str(int(NOW) + 60)},
    "exp as float": {"exp": NOW + 60.5},
    "exp as bool": {"exp": True},
    "exp huge": {"exp": 10**30},
    "iat missing": {"iat": ...},
    "exp missing": {"exp": ...},
    "sub missing": {"sub": ...},
    "sub empty": {"sub": ""},
    "jti missing": {"jti": ...},
    "jti number": {"jti": 7},
    "client_id missing": {"client_id": ...},
    "client_id empty": {"client_id": ""},
    "scope as a list": {"scope": ["calendar:read"]},
    "scope with double space": {"scope": "calendar:read  email:send"},
    "scope missing": {"scope": ...},
    "aud number": {"aud": 5},
    "aud empty list": {"aud": []},
    "aud list with number": {"aud": [API, 5]},
    "cnf not an object": {"cnf": "thumb"},
    "cnf.jkt number": {"cnf": {"jkt": 5}},
    "act not an object": {"act": "did:grantex:ag_X"},
    "act without sub": {"act": {"act": {"sub": "did:grantex:ag_X"}}},
    "act with empty sub": {"act": {"sub": ""}},
    "act eleven deep": {"act": json.loads('{"sub":"a","act":' * 10 + '{"sub":"b"}' + "}" * 10)},
    "authorization_details an object": {"authorization_details": {"type": "x"}},
    "authorization_details item without type": {"authorization_details": [{"amount": 5}]},
    "budget amount a string": {"authorization_details": [
        {"type": "urn:grantex:params:oauth:authorization-details:budget", "amount": "5"}]},
    "budget amount negative": {"authorization_details": [
        {"type": "urn:grantex:params:oauth:authorization-details:budget", "amount": -5}]},
    "grant claim not an object": {GRANT_MEMBER: "grnt_1"},
}


@pytest.mark.parametrize("changes", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_claims_of_the_wrong_type_are_invalid(issuer: LocalIssuer, guard: Guard,
                                              changes: dict[str, Any]) -> None:
    with pytest.raises(TokenInvalid):
        guard.verify(resign(issuer, issuer.mint(audience=API), **changes))


GRANT_MEMBER_TYPES: dict[str, tuple[str, Any]] = {
    "agent_did missing": ("agent_did", ...),
    "agent_did number": ("agent_did", 5),
    "developer_id empty": ("developer_id", ""),
    "depth negative": ("delegation_depth", -1),
    "depth float": ("delegation_depth", 1.0),
    "depth bool": ("delegation_depth", True),
    "depth eleven": ("delegation_depth", 11),
    "depth string": ("delegation_depth", "1"),
}


@pytest.mark.parametrize(("member", "value"), GRANT_MEMBER_TYPES.values(),
                         ids=GRANT_MEMBER_TYPES.keys())
def test_grant_members_of_the_wrong_type_are_invalid(issuer: LocalIssuer, guard: Guard,
                                                     member: str, value: Any) -> None:
    payload = unverified_claims(issuer.mint(audience=API))
    if value is ...:
        del payload["urn:grantex:grant"][member]
    else:
        payload["urn:grantex:grant"][member] = value
    with pytest.raises(TokenInvalid):
        guard.verify(issuer.key.compact({"alg": "RS256", "kid": issuer.key.kid}, payload))


V1_WRONG_TYPES: dict[str, dict[str, Any]] = {
    "scp a string": {"scp": "calendar:read"},
    "scp with a number": {"scp": ["calendar:read", 5]},
    "scp with an empty string": {"scp": [""]},
    "agt missing": {"agt": ...},
    "dev missing": {"dev": ...},
    "delegationDepth bool": {"delegationDepth": False},
    "bdg a string": {"bdg": "5"},
    "depth without parent": {"delegationDepth": 1},
    "parent without depth": {"parentGrnt": "grnt_parent"},
}


@pytest.mark.parametrize("changes", V1_WRONG_TYPES.values(), ids=V1_WRONG_TYPES.keys())
def test_v1_claims_of_the_wrong_type_are_invalid(clock: FakeClock, changes: dict[str, Any]) -> None:
    issuer = LocalIssuer(token_format="v1", clock=clock)
    with pytest.raises(TokenInvalid):
        issuer.guard().verify(resign(issuer, issuer.mint(), **changes))


def test_a_principal_session_token_is_not_a_grant(issuer: LocalIssuer, guard: Guard) -> None:
    session = {"iss": issuer.issuer, "sub": "user_alice", "dev": "dev_1",
               "purpose": "principal_dashboard", "iat": int(NOW), "exp": int(NOW) + 60}
    with pytest.raises(TokenInvalid, match="not a grant token"):
        guard.verify(issuer.key.compact({"alg": "RS256", "kid": issuer.key.kid}, session))


DISAGREEING_ALIASES = {
    "agt": "did:grantex:ag_OTHER",
    "dev": "dev_OTHER",
    "grnt": "grnt_OTHER",
    "scp": ["admin:all"],
    "parentAgt": "did:grantex:ag_OTHER",
    "parentGrnt": "grnt_OTHER",
    "delegationDepth": 2,
    "bdg": 999,
}


@pytest.mark.parametrize(("alias", "value"), DISAGREEING_ALIASES.items(),
                         ids=DISAGREEING_ALIASES.keys())
def test_dual_token_whose_alias_disagrees_is_invalid(clock: FakeClock, alias: str,
                                                     value: Any) -> None:
    issuer = LocalIssuer(token_format="dual", clock=clock)
    parent = issuer.mint(SCOPES)
    token = issuer.mint(SCOPES, delegated_from=parent, budget=(100, "EUR"))
    guard = issuer.guard()
    assert guard.verify(token).token_format == "dual"
    with pytest.raises(TokenInvalid, match="disagrees"):
        guard.verify(resign(issuer, token, **{alias: value}))


# -- delegation --------------------------------------------------------------------------------


def _chain(issuer: LocalIssuer, depth: int) -> str:
    token = issuer.mint(SCOPES, audience=API)
    for _ in range(depth):
        token = issuer.mint(SCOPES, audience=API, delegated_from=token)
    return token


@pytest.mark.parametrize(("depth", "limit", "allowed"),
                         [(0, 0, True), (1, 0, False), (3, 3, True), (4, 3, False), (10, 10, True)])
def test_delegation_depth_limit(issuer: LocalIssuer, depth: int, limit: int, allowed: bool) -> None:
    guard = issuer.guard(audience=API, max_delegation_depth=limit)
    token = _chain(issuer, depth)
    if allowed:
        assert guard.verify(token).delegation_depth == depth
    else:
        with pytest.raises(DelegationDenied) as caught:
            guard.verify(token)
        assert caught.value.status == 403
        assert caught.value.code == "DELEGATION_DENIED"


# -- scopes through verify ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "any_scopes", "allowed"),
    [
        (["calendar:read"], [], True),
        (["payments:initiate:max_500"], [], True),
        (["payments:initiate:max_501"], [], False),
        (["payments:initiate"], [], False),
        ([], ["email:send", "calendar:read"], True),
        ([], ["email:send", "files:write"], False),
        (["calendar:read"], ["email:send"], False),
    ],
)
def test_route_scopes_are_enforced(issuer: LocalIssuer, guard: Guard, scopes: list[str],
                                   any_scopes: list[str], allowed: bool) -> None:
    token = issuer.mint(SCOPES, audience=API)
    if allowed:
        assert guard.verify(token, scopes=scopes, any_scopes=any_scopes)
    else:
        with pytest.raises(InsufficientScope) as caught:
            guard.verify(token, scopes=scopes, any_scopes=any_scopes)
        assert caught.value.status == 403


def test_malformed_route_scopes_raise_value_error(issuer: LocalIssuer, guard: Guard) -> None:
    with pytest.raises(ValueError, match="max_1e3"):
        guard.verify(issuer.mint(audience=API), scopes=["payments:initiate:max_1e3"])


def test_a_scope_string_instead_of_a_list_is_a_type_error(issuer: LocalIssuer,
                                                          guard: Guard) -> None:
    with pytest.raises(TypeError):
        guard.verify(issuer.mint(audience=API), scopes="calendar:read")


# -- the verified-token cache ---------------------------------------------------------------------


def test_a_cached_token_is_rechecked_for_each_routes_scopes(issuer: LocalIssuer,
                                                            guard: Guard) -> None:
    token = issuer.mint(["calendar:read"], audience=API)
    guard.verify(token, scopes=["calendar:read"])
    with pytest.raises(InsufficientScope):
        guard.verify(token, scopes=["calendar:write"])


def test_a_cached_token_is_rechecked_for_the_audience(issuer: LocalIssuer, guard: Guard) -> None:
    token = issuer.mint(audience=API)
    guard.verify(token)
    with pytest.raises(TokenInvalid):
        guard.verify(token, audience="https://other.example")


def test_the_token_cache_is_bounded_and_keyed_by_hash(issuer: LocalIssuer) -> None:
    guard = issuer.guard(audience=API, token_cache_size=3)
    tokens = [issuer.mint(audience=API) for _ in range(10)]
    for token in tokens:
        guard.verify(token)
    cache = guard._cache
    assert cache is not None and len(cache) == 3
    assert all(isinstance(key, bytes) and len(key) == 32 for key in cache)
    assert not any(token.encode() in key for key in cache for token in tokens)


def test_cache_entries_never_outlive_the_jwks_ttl(issuer: LocalIssuer, clock: FakeClock) -> None:
    guard = issuer.guard(audience=API, jwks_ttl=60)
    token = issuer.mint(audience=API, expires_in=3600)
    guard.verify(token)
    assert guard._cached(token)[1] is not None
    clock.advance(61)
    assert guard._cached(token)[1] is None


def test_a_key_removed_by_rotation_evicts_tokens_it_verified(issuer: LocalIssuer, guard: Guard,
                                                             clock: FakeClock) -> None:
    old_token = issuer.mint(audience=API, expires_in=7200)
    guard.verify(old_token)
    issuer.rotate_key()
    clock.advance(31)  # past the refetch cooldown
    guard.verify(issuer.mint(audience=API))  # unknown kid: one refetch, the old key is gone

    with pytest.raises(TokenInvalid):
        guard.verify(old_token)
    assert issuer.jwks_hits == 2


def test_cache_size_zero_disables_the_cache(issuer: LocalIssuer) -> None:
    guard = issuer.guard(audience=API, token_cache_size=0)
    token = issuer.mint(audience=API)
    assert guard.verify(token) is not guard.verify(token)


# -- unavailability and logging -------------------------------------------------------------------


def test_unreachable_jwks_is_a_503_not_a_401(issuer: LocalIssuer) -> None:
    guard = Guard(issuer=issuer.issuer, jwks_uri="http://127.0.0.1:9/.well-known/jwks.json",
                  http_timeout=0.5)
    with pytest.raises(GrantexUnavailable) as caught:
        guard.verify(issuer.mint())
    assert caught.value.status == 503
    assert caught.value.headers()["Retry-After"].isdigit()


def test_rejections_are_logged_with_detail_but_never_the_token(
        issuer: LocalIssuer, guard: Guard, caplog: pytest.LogCaptureFixture) -> None:
    token = issuer.mint(audience="https://other.example")
    caplog.set_level(logging.DEBUG, logger="grantex_guard")
    with pytest.raises(GuardError) as caught:
        guard.verify(token)
    assert "https://other.example" in caplog.text
    for part in token.split("."):
        assert part not in caplog.text
        assert part not in str(caught.value)
        assert part not in json.dumps(caught.value.to_dict())


@pytest.mark.parametrize("path", ["sync", "async"])
def test_every_accepted_use_is_logged_with_its_jti_but_never_the_token(
        path: str, issuer: LocalIssuer, guard: Guard, caplog: pytest.LogCaptureFixture) -> None:
    token = issuer.mint(audience=API)
    caplog.set_level(logging.DEBUG, logger="grantex_guard")
    for _ in range(2):  # the second use comes from the token cache and is logged too
        grant = guard.verify(token) if path == "sync" else asyncio.run(guard.verify_async(token))
    accepted = [record.getMessage() for record in caplog.records if "accepted" in record.getMessage()]
    assert len(accepted) == 2
    assert all(f"jti={grant.token_id}" in line and grant.grant_id in line for line in accepted)
    for part in token.split("."):
        assert part not in caplog.text


def test_grant_is_frozen(issuer: LocalIssuer, guard: Guard) -> None:
    grant = guard.verify(issuer.mint(audience=API))
    assert isinstance(grant, Grant)
    with pytest.raises(AttributeError):
        grant.principal_id = "user_mallory"  # type: ignore[misc]
    with pytest.raises(TypeError):
        grant.claims["sub"] = "user_mallory"  # type: ignore[index]


@pytest.mark.parametrize("shape", ["standard", "dual", "v1"])
def test_the_pipeline_fills_exactly_the_grant_fields(clock: FakeClock, shape: str) -> None:
    issuer = LocalIssuer(token_format=shape, clock=clock)  # type: ignore[arg-type]
    grant = issuer.guard().verify(issuer.mint(SCOPES))
    assert set(vars(grant)) == {field.name for field in dataclasses.fields(Grant)}


def test_a_grant_can_be_built_directly_for_tests() -> None:
    when = datetime.fromtimestamp(NOW, timezone.utc)
    grant = Grant(token_id="tok_1", grant_id="grnt_1", principal_id="user_1", agent_did="did:grantex:ag_1",
                  client_id="ag_1", developer_id="dev_1", scopes=("payments:initiate:max_50",),
                  issued_at=when, expires_at=when, issuer="https://issuer.example", audience=(),
                  parent_agent_did=None, parent_grant_id=None, delegation_depth=0,
                  delegation_chain=(), key_thumbprint=None, budget=None, authorization_details=(),
                  token_format="standard", legacy_claims_used=(), claims={})
    assert grant.has("payments:initiate", amount=50)
    with pytest.raises(InsufficientScope):
        grant.require("payments:initiate", amount=51)
