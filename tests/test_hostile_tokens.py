"""Hostile grant tokens, table-driven, through Guard.verify, verify_async and two real adapters.

Every case is a token an attacker (or a broken issuer) can send; each must end in the
documented 401/403 with the JSON body and challenge, never a 500, and the token must
never appear in a response or a log line. The keys are real; the JWKS is served over
HTTP on 127.0.0.1 and holds the issuer's RS256 and ES256 keys plus a P-384 key that
claims to be an ES256 key (a broken JWKS). A second server plays an attacker's JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from types import FrameType
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from grantex_guard import Grant, Guard, GuardError
from grantex_guard.jose import b64url_decode, b64url_encode
from grantex_guard.scopes import ScopeSet
from grantex_guard.testing import LocalIssuer, SigningKey, unverified_claims

from . import matrix
from .adapter_apps import Adapter, Answer, flask_test_client, starlette_test_client
from .conftest import NOW, FakeClock
from .jwks_server import JWKSServer, ec_key, jwks, public_jwk
from .test_hostile_proofs import jws_signature
from .vocabulary import B64URL, CLAIM_NAMES

API = "https://api.example.com"
ROUTE_SCOPES = {"/calendar": ["calendar:read"], "/payments": ["payments:initiate:max_1000"]}
STATUS = {"TOKEN_INVALID": 401, "TOKEN_EXPIRED": 401, "DPOP_REQUIRED": 401,
          "SCOPE_INSUFFICIENT": 403, "DELEGATION_DENIED": 403}
CHALLENGE = {"TOKEN_INVALID": matrix.INVALID, "TOKEN_EXPIRED": matrix.INVALID,
             "SCOPE_INSUFFICIENT": matrix.INSUFFICIENT, "DELEGATION_DENIED": matrix.INSUFFICIENT,
             "DPOP_REQUIRED": "DPoP "}


@dataclass
class World:
    """Everything a hostile token is built from: the real keys and the attacker's."""

    clock: FakeClock
    issuer: LocalIssuer
    es_key: SigningKey
    p384_key: ec.EllipticCurvePrivateKey
    attacker: SigningKey
    attacker_jwks: JWKSServer
    jwks: JWKSServer

    def mint(self, scopes: list[str] | None = None, **options: Any) -> str:
        options.setdefault("audience", API)
        return self.issuer.mint(scopes or ["calendar:read"], **options)

    def claims(self, **options: Any) -> dict[str, Any]:
        """The payload of a valid token, to alter and re-sign."""
        return unverified_claims(self.mint(**options))

    def header(self, **members: Any) -> dict[str, Any]:
        return {"alg": "RS256", "kid": self.issuer.key.kid, "typ": "at+jwt", **members}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    clock = FakeClock()
    issuer = LocalIssuer("RS256", clock=clock)
    es_key = SigningKey("ES256", kid="issuer-es256")
    p384_key = ec_key(ec.SECP384R1())
    attacker = SigningKey("RS256", kid="attacker-key")
    published = jwks(issuer.key.public_jwk, es_key.public_jwk,
                     public_jwk(p384_key, kid="p384-as-es256", alg="ES256"),
                     public_jwk(p384_key, kid="p384", alg=None))
    with JWKSServer(published) as server, JWKSServer(jwks(attacker.public_jwk)) as attacker_jwks:
        yield World(clock, issuer, es_key, p384_key, attacker, attacker_jwks, server)


# -- building blocks -------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def signed(w: World, header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes,
           key: SigningKey | None = None) -> str:
    return (key or w.issuer.key).compact(header, payload)


def with_claims(**changes: Any) -> Callable[[World], str]:
    """A valid token whose claims are changed (None deletes) and re-signed by the real key."""
    def make(w: World) -> str:
        return w.mint(claims=changes)
    return make


def with_header(**changes: Any) -> Callable[[World], str]:
    def make(w: World) -> str:
        return w.mint(header=changes)
    return make


def scoped(*scopes: str) -> Callable[[World], str]:
    def make(w: World) -> str:
        return w.mint(list(scopes))
    return make


def hs256_with(secret_of: Callable[[World], bytes]) -> Callable[[World], str]:
    """Key confusion: an HMAC keyed with public material the verifier holds."""
    def make(w: World) -> str:
        header = b64url_encode(dumps({"alg": "HS256", "kid": w.issuer.key.kid, "typ": "at+jwt"}))
        payload = w.mint().split(".")[1]
        signing_input = f"{header}.{payload}".encode()
        mac = hmac.new(secret_of(w), signing_input, hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url_encode(mac)}"
    return make


def _rsa_pem(w: World) -> bytes:
    return w.issuer.key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def unsigned(alg: Any, keep_signature: bool = False) -> Callable[[World], str]:
    def make(w: World) -> str:
        token = w.mint()
        header = b64url_encode(dumps({"alg": alg, "kid": w.issuer.key.kid, "typ": "at+jwt"}))
        _, payload, signature = token.split(".")
        return f"{header}.{payload}.{signature if keep_signature else ''}"
    return make


