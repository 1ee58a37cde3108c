"""RFC 9449 proof of possession: checking a DPoP proof against a request, replay stores.

`check_proof` is pure (the clock is passed in); remembering proof ids is the
job of a `ReplayStore`: `MemoryReplayStore` for one process, and
`RedisReplayStore` when several workers serve one API, so a proof replayed
to another worker is refused too. A store that cannot answer fails closed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from ._redis import RedisClients
from .errors import GrantexUnavailable, ProofInvalid, TokenInvalid
from .jose import b64url_encode, split_compact
from .jwks import VerificationKey, key_from_jwk

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = [
    "DPOP_ALGORITHMS",
    "MemoryReplayStore",
    "Proof",
    "RedisReplayStore",
    "ReplayStore",
    "access_token_hash",
    "check_proof",
    "normalize_url",
    "replay_key",
]

DPOP_ALGORITHMS = ("ES256", "RS256")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_PROOF_BYTES = 8192
_MAX_JTI_LENGTH = 256


class Proof(NamedTuple):
    """A proof that passed every check except replay, which the store decides."""

    jti: str
    issued_at: float
    thumbprint: str


def _invalid(detail: str) -> ProofInvalid:
    return ProofInvalid(f"The DPoP proof is invalid: {detail}.", detail=detail)


def access_token_hash(token: str) -> str:
    """`ath`: base64url SHA-256 of the access token's ASCII bytes."""
    return b64url_encode(hashlib.sha256(token.encode("ascii")).digest())


