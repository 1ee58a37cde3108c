"""Hostile DPoP proofs (RFC 9449), table-driven, through Guard.verify and two real adapters.

tests/test_dpop.py covers the basic refusals through Guard.verify; this table adds key
material an attacker controls (private members, symmetric and foreign-curve keys, small
RSA keys, the issuer's own public key), critical headers, target confusion and replays
that change the proof's spelling, and runs every case through the Starlette middleware
and the Flask extension too, checking status, JSON body, DPoP challenge and that neither
the token nor the proof leaks into the body or the logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from grantex_guard import Guard, GuardError
from grantex_guard.dpop import MemoryReplayStore, access_token_hash
from grantex_guard.jose import b64url_decode, b64url_encode
from grantex_guard.testing import DPoPAgent, LocalIssuer, SigningKey

from .adapter_apps import Adapter, flask_test_client, starlette_test_client
from .conftest import FakeClock
from .jwks_server import ec_key, ed25519_key, public_jwk

API = "https://api.example.com"
VERIFY_URL = API + "/calendar"
STARLETTE_URL = "http://testserver/calendar"
FLASK_URL = "http://localhost/calendar"
CHALLENGE = 'DPoP algs="ES256 RS256", error="invalid_dpop_proof"'


@dataclass
class World:
    clock: FakeClock
    issuer: LocalIssuer
    agent: DPoPAgent
    rsa_agent: DPoPAgent

    def token(self) -> str:
        return self.issuer.mint(["calendar:read"], audience=API, bound_to=self.agent.thumbprint)


@pytest.fixture(scope="module")
def world() -> World:
    clock = FakeClock()
    return World(clock, LocalIssuer("RS256", clock=clock), DPoPAgent("ES256", clock=clock),
                 DPoPAgent("RS256", clock=clock))


MakeProof = Callable[[World, str, str], str]  # (world, token, request url) -> proof


def claims(**changes: Any) -> MakeProof:
    """Proof claims changed (None deletes one; a callable is given the world)."""
    def make(w: World, token: str, url: str) -> str:
        members = {name: (value(w) if callable(value) else value) for name, value in changes.items()}
        return w.agent.proof("GET", url, token, claims=members)
    return make


def header(**changes: Any) -> MakeProof:
    def make(w: World, token: str, url: str) -> str:
        members = {name: (value(w) if callable(value) else value) for name, value in changes.items()}
        return w.agent.proof("GET", url, token, header=members)
    return make


def target(method: str = "GET", url: Callable[[str], str] = lambda url: url) -> MakeProof:
    def make(w: World, token: str, request_url: str) -> str:
        return w.agent.proof(method, url(request_url), token)
    return make


def jws_signature(key: Any, signing_input: bytes) -> bytes:
    """A JWS signature by any private key (also used by test_hostile_tokens): RSA PKCS#1 v1.5
    with SHA-256, ECDSA with SHA-256 as raw r||s of the curve's size (RFC 7518 3.4), else
    the key's own sign() (EdDSA)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return bytes(key.sign(signing_input))


def _sign_raw(key: Any, alg: str, jwk: dict[str, Any], w: World, token: str, url: str) -> str:
    """A proof signed by an arbitrary key, its jwk as given (bypassing SigningKey's checks)."""
    head = b64url_encode(json.dumps({"typ": "dpop+jwt", "alg": alg, "jwk": jwk}).encode())
    body = b64url_encode(json.dumps({"htm": "GET", "htu": url, "iat": int(w.clock()),
                                     "jti": "j-raw", "ath": access_token_hash(token)}).encode())
    return f"{head}.{body}.{b64url_encode(jws_signature(key, f'{head}.{body}'.encode()))}"