def attacker_signed(**header: Any) -> Callable[[World], str]:
    """Signed by the attacker's key, with headers pointing at the attacker's keys."""
    def make(w: World) -> str:
        members = {k: (v(w) if callable(v) else v) for k, v in header.items()}
        return w.mint(signing_key=w.attacker, kid=w.attacker.kid, header=members)
    return make


def p384_signed(kid: str) -> Callable[[World], str]:
    """An ES256-labelled token signed with a P-384 key (r||s of 48 bytes each)."""
    def make(w: World) -> str:
        header = b64url_encode(dumps({"alg": "ES256", "kid": kid, "typ": "at+jwt"}))
        payload = b64url_encode(dumps(w.claims()))
        signature = jws_signature(w.p384_key, f"{header}.{payload}".encode())
        return f"{header}.{payload}.{b64url_encode(signature)}"
    return make


def resigned(change: Callable[[dict[str, Any]], None]) -> Callable[[World], str]:
    def make(w: World) -> str:
        claims = w.claims()
        change(claims)
        return signed(w, w.header(), claims)
    return make


def resigned_text(change: Callable[[dict[str, Any]], None], old: bytes,
                  new: bytes) -> Callable[[World], str]:
    """Claims changed, then `old` replaced by `new` in their JSON text (JSON that json.dumps
    cannot write), signed by the real key."""
    def make(w: World) -> str:
        claims = w.claims()
        change(claims)
        text = dumps(claims)
        assert text.count(old) == 1, text
        return signed(w, w.header(), text.replace(old, new))
    return make


def token_of_length(w: World, length: int) -> str:
    """A valid token of exactly `length` characters: only its size can be wrong with it."""
    for extra in range(4):  # base64url never has a length of 4n+1: a header member shifts it
        header = {"x": "x" * extra}
        shortest = len(w.mint(claims={"pad": ""}, header=header))
        guess = (length - shortest) * 3 // 4
        for size in range(max(0, guess - 3), guess + 4):
            token = w.mint(claims={"pad": "x" * size}, header=header)
            if len(token) == length:
                return token
    raise AssertionError(f"no token of {length} characters")


def dual_with(**changes: Any) -> Callable[[World], str]:
    def make(w: World) -> str:
        parent = w.mint(["calendar:read"], token_format="dual")
        return w.mint(["calendar:read"], token_format="dual", delegated_from=parent,
                      budget=(100, "USD"), claims=changes)
    return make


def act_chain(depth: int, last_sub: Any = "did:grantex:ag_X") -> dict[str, Any]:
    act: dict[str, Any] = {"sub": last_sub}
    for index in range(depth - 1):
        act = {"sub": f"did:grantex:ag_{index}", "act": act}
    return act


def delegated(depth: int) -> Callable[[World], str]:
    def make(w: World) -> str:
        token = w.mint()
        for _ in range(depth):
            token = w.mint(delegated_from=token)
        return token
    return make


def _session_token(w: World) -> str:
    now = int(w.clock())
    return signed(w, {"alg": "RS256", "kid": w.issuer.key.kid, "typ": "JWT"},
                  {"iss": w.issuer.issuer, "sub": "user_1", "aud": API, "iat": now,
                   "exp": now + 600, "jti": "sess_1", "role": "owner", "email": "a@b.c"})


def _nested(w: World) -> str:
    inner = w.mint()
    return signed(w, w.header(cty="JWT"), inner.encode())


# The encoding rows below are signed over the exact text they send, so a decoder that let
# the trick through would accept the token: each is refused for its spelling alone (the
# `detail` says which check refused it), never for a broken signature.


def signed_as_spelled(w: World, header: str, payload: str,
                      spell_signature: Callable[[str], str] = lambda signature: signature) -> str:
    """Header and payload text as given, signed by the real key over exactly that text."""
    signature = b64url_encode(w.issuer.key.sign(f"{header}.{payload}".encode()))
    return f"{header}.{payload}.{spell_signature(signature)}"


def _unaligned(data: bytes) -> bytes:
    """The same JSON with a trailing space if needed, so its base64 needs padding."""
    return data + b" " if len(data) % 3 == 0 else data


def _padding(part: str) -> str:
    assert len(part) % 4 in (2, 3), part  # "=" or "==" is the padding a lenient decoder takes
    return part + "=" * (-len(part) % 4)


def _padded(w: World) -> str:
    header = _padding(b64url_encode(_unaligned(dumps(w.header()))))
    payload = _padding(b64url_encode(_unaligned(dumps(w.claims()))))
    return signed_as_spelled(w, header, payload, _padding)  # an RS256 signature is 256 bytes


def _padded_header(w: World) -> str:
    return signed_as_spelled(w, _padding(b64url_encode(_unaligned(dumps(w.header())))),
                             b64url_encode(dumps(w.claims())))