@functools.lru_cache(maxsize=1024)  # a pure function of a short string: the same URLs recur
def normalize_url(url: str) -> str:
    """Scheme and host lower-cased, default port dropped, query and fragment removed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port in {url!r}") from None
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def _proof_key(header: dict[str, Any]) -> VerificationKey:
    if header.get("typ") != "dpop+jwt":
        raise _invalid(f"typ must be dpop+jwt, got {header.get('typ')!r}")
    if "crit" in header:  # RFC 7515 4.1.11: extensions we do not implement must be refused
        raise _invalid("its crit header names extensions that are not supported")
    alg = header.get("alg")
    if alg not in DPOP_ALGORITHMS:
        raise _invalid(f"alg {alg!r} is not one of {', '.join(DPOP_ALGORITHMS)}")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise _invalid("the header carries no public jwk")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise _invalid("the header's jwk contains private key members")
    try:
        return key_from_jwk(jwk, alg, source="DPoP proof")
    except ValueError as exc:
        raise _invalid(f"unusable jwk: {exc}") from None


# An agent signs every proof with one key under one header, byte for byte: the key of an
# accepted header, by its encoding, skips decoding it, checking it and building the key
# (with its thumbprint) again. Only accepted headers are kept; bounded.
_PROOF_HEADER_CACHE_SIZE = 1024
_PROOF_HEADERS: dict[bytes, VerificationKey] = {}


def _claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise _invalid(f"claim {name} is missing or not a string")
    return value


def _check_time(claims: dict[str, Any], now: float, max_age: float, leeway: float) -> float:
    issued = claims.get("iat")
    if isinstance(issued, bool) or not isinstance(issued, (int, float)):
        raise _invalid("claim iat is missing or not a number")
    if issued > now + leeway:
        raise _invalid("iat is in the future")
    if now - issued > max_age + leeway:
        raise _invalid(f"the proof is older than {max_age:g} s")
    return float(issued)


def _check_target(claims: dict[str, Any], method: str, url: str) -> None:
    if _claim(claims, "htm") != method.upper():
        raise _invalid(f"htm {claims['htm']!r} does not match the request method {method.upper()}")
    htu = _claim(claims, "htu")
    if "?" in htu or "#" in htu:
        raise _invalid("htu must not carry a query or fragment")
    try:
        matches = normalize_url(htu) == normalize_url(url)
    except ValueError:
        matches = False
    if not matches:
        raise _invalid(f"htu {htu!r} does not match the request URL")


def check_proof(proof: str, *, access_token: str, thumbprint: str, method: str, url: str,
                now: float, max_age: float = 300, leeway: float = 10) -> Proof:
    """Check a DPoP proof for this request and token; ProofInvalid says what is wrong.

    `thumbprint` is the token's `cnf.jkt`; `url` is the request URL as the
    client addressed it (the adapters resolve proxies before calling).
    """
    try:
        compact = split_compact(proof, _MAX_PROOF_BYTES)
        key = _PROOF_HEADERS.get(compact.header_b64)
        if key is None:
            key = _proof_key(compact.header())
            if len(_PROOF_HEADERS) >= _PROOF_HEADER_CACHE_SIZE:
                _PROOF_HEADERS.clear()
            _PROOF_HEADERS[compact.header_b64] = key
    except TokenInvalid as exc:
        raise _invalid(f"it is not a compact JWS ({exc.detail})") from None
    if not key.verify(compact.signing_input, compact.signature):
        raise _invalid("its signature does not verify with its jwk")
    try:
        claims = compact.payload()
    except TokenInvalid as exc:
        raise _invalid(f"its claims are not a JSON object ({exc.detail})") from None
    if not hmac.compare_digest(key.thumbprint.encode(), thumbprint.encode()):
        raise _invalid("it is signed by a key other than the one the token is bound to")
    if not hmac.compare_digest(_claim(claims, "ath").encode(), access_token_hash(access_token).encode()):
        raise _invalid("ath does not match the access token")
    _check_target(claims, method, url)
    issued = _check_time(claims, now, max_age, leeway)
    jti = _claim(claims, "jti")
    if len(jti) > _MAX_JTI_LENGTH:
        raise _invalid("jti is too long")
    return Proof(jti, issued, key.thumbprint)


def replay_key(proof: Proof) -> str:
    """Proof ids are unique per key: the store remembers the pair, hashed to a fixed size."""
    return hashlib.sha256(f"{proof.thumbprint}.{proof.jti}".encode()).hexdigest()


class ReplayStore(Protocol):
    """Remembers proof ids until they expire; `first_use` is True only the first time."""

    def first_use(self, key: str, expires_at: float) -> bool: ...

    async def first_use_async(self, key: str, expires_at: float) -> bool: ...


class MemoryReplayStore:
    """Proof ids of one process, bounded: past `max_entries` the oldest are forgotten.

    Forgetting early only reopens a replay window for proofs that are already
    the oldest in the window; the bound keeps memory fixed under a flood.
    """

    def __init__(self, *, clock: Callable[[], float], max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._clock = clock
        self._max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            known = self._seen.get(key)
            if known is not None and known > now:
                return False
            self._seen[key] = expires_at
            self._seen.move_to_end(key)
            self._prune(now)
        return True

    async def first_use_async(self, key: str, expires_at: float) -> bool:
        return self.first_use(key, expires_at)

    def _prune(self, now: float) -> None:
        while self._seen:
            oldest_key, oldest_expiry = next(iter(self._seen.items()))
            if oldest_expiry > now and len(self._seen) <= self._max_entries:
                return
            del self._seen[oldest_key]

    def __len__(self) -> int:
        return len(self._seen)


class RedisReplayStore:
    """Proof ids shared by every worker through Redis (`SET NX EXAT`); fails closed.

    Pass a URL, or ready clients (`client=` for the sync path, `async_client=`
    for the async path; redis-py's `redis.Redis` / `redis.asyncio.Redis`).
    """

    def __init__(self, url: str | None = None, *, client: redis.Redis | None = None,
                 async_client: redis.asyncio.Redis | None = None,
                 prefix: str = "grantex:dpop:", socket_timeout: float = 2,
                 max_connections: int = 32) -> None:
        if url is None and (client is None or async_client is None):
            raise ValueError("pass a Redis URL, or both client= and async_client=")
        self._made = (RedisClients(url, timeout=socket_timeout, max_connections=max_connections)
                      if url is not None else None)
        self._client = client
        self._async_client_given = async_client
        self._prefix = prefix

    def _sync_client(self) -> redis.Redis:
        if self._client is not None:
            return self._client
        assert self._made is not None  # a URL was given (checked in __init__)
        return self._made.sync()

    def _async_client(self) -> redis.asyncio.Redis:
        if self._async_client_given is not None:
            return self._async_client_given
        assert self._made is not None
        return self._made.for_running_loop()

    def first_use(self, key: str, expires_at: float) -> bool:
        import redis

        try:
            created = self._sync_client().set(self._prefix + key, 1, nx=True,
                                              exat=max(1, int(expires_at) + 1))
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        return bool(created)

    async def first_use_async(self, key: str, expires_at: float) -> bool:
        import redis

        try:
            created = await self._async_client().set(self._prefix + key, 1, nx=True,
                                                     exat=max(1, int(expires_at) + 1))
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        return bool(created)

    def close(self) -> None:
        """Close the sync client made from the URL (given clients are the caller's to close)."""
        if self._made is not None:
            self._made.close()

    async def aclose(self) -> None:
        """Close the asyncio client of the running loop; forget those of closed loops."""
        if self._made is not None:
            await self._made.aclose()


def _unavailable(exc: BaseException) -> GrantexUnavailable:
    return GrantexUnavailable(detail=f"DPoP replay store unreachable: {type(exc).__name__}: {exc}",
                              retry_after=5)