def _small_rsa(w: World, token: str, url: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return _sign_raw(key, "RS256", public_jwk(key, kid=None, alg=None, use=None), w, token, url)


def _p384(w: World, token: str, url: str) -> str:
    key = ec_key(ec.SECP384R1())
    return _sign_raw(key, "ES256", public_jwk(key, kid=None, alg=None, use=None), w, token, url)


def _ed25519(w: World, token: str, url: str) -> str:
    key = ed25519_key()
    return _sign_raw(key, "EdDSA", public_jwk(key, kid=None, alg=None, use=None), w, token, url)


def _issuer_jwk(w: World, token: str, url: str) -> str:
    """The issuer's public key in the jwk, signed by the agent (who lacks the issuer's key)."""
    jwk = {k: v for k, v in w.issuer.key.public_jwk.items() if k in ("kty", "n", "e")}
    return w.rsa_agent.proof("GET", url, token, header={"jwk": jwk})


def _another_token(w: World, token: str, url: str) -> str:
    return w.agent.proof("GET", url, w.token())


def _private_members(w: World, token: str, url: str) -> str:
    private_key = w.rsa_agent.key.private_key
    assert isinstance(private_key, rsa.RSAPrivateKey)
    numbers = private_key.private_numbers()
    jwk = {**w.rsa_agent.key._public_members(),
           "d": b64url_encode(numbers.d.to_bytes(256, "big")), "p": "AQAB", "q": "AQAB"}
    return w.rsa_agent.proof("GET", url, token, header={"jwk": jwk})


def _oversized(w: World, token: str, url: str) -> str:
    return w.agent.proof("GET", url, token, claims={"pad": "x" * 9000})


def _two_proofs(w: World, token: str, url: str) -> str:
    return w.agent.proof("GET", url, token) + "," + w.agent.proof("GET", url, token)


@dataclass(frozen=True)
class HostileProof:
    name: str
    make: MakeProof


HOSTILE_PROOFS = [
    # -- the key in the header ---------------------------------------------------------------
    HostileProof("RSA jwk with private members", _private_members),
    HostileProof("symmetric jwk (kty oct) with HS256", header(
        alg="HS256", jwk={"kty": "oct", "k": "c2VjcmV0"})),
    HostileProof("Ed25519 jwk (EdDSA)", _ed25519),
    HostileProof("P-384 jwk labelled ES256", _p384),
    HostileProof("RSA jwk of 1024 bits", _small_rsa),
    HostileProof("the issuer's public key as jwk", _issuer_jwk),
    HostileProof("jwk a string", header(jwk="eyJrdHkiOiJFQyJ9")),
    HostileProof("jwk with a kid pointing elsewhere, no key", header(jwk={"kid": "k"})),
    HostileProof("jku instead of jwk", header(jwk=None, jku="http://127.0.0.1:9/jwks.json")),
    HostileProof("x5c instead of jwk", header(jwk=None, x5c=["MIIB"])),
    HostileProof("jwk of the agent, signed by another key",
                 lambda w, t, u: SigningKey("ES256").compact(
                     {"typ": "dpop+jwt", "alg": "ES256", "jwk": w.agent.key._public_members()},
                     {"htm": "GET", "htu": u, "iat": int(w.clock()), "jti": "j",
                      "ath": access_token_hash(t)})),
    # -- the header -----------------------------------------------------------------------------
    HostileProof("alg None (JSON null)", header(alg=None)),
    HostileProof("alg none, signature stripped",
                 lambda w, t, u: w.agent.proof("GET", u, t, header={"alg": "none"}).rsplit(".", 1)[0]
                 + "."),
    HostileProof("alg a list", header(alg=["ES256"])),
    HostileProof("alg ES384", header(alg="ES384")),
    HostileProof("typ DPOP+JWT (case)", header(typ="DPOP+JWT")),
    HostileProof("typ at+jwt", header(typ="at+jwt")),
    HostileProof("typ missing", header(typ=None)),
    HostileProof("crit header", header(crit=["exp"])),
    HostileProof("crit b64 false", header(crit=["b64"], b64=False)),
    # -- the target -----------------------------------------------------------------------------
    HostileProof("htu with a query", target(url=lambda u: u + "?amount=1")),
    HostileProof("htu with a fragment", target(url=lambda u: u + "#x")),
    HostileProof("htu on another host", target(url=lambda u: u.replace("//", "//evil.", 1))),
    HostileProof("htu on another port", target(url=lambda u: u.replace("/calendar", ":8443/calendar"))),
    HostileProof("htu with a trailing slash", target(url=lambda u: u + "/")),
    HostileProof("htu path upper-case", target(url=lambda u: u.replace("calendar", "CALENDAR"))),
    HostileProof("htu path percent-encoded", target(url=lambda u: u.replace("calendar", "%63alendar"))),
    HostileProof("htu path with dot segments", target(url=lambda u: u.replace("/calendar",
                                                                             "/x/../calendar"))),
    HostileProof("htu relative", target(url=lambda u: "/calendar")),
    HostileProof("htu not a URL", target(url=lambda u: "calendar")),
    HostileProof("htu with a bad port", target(url=lambda u: u.replace("/calendar", ":99999/calendar"))),
    HostileProof("htu a list", claims(htu=[VERIFY_URL])),
    HostileProof("htm lower-case", target(method="get")),
    HostileProof("htm POST", target(method="POST")),
    HostileProof("htm with a space", target(method="GET ")),
    HostileProof("htm a list", claims(htm=["GET"])),
    # -- time -------------------------------------------------------------------------------
    HostileProof("iat just beyond the leeway ahead", claims(iat=lambda w: int(w.clock()) + 11)),
    HostileProof("iat a year ahead", claims(iat=lambda w: int(w.clock()) + 365 * 86400)),
    HostileProof("iat 1e300", claims(iat=1e300)),
    HostileProof("iat just older than max_age + leeway", claims(iat=lambda w: int(w.clock()) - 311)),
    HostileProof("iat zero", claims(iat=0)),
    HostileProof("iat true", claims(iat=True)),
    HostileProof("iat missing", claims(iat=None)),
    # -- binding to the token ---------------------------------------------------------------
    HostileProof("ath missing", claims(ath=None)),
    HostileProof("proof signed for another token", _another_token),
    HostileProof("ath a number", claims(ath=5)),
    HostileProof("ath the hex SHA-256 of the token", lambda w, t, u: w.agent.proof(
        "GET", u, t, claims={"ath": hashlib.sha256(t.encode()).hexdigest()})),
    HostileProof("ath padded", lambda w, t, u: w.agent.proof(
        "GET", u, t, claims={"ath": access_token_hash(t) + "="})),
    # -- ids and shape ----------------------------------------------------------------------
    HostileProof("jti of 257 characters", claims(jti="j" * 257)),
    HostileProof("jti empty", claims(jti="")),
    HostileProof("jti a number", claims(jti=12345)),
    HostileProof("proof over 8 KiB", _oversized),
    HostileProof("two proofs joined by a comma", _two_proofs),
    HostileProof("proof with five parts", lambda w, t, u: "a.b.c.d.e"),
    HostileProof("payload not JSON", lambda w, t, u: w.agent.key.compact(
        {"typ": "dpop+jwt", "alg": "ES256", "jwk": w.agent.key._public_members()}, b"htm=GET")),
]
IDS = [case.name for case in HOSTILE_PROOFS]
assert len(set(IDS)) == len(IDS)


# -- the apps ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guard(world: World) -> Guard:
    return world.issuer.guard(audience=API)


@pytest.fixture(scope="module")
def starlette_client(guard: Guard) -> Iterator[Adapter]:
    with starlette_test_client(guard) as adapter:
        yield adapter


@pytest.fixture(scope="module")
def flask_client(guard: Guard) -> Adapter:
    return flask_test_client(guard)


def assert_refused(status: int, headers: Any, body: Any, secrets: tuple[str, ...],
                   log_text: str) -> None:
    assert status == 401, body
    assert body == {"error": "DPOP_INVALID", "message": body["message"]}
    assert (headers.get("WWW-Authenticate") or "").startswith(CHALLENGE)
    assert headers.get("Cache-Control") == "no-store"
    for secret in secrets:
        if len(secret) > 20:
            assert secret not in json.dumps(body) and secret not in log_text


# -- the suite ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", HOSTILE_PROOFS, ids=IDS)
def test_hostile_proof_through_verify(case: HostileProof, world: World, guard: Guard,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="grantex_guard")
    token = world.token()
    proof = case.make(world, token, VERIFY_URL)
    with pytest.raises(GuardError) as caught:
        guard.verify(token, scopes=["calendar:read"], dpop=proof, method="GET", url=VERIFY_URL)
    assert (caught.value.code, caught.value.status) == ("DPOP_INVALID", 401), caught.value.detail
    assert token not in caplog.text and token not in caught.value.message


def assert_refused_through(adapter: Adapter, url: str, case: HostileProof, world: World,
                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = world.token()
    proof = case.make(world, token, url)
    answer = adapter.get("/calendar", {"Authorization": f"DPoP {token}", "DPoP": proof})
    assert_refused(answer.status, answer.headers, answer.body, (token, proof), caplog.text)


@pytest.mark.parametrize("case", HOSTILE_PROOFS, ids=IDS)
def test_hostile_proof_through_starlette_middleware(case: HostileProof, world: World,
                                                    starlette_client: Adapter,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    assert_refused_through(starlette_client, STARLETTE_URL, case, world, caplog)


@pytest.mark.parametrize("case", HOSTILE_PROOFS, ids=IDS)
def test_hostile_proof_through_flask_extension(case: HostileProof, world: World,
                                               flask_client: Adapter,
                                               caplog: pytest.LogCaptureFixture) -> None:
    assert_refused_through(flask_client, FLASK_URL, case, world, caplog)


@pytest.mark.parametrize(("client_name", "url"), [("starlette_client", STARLETTE_URL),
                                                  ("flask_client", FLASK_URL)])
def test_a_valid_proof_passes_each_adapter(client_name: str, url: str, world: World,
                                           request: pytest.FixtureRequest) -> None:
    """The control: the refusals above are about the proof, not about the URL the app sees."""
    adapter = request.getfixturevalue(client_name)
    token = world.token()
    assert adapter.get("/calendar", world.agent.headers(token, "GET", url)).status == 200


# The order of the P-256 group: (r, s) and (r, n - s) are both valid ECDSA signatures.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _high_s_twin(w: World, proof: str) -> str:
    """The same proof with the other valid ECDSA signature: anyone can compute it, no key needed."""
    head, body, signature = proof.split(".")
    raw = b64url_decode(signature)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    return f"{head}.{body}.{b64url_encode(r + (P256_ORDER - s).to_bytes(32, 'big'))}"


def _signed_again(w: World, proof: str) -> str:
    """The same header and claims signed afresh by the agent (a new ECDSA nonce)."""
    head, body, _ = proof.split(".")
    return f"{head}.{body}.{b64url_encode(w.agent.key.sign(f'{head}.{body}'.encode()))}"


def _json_respelled(w: World, proof: str) -> str:
    """The same header and claims (same jti) in compact JSON, signed by the agent."""
    head, body = (json.loads(b64url_decode(part)) for part in proof.split(".")[:2])
    return w.agent.key.compact(json.dumps(head, separators=(",", ":")).encode(),
                               json.dumps(body, separators=(",", ":")).encode())


def _as_is(w: World, proof: str) -> str:
    return proof


def _jti(proof: str) -> str:
    return str(json.loads(b64url_decode(proof.split(".")[1]))["jti"])


RESPELLINGS: list[Callable[[World, str], str]] = [_as_is, _high_s_twin, _signed_again, _json_respelled]


@pytest.mark.parametrize("respell", RESPELLINGS, ids=["as is", "high-s twin signature",
                                                      "signed again", "JSON re-spelled"])
def test_a_replay_is_refused_however_the_proof_is_respelled(
        respell: Callable[[World, str], str], world: World, guard: Guard) -> None:
    """Each spelling is a proof a fresh guard accepts; once its jti was used it is a replay."""
    token = world.token()
    proof = world.agent.proof("GET", VERIFY_URL, token)
    respelled = respell(world, proof)
    assert (respelled == proof) == (respell is _as_is) and _jti(respelled) == _jti(proof)
    assert world.issuer.guard(audience=API).verify(token, dpop=respelled, method="GET", url=VERIFY_URL)
    guard.verify(token, dpop=proof, method="GET", url=VERIFY_URL)
    with pytest.raises(GuardError) as caught:
        guard.verify(token, dpop=respelled, method="GET", url=VERIFY_URL)
    assert caught.value.code == "DPOP_INVALID"
    assert caught.value.detail == "DPoP proof jti replayed within its validity window"


@pytest.mark.parametrize(("respell", "reason"), [
    (lambda proof: f" {proof} ", "it is not a compact JWS (not unpadded base64url)"),
    (lambda proof: proof + "=", "it is not a compact JWS (not unpadded base64url)"),
    # The space is part of the signing input (the payload is decoded only after the signature).
    (lambda proof: proof.replace(".", ". ", 1), "its signature does not verify with its jwk"),
], ids=["surrounded by spaces", "padded", "space after a dot"])
def test_a_proof_respelled_outside_base64url_is_refused_even_when_fresh(
        respell: Callable[[str], str], reason: str, world: World, guard: Guard) -> None:
    """Spellings that are no valid proof never reach the replay check: refused on first use."""
    token = world.token()
    proof = respell(world.agent.proof("GET", VERIFY_URL, token))
    with pytest.raises(GuardError) as caught:
        guard.verify(token, dpop=proof, method="GET", url=VERIFY_URL)
    assert (caught.value.code, caught.value.detail) == ("DPOP_INVALID", reason)


def test_a_replay_to_another_token_of_the_same_key_is_refused(world: World, guard: Guard) -> None:
    """A proof names one token (ath): presenting it with a sibling token bound to the same key fails."""
    first, second = world.token(), world.token()
    proof = world.agent.proof("GET", VERIFY_URL, first)
    with pytest.raises(GuardError) as caught:
        guard.verify(second, dpop=proof, method="GET", url=VERIFY_URL)
    assert caught.value.code == "DPOP_INVALID"
    assert guard.verify(first, dpop=proof, method="GET", url=VERIFY_URL)


def test_a_token_bound_to_the_issuer_key_cannot_be_proven_without_it(world: World,
                                                                     guard: Guard) -> None:
    token = world.issuer.mint(["calendar:read"], audience=API, bound_to=world.issuer.key.thumbprint)
    proof = _issuer_jwk(world, token, VERIFY_URL)
    with pytest.raises(GuardError) as caught:
        guard.verify(token, dpop=proof, method="GET", url=VERIFY_URL)
    assert caught.value.code == "DPOP_INVALID"


def test_guards_sharing_a_memory_replay_store_refuse_each_others_replays(world: World) -> None:
    store = MemoryReplayStore(clock=world.clock)  # empty, hence falsy: it must still be used
    first = world.issuer.guard(audience=API, replay_store=store)
    second = world.issuer.guard(audience=API, replay_store=store)
    token = world.token()
    proof = world.agent.proof("GET", VERIFY_URL, token)
    first.verify(token, dpop=proof, method="GET", url=VERIFY_URL)
    with pytest.raises(GuardError) as caught:
        second.verify(token, dpop=proof, method="GET", url=VERIFY_URL)
    assert caught.value.code == "DPOP_INVALID"
    assert len(store) == 1