def _padded_payload(w: World) -> str:
    return signed_as_spelled(w, b64url_encode(dumps(w.header())),
                             _padding(b64url_encode(_unaligned(dumps(w.claims())))))


def _standard(part: str) -> str:
    respelled = part.translate(str.maketrans("-_", "+/"))
    assert respelled != part, part  # the part does use a character the alphabets spell apart
    return respelled


def _standard_b64(w: World) -> str:
    """Every part in the standard alphabet ("+/" for "-_"); "??????" encodes to a "_"."""
    header = _standard(b64url_encode(dumps(w.header(x="??????"))))
    for _ in range(100):  # until the signature holds a "-" or "_" (all but certain at once)
        payload = _standard(b64url_encode(dumps(w.claims(claims={"x": "??????"}))))
        signature = signed_as_spelled(w, header, payload).rsplit(".", 1)[1]
        if "-" in signature or "_" in signature:
            return f"{header}.{payload}.{_standard(signature)}"
    raise AssertionError("no signature used - or _")


def _respelled(part: str) -> str:
    """The same bytes spelled with the unused low bits of the last character set."""
    index = B64URL.index(part[-1])
    respelled = part[:-1] + B64URL[index | (0b1111 if len(part) % 4 == 2 else 0b11)]
    assert respelled != part and b64url_decode(part) == _lenient_b64decode(respelled)
    return respelled


def _lenient_b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _respelled_signature(w: World) -> str:
    header, payload, signature = w.mint().split(".")
    return f"{header}.{payload}.{_respelled(signature)}"


def _respelled_payload(w: World) -> str:
    payload = b64url_encode(_unaligned(dumps(w.claims())))  # ends mid-byte
    return signed_as_spelled(w, b64url_encode(dumps(w.header())), _respelled(payload))


def _tampered_payload(w: World) -> str:
    header, _, signature = w.mint().split(".")
    return f"{header}.{w.mint(['admin:all', 'calendar:read']).split('.')[1]}.{signature}"


def _huge_integer(w: World) -> bytes:
    claims = json.dumps(w.claims())
    return claims.replace('"exp": ', '"exp": ' + "9" * 4400 + ", \"x\": ", 1).encode()


def _deep_payload(w: World) -> bytes:
    return b'{"iss":"x","deep":' + b"[" * 2000 + b"]" * 2000 + b"}"


def v1_depth(value: Any) -> Callable[[World], str]:
    def make(w: World) -> str:
        return w.mint(token_format="v1", claims={"delegationDepth": value, "parentGrnt": "grnt_P"})
    return make


def grant_depth(value: Any) -> Callable[[World], str]:
    def change(claims: dict[str, Any]) -> None:
        claims[GRANT].update(delegation_depth=value, parent_grant_id="grnt_P")
    return resigned(change)


BUDGET = "urn:grantex:params:oauth:authorization-details:budget"
GRANT = "urn:grantex:grant"
assert GRANT in CLAIM_NAMES  # null is refused in every claim the verifier interprets


def _null_claim(name: str) -> Callable[[World], str]:
    def change(claims: dict[str, Any]) -> None:
        claims[name] = None
    return resigned(change)


def _null_grant_member(name: str) -> Callable[[World], str]:
    def change(claims: dict[str, Any]) -> None:
        claims[GRANT][name] = None
    return resigned(change)


DUAL_DISAGREEMENTS = {
    "agt": "did:grantex:ag_OTHER", "dev": "dev_OTHER", "grnt": "grnt_OTHER",
    "scp": ["calendar:read", "calendar:write"], "parentAgt": "did:grantex:ag_OTHER",
    "parentGrnt": "grnt_OTHER", "delegationDepth": 2, "bdg": 999,
}


@dataclass(frozen=True)
class Hostile:
    name: str
    make: Callable[[World], str]
    code: str | None  # None: the token is acceptable (a control case)
    path: str = "/calendar"
    # A substring of GuardError.detail naming the check that must refuse the token, so the
    # row cannot pass because another check refused it first. Through the adapters it is
    # looked for in the rejection log line (for scopes: in the response's message).
    detail: str | None = None


CAPPED = "payments:initiate:max_"
# max_ constraints outside the strict grammar `max_[0-9]+(.[0-9]+)?` (most of them numbers
# to Decimal() or float()): each is no limit at all, so it grants no amount.
ILL_FORMED_CAPS = (
    *(CAPPED + number for number in ("1e9", "NaN", "Infinity", "inf", "-5000", "+5000", "1_000_000",
                                     "\uff11\uff10\uff10\uff10", "\u0661\u0660\u0660\u0660",
                                     "1000e0", "0x1000", "1000.", ".5", "")),
    "payments:initiate:MAX_5000", "payments:initiate:max_5000:max_1")
# Leading zeros and long fractions are in the grammar: these are real caps, just below 1000.
CAPS_BELOW_1000 = {CAPPED + "0999": Decimal("999"),
                   CAPPED + "999." + "9" * 32: Decimal("999." + "9" * 32)}

INVALID, EXPIRED, SCOPE, DEEP = "TOKEN_INVALID", "TOKEN_EXPIRED", "SCOPE_INSUFFICIENT", "DELEGATION_DENIED"

HOSTILE: list[Hostile] = [
    # -- algorithm ----------------------------------------------------------------------
    Hostile("alg none, no signature", unsigned("none"), INVALID),
    Hostile("alg None (JSON null)", unsigned(None), INVALID),
    Hostile("alg NONE", unsigned("NONE"), INVALID),
    Hostile("alg nOnE with the real signature kept", unsigned("nOnE", keep_signature=True), INVALID),
    Hostile("alg HS256 keyed with the RSA public key PEM", hs256_with(_rsa_pem), INVALID),
    Hostile("alg HS256 keyed with the JWK modulus", hs256_with(
        lambda w: base64.urlsafe_b64decode(w.issuer.key.public_jwk["n"] + "=="),), INVALID),
    Hostile("alg HS256 keyed with the JWKS document", hs256_with(lambda w: w.jwks.body_bytes()), INVALID),
    Hostile("alg rs256 lower-case", with_header(alg="rs256"), INVALID),
    Hostile("alg with a trailing space", with_header(alg="RS256 "), INVALID),
    Hostile("alg as a list", with_header(alg=["RS256"]), INVALID),
    Hostile("alg as an object", with_header(alg={"name": "RS256"}), INVALID),
    Hostile("alg PS256", with_header(alg="PS256"), INVALID),
    Hostile("alg ES384", with_header(alg="ES384"), INVALID),
    # -- kid ------------------------------------------------------------------------------
    Hostile("kid with path traversal", with_header(kid="../../../../etc/passwd"), INVALID),
    Hostile("kid a URL", with_header(kid="https://attacker.example/jwks.json"), INVALID),
    Hostile("kid of 257 characters", with_header(kid="k" * 257), INVALID),
    Hostile("kid of 6000 characters", with_header(kid="k" * 6000), INVALID),
    Hostile("kid empty", with_header(kid=""), INVALID),
    Hostile("kid an integer", with_header(kid=7), INVALID),
    Hostile("kid a list", with_header(kid=["grantex"]), INVALID),
    Hostile("kid an object", with_header(kid={"$ne": ""}), INVALID),
    Hostile("kid with NUL and CRLF", with_header(kid="k\x00\r\nX-Injected: 1"), INVALID),
    Hostile("RS256 token naming the ES256 kid", lambda w: w.mint(kid=w.es_key.kid), INVALID),
    Hostile("ES256 token naming the RSA kid", lambda w: w.mint(signing_key=SigningKey("ES256"),
                                                               kid=w.issuer.key.kid), INVALID),
    Hostile("ES256 by a foreign P-256 key under the real ES256 kid",
            lambda w: w.mint(signing_key=SigningKey("ES256"), kid=w.es_key.kid), INVALID),
    Hostile("ES256 token naming a P-384 key published as ES256", p384_signed("p384-as-es256"), INVALID),
    Hostile("ES256 token naming a P-384 key without alg", p384_signed("p384"), INVALID),
    Hostile("real ES256 key (control)", lambda w: w.mint(signing_key=w.es_key, kid=w.es_key.kid), None),
    Hostile("foreign RS256 key under the real kid",
            lambda w: w.mint(signing_key=SigningKey("RS256"), kid=w.issuer.key.kid), INVALID),
    # -- headers that point at keys: all ignored ------------------------------------------
    Hostile("jku at an attacker JWKS", attacker_signed(jku=lambda w: w.attacker_jwks.url), INVALID),
    Hostile("x5u at an attacker JWKS", attacker_signed(x5u=lambda w: w.attacker_jwks.url), INVALID),
    Hostile("embedded attacker jwk", attacker_signed(jwk=lambda w: w.attacker.public_jwk), INVALID),
    Hostile("x5c garbage chain", attacker_signed(x5c=["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"]), INVALID),
    Hostile("embedded jwk under the real kid", lambda w: w.mint(
        signing_key=w.attacker, kid=w.issuer.key.kid, header={"jwk": w.attacker.public_jwk}), INVALID),
    # -- other header members ---------------------------------------------------------------
    Hostile("crit naming exp", with_header(crit=["exp"]), INVALID),
    Hostile("crit empty", with_header(crit=[]), INVALID),
    Hostile("crit b64 false", with_header(crit=["b64"], b64=False), INVALID),
    # The last alg is the real one: a reader keeping the last (or first) member would not
    # refuse on "none", so only the duplicate check stands between this token and a 200.
    Hostile("duplicate alg in the header", lambda w: signed(
        w, b'{"alg":"none","kid":"' + w.issuer.key.kid.encode() + b'","alg":"RS256"}',
        dumps(w.claims())), INVALID, detail="header: duplicate member name"),
    Hostile("duplicate sub in the payload", lambda w: signed(
        w, w.header(), dumps(w.claims())[:-1] + b', "sub": "user_admin"}'), INVALID),
    Hostile("duplicate scope in the payload", lambda w: signed(
        w, w.header(), dumps(w.claims())[:-1] + b', "scope": "admin:all"}'), INVALID),
    Hostile("header not JSON", lambda w: signed(w, b"alg=RS256", dumps(w.claims())), INVALID),
    Hostile("header a JSON string", lambda w: signed(w, b'"RS256"', dumps(w.claims())), INVALID),
    Hostile("payload not JSON (signed)", lambda w: signed(w, w.header(), b"sub=user_1"), INVALID),
    Hostile("payload a JSON array (signed)", lambda w: signed(w, w.header(), b"[1, 2]"), INVALID),
    Hostile("payload not UTF-8 (signed)", lambda w: signed(w, w.header(), b'{"sub":"\xff\xfe"}'), INVALID),
    Hostile("payload with a BOM (signed)", lambda w: signed(
        w, w.header(), b"\xef\xbb\xbf" + dumps(w.claims())), INVALID),
    Hostile("payload with NaN (signed)", lambda w: signed(
        w, w.header(), dumps(w.claims())[:-1] + b', "x": NaN}'), INVALID),
    Hostile("payload with an integer of 4400 digits (signed)",
            lambda w: signed(w, w.header(), _huge_integer(w)), INVALID),
    Hostile("payload nested 2000 deep (signed)", lambda w: signed(w, w.header(), _deep_payload(w)), INVALID),
    Hostile("nested JWT (cty JWT, payload a signed token)", _nested, INVALID),
    # -- typ ------------------------------------------------------------------------------
    *[Hostile(f"typ {typ!r}", with_header(typ=typ), None)
      for typ in ("JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt")],
    Hostile("typ absent (v1 style)", with_header(typ=None), None),
    *[Hostile(f"typ {typ!r}", with_header(typ=typ), INVALID)
      for typ in ("dpop+jwt", "decision+jwt", "vc+sd-jwt", "secevent+jwt", "logout+jwt",
                  "application/jwt", "at+jwt ", "JOSE", "JOSE+JSON", "", "at+jwt; x=1")],
    Hostile("typ a list", with_header(typ=["at+jwt"]), INVALID),
    Hostile("typ an object", with_header(typ={"at": "jwt"}), INVALID),
    # -- encoding ---------------------------------------------------------------------------
    Hostile("padded parts", _padded, INVALID, detail="not unpadded base64url"),
    Hostile("padded header (signed as padded)", _padded_header, INVALID,
            detail="header: not unpadded base64url"),
    Hostile("padded payload (signed as padded)", _padded_payload, INVALID,
            detail="payload is not a base64url JSON object: not unpadded base64url"),
    Hostile("standard base64 alphabet", _standard_b64, INVALID, detail="not unpadded base64url"),
    Hostile("payload swapped after signing", _tampered_payload, INVALID),
    Hostile("signature re-spelled with unused bits set", _respelled_signature, INVALID,
            detail="not canonical base64url (unused bits set)"),
    Hostile("payload re-spelled with unused bits set", _respelled_payload, INVALID,
            detail="payload is not a base64url JSON object: not canonical base64url (unused bits set)"),
    Hostile("signature empty", lambda w: w.mint().rsplit(".", 1)[0] + ".", INVALID),
    Hostile("signature truncated", lambda w: w.mint()[:-8], INVALID),
    Hostile("five parts (JWE)", lambda w: "eyJhbGciOiJSU0EtT0FFUCJ9.ZW5j.aXY.Y2lwaGVy.dGFn", INVALID),
    Hostile("four parts", lambda w: w.mint() + ".e30", INVALID),
    Hostile("two parts", lambda w: w.mint().rsplit(".", 1)[0], INVALID),
    Hostile("only dots", lambda w: "..", INVALID),
    Hostile("a valid token twice", lambda w: w.mint() + w.mint(), INVALID),
    Hostile("8193 characters", lambda w: token_of_length(w, 8193), INVALID,
            detail="token is 8193 characters, above max_token_bytes=8192"),
    # -- claims of the wrong type --------------------------------------------------------
    Hostile("v1 scp a string", lambda w: w.mint(token_format="v1", claims={"scp": "calendar:read"}), INVALID),
    Hostile("v1 scp with a number", lambda w: w.mint(token_format="v1",
                                                     claims={"scp": ["calendar:read", 7]}), INVALID),
    Hostile("v1 scp with an empty string", lambda w: w.mint(token_format="v1",
                                                            claims={"scp": ["calendar:read", ""]}), INVALID),
    Hostile("scope a list", with_claims(scope=["calendar:read"]), INVALID),
    Hostile("scope with a double space", with_claims(scope="calendar:read  email:send"), INVALID),
    Hostile("scope with a trailing space", with_claims(scope="calendar:read "), INVALID),
    *[Hostile(f"exp {value!r}", with_claims(exp=value), INVALID)
      for value in ("1900000000", 1900000000.0, 1900000000.5, True, 10**20, -1, [1900000000],
                    {"t": 1})],
    *[Hostile(f"iat {value!r}", with_claims(iat=value), INVALID)
      for value in (str(int(NOW)), float(NOW), False, -5)],
    Hostile("nbf a string", with_claims(nbf="0"), INVALID),
    Hostile("exp a year ago", lambda w: w.mint(issued_at=w.clock() - 2 * 365 * 86400,
                                                expires_in=365 * 86400), EXPIRED),
    Hostile("iat a day ahead", lambda w: w.mint(issued_at=w.clock() + 86400), INVALID),
    Hostile("nbf an hour ahead", lambda w: w.mint(claims={"nbf": int(w.clock()) + 3600}), INVALID),
    *[Hostile(f"v1 delegationDepth {value!r}", v1_depth(value), INVALID)
      for value in (-1, 1.0, 1.5, True, "1", 11, 2**64)],
    *[Hostile(f"delegation_depth {value!r}", grant_depth(value), INVALID)
      for value in (-1, 2.0, False, "2", 11)],
    Hostile("delegation 4 deep (limit 3)", delegated(4), DEEP),
    Hostile("depth 1 without a parent grant", resigned(
        lambda c: c[GRANT].update(delegation_depth=1)), INVALID),
    Hostile("parent grant at depth 0", resigned(lambda c: c[GRANT].update(parent_grant_id="g")), INVALID),
    Hostile("act chain 11 deep", with_claims(act=act_chain(11)), INVALID),
    Hostile("act chain 10 deep (control)", with_claims(act=act_chain(10)), None),
    Hostile("act with an empty sub", with_claims(act=act_chain(3, last_sub="")), INVALID),
    Hostile("act with a numeric sub", with_claims(act={"sub": 5}), INVALID),
    Hostile("act a list", with_claims(act=[{"sub": "did:grantex:ag_X"}]), INVALID),
    Hostile("act.act null", with_claims(act={"sub": "did:grantex:ag_X", "act": None}), INVALID),
    Hostile("sub empty", with_claims(sub=""), INVALID),
    Hostile("sub a number", with_claims(sub=42), INVALID),
    Hostile("jti missing", with_claims(jti=None), INVALID),
    Hostile("client_id missing", with_claims(client_id=None), INVALID),
    Hostile("aud an empty list", with_claims(aud=[]), INVALID),
    Hostile("aud with a number", with_claims(aud=[API, 5]), INVALID),
    Hostile("aud with a prefix of ours", with_claims(aud="https://api.example.co"), INVALID),
    Hostile("aud case-folded", with_claims(aud="HTTPS://API.EXAMPLE.COM"), INVALID),
    Hostile("cnf a string", with_claims(cnf="thumbprint"), INVALID),
    Hostile("cnf.jkt a number", with_claims(cnf={"jkt": 5}), INVALID),
    Hostile("cnf.jkt empty", with_claims(cnf={"jkt": ""}), INVALID),
    Hostile("key-bound token sent as Bearer", with_claims(cnf={"jkt": "A" * 43}), "DPOP_REQUIRED"),
    Hostile("grant claim a string", with_claims(**{GRANT: "grnt_1"}), INVALID),
    Hostile("grant agent_did a number", resigned(lambda c: c[GRANT].update(agent_did=1)), INVALID),
    Hostile("principal-session token signed by the real key", _session_token, INVALID),
    Hostile("v1 token without agt", lambda w: w.mint(token_format="v1", claims={"agt": None}), INVALID),
    Hostile("iss with a trailing slash", with_claims(iss="https://issuer.grantex.test/"), INVALID),
    *[Hostile(f"null {name}", _null_claim(name), INVALID) for name in CLAIM_NAMES],
    *[Hostile(f"null grant member {name}", _null_grant_member(name), INVALID)
      for name in ("grant_id", "agent_did", "developer_id", "parent_grant_id", "delegation_depth")],
    *[Hostile(f"dual alias {name} disagrees", dual_with(**{name: value}), INVALID)
      for name, value in DUAL_DISAGREEMENTS.items()],
    Hostile("dual token whose aliases agree (control)", dual_with(), None),
    # -- authorization_details ------------------------------------------------------------
    *[Hostile(f"authorization_details {label}", with_claims(authorization_details=value), INVALID)
      for label, value in (
          ("an object", {"type": BUDGET, "amount": 5}),
          ("a list of strings", [BUDGET]),
          ("an item without type", [{"amount": 5}]),
          ("a numeric type", [{"type": 7}]),
          ("budget amount a string", [{"type": BUDGET, "amount": "5"}]),
          ("budget amount negative", [{"type": BUDGET, "amount": -5}]),
          ("budget amount missing", [{"type": BUDGET, "currency": "USD"}]),
          ("budget currency a number", [{"type": BUDGET, "amount": 5, "currency": 840}]),
      )],
    # The JSON number 1e400 as sent: Python's JSON reader takes it as float("inf") without
    # complaint (unlike the literal Infinity, refused as not JSON), so the claims reader refuses it.
    Hostile("authorization_details budget amount infinite (1e400)", resigned_text(
        lambda claims: claims.update(authorization_details=[{"type": BUDGET, "amount": 0.5}]),
        b'"amount": 0.5', b'"amount": 1e400'), INVALID,
        detail="claim authorization_details.amount must be a finite amount >= 0"),
    Hostile("v1 bdg a string", lambda w: w.mint(token_format="v1", claims={"bdg": "100"}), INVALID),
    # -- scopes: confusables and hostile limits -------------------------------------------
    *[Hostile(f"scope {scope!r}", scoped(scope), SCOPE)
      for scope in ("c\u0430lendar:read", "calendar:re\u0430d", "calendar\uff1aread",
                    "calendar:read\u200b", "\u202ecalendar:read", "CALENDAR:READ",
                    "Calendar:read", "calendar::read", ":calendar:read", "calendar:",
                    "calendar:read:", "calendar:read:max_5", "calendar", "calendar:*", "*:*",
                    "calendar:read\x00")],
    # An ill-formed cap is no cap at all ("Missing scope"), not a cap under 1000: a parser
    # reading -5000 or .5 as a number would refuse these too, but with another detail.
    *[Hostile(f"payment cap {scope!r}", scoped(scope), SCOPE, "/payments",
              detail="Missing scope 'payments:initiate:max_1000'.")
      for scope in ILL_FORMED_CAPS],
    # Well-formed caps just under the route's 1000: refused for their amount (a float reading
    # of 999.999...9 would round up to 1000 and let it through).
    *[Hostile(f"payment cap {scope!r}", scoped(scope), SCOPE, "/payments",
              detail=f"up to {scope.removeprefix(CAPPED)} ({scope}), not 1000.")
      for scope in CAPS_BELOW_1000],
    Hostile("payment cap with leading zeros (control)", scoped("payments:initiate:max_0001000"),
            None, "/payments"),
    Hostile("payment cap of 1000 digits (control)", scoped("payments:initiate:max_" + "9" * 1000),
            None, "/payments"),
]

