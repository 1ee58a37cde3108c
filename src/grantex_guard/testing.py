"""Test your API without a Grantex account: a local issuer that mints real grant tokens.

    issuer = LocalIssuer()                       # RSA-2048 key, standard (0.6) tokens
    guard = issuer.guard(audience="https://api.example.com")   # JWKS served in-process
    token = issuer.mint(scopes=["calendar:read"], audience="https://api.example.com")

`LocalIssuer.serve()` publishes the JWKS over real HTTP on 127.0.0.1 instead.
Tokens come in the exact shapes of the Grantex service: "standard" (0.6,
`typ: at+jwt`), "dual" (standard plus the v1 aliases) and "v1" (flat claims).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .claims import BUDGET_TYPE, GRANT_CLAIM
from .dpop import access_token_hash
from .grant import Grant
from .jose import b64url_decode, b64url_encode, jwk_thumbprint
from .verifier import Guard

__all__ = ["JWKS_PATH", "DPoPAgent", "LocalIssuer", "SigningKey", "unverified_claims"]

JWKS_PATH = "/.well-known/jwks.json"
Alg = Literal["RS256", "ES256"]
TokenShape = Literal["standard", "dual", "v1"]
_DID_PREFIX = "did:grantex:"


def _int_b64(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


class SigningKey:
    """A private key with its public JWK; signs compact JWS in RS256 or ES256."""

    def __init__(self, alg: Alg = "RS256", kid: str | None = None) -> None:
        self.alg = alg
        if alg == "RS256":
            self.private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
                rsa.generate_private_key(public_exponent=65537, key_size=2048)
            )
        elif alg == "ES256":
            self.private_key = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(f"alg must be RS256 or ES256, got {alg!r}")
        self.thumbprint = jwk_thumbprint(self._public_members())
        self.kid = kid or f"grantex-{alg.lower()}-{self.thumbprint[:16]}"

    def _public_members(self) -> dict[str, str]:
        public = self.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            return {"kty": "RSA", "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}
        assert isinstance(public, ec.EllipticCurvePublicKey)
        point = public.public_numbers()
        return {
            "kty": "EC", "crv": "P-256",
            "x": b64url_encode(point.x.to_bytes(32, "big")),
            "y": b64url_encode(point.y.to_bytes(32, "big")),
        }

    @property
    def public_jwk(self) -> dict[str, str]:
        return {**self._public_members(), "alg": self.alg, "use": "sig", "kid": self.kid}

    def sign(self, signing_input: bytes) -> bytes:
        key = self.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def compact(self, header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes) -> str:
        """Sign a compact JWS; pass bytes to control the exact JSON (hostile-input tests)."""
        parts = [
            b64url_encode(part if isinstance(part, bytes) else json.dumps(part).encode())
            for part in (header, payload)
        ]
        signing_input = ".".join(parts).encode("ascii")
        return ".".join([*parts, b64url_encode(self.sign(signing_input))])


class DPoPAgent:
    """An agent holding a key: mint tokens bound to it, and sign a DPoP proof per request.

        agent = DPoPAgent()
        token = issuer.mint(["calendar:read"], bound_to=agent.thumbprint)
        headers = agent.headers(token, "GET", "https://api.example.com/calendar")
    """

    def __init__(self, alg: Alg = "ES256", *, clock: Callable[[], float] = time.time) -> None:
        self.key = SigningKey(alg)
        self.thumbprint = self.key.thumbprint
        self.clock = clock

    def proof(self, method: str, url: str, token: str | None = None, *,
              claims: Mapping[str, Any] | None = None,
              header: Mapping[str, Any] | None = None) -> str:
        """A proof for one request; `claims`/`header` override members (None deletes one)."""
        payload: dict[str, Any] = {"htm": method, "htu": url, "iat": int(self.clock()),
                                   "jti": secrets.token_urlsafe(16)}
        if token is not None:
            payload["ath"] = access_token_hash(token)
        proof_header = {"typ": "dpop+jwt", "alg": self.key.alg, "jwk": self.key._public_members()}
        return self.key.compact(_merged(proof_header, header), _merged(payload, claims))

    def headers(self, token: str, method: str, url: str) -> dict[str, str]:
        """`Authorization: DPoP <token>` and a fresh `DPoP` proof for this request."""
        return {"Authorization": f"DPoP {token}", "DPoP": self.proof(method, url, token)}


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a token, without checking anything: for building test tokens only."""
    claims: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return claims