assert len({case.name for case in HOSTILE}) == len(HOSTILE), "case names must be unique"
IDS = [case.name for case in HOSTILE]


@pytest.fixture(scope="module")
def guard(world: World) -> Guard:
    return Guard(issuer=world.issuer.issuer, jwks_uri=world.jwks.url, audience=API,
                 clock=world.clock)


# -- the apps ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def starlette_client(guard: Guard) -> Iterator[Adapter]:
    with starlette_test_client(guard, ROUTE_SCOPES) as adapter:
        yield adapter


@pytest.fixture(scope="module")
def flask_client(guard: Guard) -> Adapter:
    return flask_test_client(guard, ROUTE_SCOPES)


def assert_answer(case: Hostile, token: str, answer: Answer, log_text: str) -> None:
    """The shared adapter matrix's check (status, body, challenge, token not echoed), plus
    Cache-Control, the logs, and the reason: in the rejection log line, or in the message for
    scopes (the apps check those themselves, after Guard.verify, and say why publicly)."""
    expected = matrix.Case(case.name, case.path, STATUS[case.code] if case.code else 200,
                           case.code, CHALLENGE[case.code] if case.code else None, lambda issuer: {})
    matrix.check(expected, answer.status, answer.headers, answer.body,
                 {"Authorization": f"Bearer {token}"})
    if case.code is None:
        return
    assert answer.headers.get("Cache-Control") == "no-store"
    if len(token) > 20:  # short ones ("..") could occur in any text by chance
        assert token not in log_text, case.name
    if case.detail is not None:
        reason = answer.body["message"] if case.code == SCOPE else log_text
        assert case.detail in reason, (case.name, reason)


# -- the suite ---------------------------------------------------------------------------


def attempt(verify: Callable[[], Grant]) -> Grant | GuardError:
    try:
        return verify()
    except GuardError as error:
        return error


async def attempt_async(verify: Callable[[], Awaitable[Grant]]) -> Grant | GuardError:
    try:
        return await verify()
    except GuardError as error:
        return error


def assert_outcome(case: Hostile, token: str, result: Grant | GuardError) -> None:
    if case.code is None:
        assert isinstance(result, Grant), (case.name, result)
        return
    assert isinstance(result, GuardError), (case.name, "accepted", result)
    assert (result.code, result.status) == (case.code, STATUS[case.code]), (case.name, result.detail)
    assert token not in result.message and token not in str(result.detail or "")
    if case.detail is not None:
        assert case.detail in str(result.detail), (case.name, result.detail)


@pytest.mark.parametrize("case", HOSTILE, ids=IDS)
def test_hostile_token_through_verify(case: Hostile, world: World, guard: Guard,
                                      caplog: pytest.LogCaptureFixture) -> None:
    token = case.make(world)
    caplog.set_level(logging.DEBUG, logger="grantex_guard")
    assert_outcome(case, token, attempt(lambda: guard.verify(token, scopes=ROUTE_SCOPES[case.path])))
    assert token not in caplog.text


@pytest.mark.parametrize("case", HOSTILE, ids=IDS)
async def test_hostile_token_through_verify_async(case: Hostile, world: World, guard: Guard) -> None:
    token = case.make(world)
    result = await attempt_async(lambda: guard.verify_async(token, scopes=ROUTE_SCOPES[case.path]))
    assert_outcome(case, token, result)


def assert_answer_through(adapter: Adapter, case: Hostile, world: World,
                          caplog: pytest.LogCaptureFixture) -> None:
    token = case.make(world)
    caplog.set_level(logging.DEBUG)
    answer = adapter.get(case.path, {"Authorization": f"Bearer {token}"})
    assert_answer(case, token, answer, caplog.text)


@pytest.mark.parametrize("case", HOSTILE, ids=IDS)
def test_hostile_token_through_starlette_middleware(case: Hostile, world: World,
                                                    starlette_client: Adapter,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    assert_answer_through(starlette_client, case, world, caplog)


@pytest.mark.parametrize("case", HOSTILE, ids=IDS)
def test_hostile_token_through_flask_extension(case: Hostile, world: World, flask_client: Adapter,
                                               caplog: pytest.LogCaptureFixture) -> None:
    assert_answer_through(flask_client, case, world, caplog)


@pytest.mark.parametrize("scope", ILL_FORMED_CAPS)
def test_an_ill_formed_payment_cap_allows_no_amount(scope: str) -> None:
    assert ScopeSet([scope]).limit("payments:initiate") is None


@pytest.mark.parametrize(("scope", "cap"), [
    *CAPS_BELOW_1000.items(),
    ("payments:initiate:max_0001000", Decimal(1000)),
    ("payments:initiate:max_" + "9" * 1000, Decimal("9" * 1000)),
], ids=["max_0999", "max_999.9x32", "max_0001000", "max_9x1000"])
def test_a_well_formed_payment_cap_is_read_exactly(scope: str, cap: Decimal) -> None:
    assert ScopeSet([scope]).limit("payments:initiate") == cap


def test_the_8193_character_token_is_refused_for_its_size_alone(world: World) -> None:
    """The "8193 characters" row is otherwise valid: a guard allowing one more character takes it."""
    token = token_of_length(world, 8193)
    roomier = Guard(issuer=world.issuer.issuer, jwks_uri=world.jwks.url, audience=API,
                    clock=world.clock, max_token_bytes=8193)
    assert roomier.verify(token, scopes=ROUTE_SCOPES["/calendar"])


def test_headers_pointing_at_keys_are_never_fetched(world: World, guard: Guard) -> None:
    for make in (attacker_signed(jku=lambda w: w.attacker_jwks.url),
                 attacker_signed(x5u=lambda w: w.attacker_jwks.url)):
        with pytest.raises(GuardError):
            guard.verify(make(world))
    assert world.attacker_jwks.hits == 0


# -- the size limit comes before any decoding ----------------------------------------------


def _decoding_calls(action: Callable[[], object]) -> list[str]:
    """Names of the decoding functions (base64, JSON, signature) called while `action` runs."""
    python_functions = {"b64url_decode", "b64decode", "urlsafe_b64decode", "decode_json_object",
                        "raw_decode", "header", "payload", "_check_signature"}
    builtins = {"a2b_base64", "scanstring", "verify"}  # "verify": cryptography's, in Rust
    seen: list[str] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") in builtins:
            seen.append(arg.__name__)
        elif event == "call" and frame.f_code.co_name in python_functions:
            seen.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        action()
    except GuardError:
        pass
    finally:
        sys.setprofile(None)
    return seen


def test_a_one_megabyte_token_is_refused_fast_and_without_decoding(world: World) -> None:
    guard = Guard(issuer=world.issuer.issuer, jwks_uri=world.jwks.url, audience=API,
                  clock=world.clock, token_cache_size=0)
    valid = world.mint()
    header, payload, signature = valid.split(".")
    huge = f"{header}.{payload + 'A' * (1 << 20)}.{signature}"  # well-formed base64url
    hits_before = world.jwks.hits

    with pytest.raises(GuardError) as caught:
        guard.verify(huge)

    assert (caught.value.code, caught.value.status) == ("TOKEN_INVALID", 401)
    assert "too large" in caught.value.message
    assert _decoding_calls(lambda: guard.verify(huge)) == []
    assert world.jwks.hits == hits_before
    assert _decoding_calls(lambda: guard.verify(valid))  # the probe does see decoding


def test_an_oversized_authorization_header_is_a_401_through_the_adapter(
        world: World, starlette_client: Adapter) -> None:
    token = "A" * 9000 + "." + "B" * 100 + "." + "C" * 100
    answer = starlette_client.get("/calendar", {"Authorization": f"Bearer {token}"})
    assert answer.status == 401
    assert answer.body["error"] == "TOKEN_INVALID"
    assert token not in answer.text