class _Parent:
    """What a delegated token inherits from its parent, read from a token or a Grant."""

    def __init__(self, parent: str | Grant) -> None:
        if isinstance(parent, Grant):
            self.grant_id, self.agent_did = parent.grant_id, parent.agent_did
            self.depth, self.chain = parent.delegation_depth, parent.delegation_chain
            self.principal_id, self.scopes = parent.principal_id, parent.scopes
            return
        claims = unverified_claims(parent)
        grant = claims.get(GRANT_CLAIM)
        if isinstance(grant, dict):
            self.grant_id = grant.get("grant_id") or claims["jti"]
            self.agent_did = grant["agent_did"]
            self.depth = grant.get("delegation_depth", 0)
            self.chain = _act_subjects(claims.get("act"))
            self.scopes = tuple(claims["scope"].split(" ")) if "scope" in claims else tuple(claims["scp"])
        else:
            self.grant_id = claims.get("grnt") or claims["jti"]
            self.agent_did = claims["agt"]
            self.depth = claims.get("delegationDepth", 0)
            self.chain = (claims["parentAgt"],) if "parentAgt" in claims else ()
            self.scopes = tuple(claims["scp"])
        self.principal_id = claims["sub"]


def _act_subjects(act: object) -> tuple[str, ...]:
    chain: list[str] = []
    while isinstance(act, dict):
        chain.append(act["sub"])
        act = act.get("act")
    return tuple(chain)


def _act_claim(chain: Sequence[str]) -> dict[str, Any] | None:
    act: dict[str, Any] | None = None
    for subject in reversed(chain):
        act = {"sub": subject, **({"act": act} if act else {})}
    return act


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(13).upper()}"


class _LoopbackServer(ThreadingHTTPServer):
    # socketserver's backlog of 5 makes a burst of cold verifications wait for SYN retries.
    request_queue_size = 256
    daemon_threads = True


class LocalIssuer:
    """A Grantex issuer in a box: a signing key, its JWKS, and a token factory."""

    def __init__(
        self,
        alg: Alg = "RS256",
        token_format: TokenShape = "standard",
        *,
        issuer: str = "https://issuer.grantex.test",
        developer_id: str = "dev_LOCALTEST",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.alg: Alg = alg
        self.token_format: TokenShape = token_format
        self.issuer = issuer.rstrip("/")
        self.jwks_uri = self.issuer + JWKS_PATH
        self.developer_id = developer_id
        self.clock = clock
        self.key = SigningKey(alg)
        self.retired_keys: list[SigningKey] = []
        self.jwks_hits = 0

    # -- keys -----------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.public_jwk]}

    def rotate_key(self) -> SigningKey:
        """Replace the signing key (no overlap: the old key leaves the JWKS)."""
        self.retired_keys.append(self.key)
        self.key = SigningKey(self.alg)
        return self.key

    def _serve_jwks(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != JWKS_PATH:
            return httpx.Response(404, json={"message": "not found"})
        self.jwks_hits += 1
        return httpx.Response(200, json=self.jwks(), headers={"Cache-Control": "no-store"})

    def transport(self) -> httpx.MockTransport:
        """An httpx transport answering the JWKS in-process (no socket)."""
        return httpx.MockTransport(self._serve_jwks)

    def guard(self, **options: Any) -> Guard:
        """A Guard trusting this issuer, fetching its JWKS through `transport()`."""
        options.setdefault("clock", self.clock)
        transport = self.transport()
        return Guard(
            issuer=self.issuer,
            jwks_uri=self.jwks_uri,
            http_client=httpx.Client(transport=transport),
            async_http_client=httpx.AsyncClient(transport=transport),
            **options,
        )

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve the JWKS over HTTP on 127.0.0.1; yields the JWKS URL."""
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                response = issuer._serve_jwks(httpx.Request("GET", "http://local" + self.path))
                body = response.content
                self.send_response(response.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _LoopbackServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}{JWKS_PATH}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    # -- tokens -----------------------------------------------------------------

    def mint(
        self,
        scopes: Sequence[str] = ("calendar:read",),
        *,
        principal_id: str = "user_test",
        agent: str = "did:grantex:ag_LOCALAGENT",
        audience: str | Sequence[str] | None = None,
        expires_in: float = 3600,
        issued_at: float | None = None,
        delegated_from: str | Grant | None = None,
        budget: tuple[Decimal | int | float, str] | None = None,
        bound_to: str | None = None,
        grant_id: str | None = None,
        token_format: TokenShape | None = None,
        kid: str | None = None,
        signing_key: SigningKey | None = None,
        claims: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed grant token. `claims`/`header` override or add members (None deletes one).

        `bound_to` is a `cnf.jkt` thumbprint (a DPoP-bound token); `budget` is
        `(amount, currency)`; `signing_key` signs with another key (a foreign token).
        """
        shape = token_format or self.token_format
        now = self.clock() if issued_at is None else issued_at
        parent = _Parent(delegated_from) if delegated_from is not None else None
        facts = {
            "sub": parent.principal_id if parent else principal_id,
            "jti": _new_id("tok"),
            "grant_id": grant_id or _new_id("grnt"),
            "agent_did": agent if agent.startswith(_DID_PREFIX) else _DID_PREFIX + agent,
            "scopes": list(scopes),
            "iat": int(now),
            "exp": int(now + expires_in),
        }
        payload = self._payload(shape, facts, parent, audience, budget, bound_to)
        key = signing_key or self.key
        token_header: dict[str, Any] = {"alg": key.alg, "kid": kid or key.kid}
        if shape != "v1":
            token_header["typ"] = "at+jwt"
        return key.compact(_merged(token_header, header), _merged(payload, claims))

    def _payload(self, shape: TokenShape, facts: dict[str, Any], parent: _Parent | None,
                 audience: str | Sequence[str] | None, budget: tuple[Any, str] | None,
                 bound_to: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"iss": self.issuer, "sub": facts["sub"]}
        if audience is not None:
            payload["aud"] = audience if isinstance(audience, str) else list(audience)
        payload.update(iat=facts["iat"], exp=facts["exp"], jti=facts["jti"])
        v1 = _v1_claims(self.developer_id, facts, parent, budget)
        if shape == "v1":
            return {**payload, **v1}
        payload.update(_standard_claims(self.developer_id, facts, parent, budget, bound_to))
        if shape == "dual":
            payload.update(v1)
            if any(any(c.isspace() for c in scope) for scope in facts["scopes"]):
                del payload["scope"]
        return payload


def _standard_claims(developer_id: str, facts: dict[str, Any], parent: _Parent | None,
                     budget: tuple[Any, str] | None, bound_to: str | None) -> dict[str, Any]:
    agent_did: str = facts["agent_did"]
    grant: dict[str, Any] = {"grant_id": facts["grant_id"], "agent_did": agent_did,
                             "developer_id": developer_id}
    claims: dict[str, Any] = {
        "client_id": agent_did.removeprefix(_DID_PREFIX),
        "scope": " ".join(facts["scopes"]),
    }
    if bound_to:
        claims["cnf"] = {"jkt": bound_to}
    if parent is not None:
        claims["act"] = _act_claim((parent.agent_did, *parent.chain))
        grant.update(parent_grant_id=parent.grant_id, delegation_depth=parent.depth + 1)
    if budget is not None:
        amount, currency = budget
        claims["authorization_details"] = [
            {"type": BUDGET_TYPE, "amount": _json_number(amount), "currency": currency}
        ]
    claims[GRANT_CLAIM] = grant
    return claims


def _v1_claims(developer_id: str, facts: dict[str, Any], parent: _Parent | None,
               budget: tuple[Any, str] | None) -> dict[str, Any]:
    claims: dict[str, Any] = {"agt": facts["agent_did"], "dev": developer_id,
                              "scp": list(facts["scopes"]), "grnt": facts["grant_id"]}
    if parent is not None:
        claims.update(parentAgt=parent.agent_did, parentGrnt=parent.grant_id,
                      delegationDepth=parent.depth + 1)
    if budget is not None:
        claims["bdg"] = _json_number(budget[0])
    return claims


def _json_number(amount: Decimal | int | float) -> int | float:
    if isinstance(amount, Decimal):
        return int(amount) if amount == amount.to_integral_value() else float(amount)
    return amount


def _merged(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = dict(base)
    for name, value in (overrides or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged
