"""The JWKS key cache: one refresh policy, a sync and an async driver.

`RefreshPolicy` decides, with no I/O, when to fetch, what to serve and what to
fail with. `KeyCache` drives it over HTTP: `httpx.Client` for `get_key`,
`httpx.AsyncClient` for `get_key_async` (the shape of httpx's own sync/async
auth flows). Every time decision reads the injected clock.

    state of the keys                      known kid           unknown kid
    -------------------------------------  ------------------  ------------------------------
    none, no attempt within the cooldown   fetch               fetch
    none, an attempt failed < cooldown ago 503 (Retry-After)   503
    fresh (age < ttl)                      serve               refetch once per cooldown;
                                                               otherwise 401 (503 while the
                                                               last refetch has failed)
    expired, not retried since expiry or   fetch               fetch
      the cooldown is over
    expired, a retry failed < cooldown ago serve stale while   503 (could not confirm)
                                           age < ttl+max_stale,
                                           then 503

The service sends `Cache-Control: no-store`; we ignore it and use our own
`ttl`, since the keys change only on rotation and unknown kids trigger a
refetch anyway. A failed fetch is never an exception of its own: it is
recorded, logged once (warning on logger "grantex_guard"), and callers see it
as stale keys being served or as `GrantexUnavailable` (503), never as a 401
blamed on the client nor as a raw network error.

Single flight: a driver notes the policy's generation before deciding; when a
fetch is needed it takes the lock (a `threading.Lock`, or an `asyncio.Lock`
per event loop) and fetches only if no attempt completed meanwhile, then
answers from the new state. So N concurrent cold lookups cost one fetch.

Fetches are bounded: one deadline for the whole fetch, no redirects,
`Accept-Encoding: identity`, status 200 with a JSON media type only, at most
`max_bytes` of body and `max_keys` entries. (The async driver bounds the fetch
with `asyncio.wait_for`; the sync one runs it on a worker thread and stops
waiting at the deadline, since httpx's sync timeouts only bound each read.)
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .errors import GrantexUnavailable, TokenInvalid
from .jose import b64url_decode, b64url_encode, decode_json_object, jwk_thumbprint

if TYPE_CHECKING:  # httpx loads on the first fetch, keeping `import grantex_guard` light
    import ssl

    import httpx

__all__ = ["KeyCache", "KeySet", "RefreshPolicy", "VerificationKey", "key_from_jwk"]

logger = logging.getLogger("grantex_guard")

MIN_RSA_BITS = 2048
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_REQUEST_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}

# Built once: the verify hot path should allocate as little as possible.
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_P256 = ec.SECP256R1()


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One usable public key from the JWKS, built once per fetch."""

    kid: str | None
    alg: str
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = field(compare=False)  # thumbprint says it
    thumbprint: str

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """True when `signature` is valid over `signing_input`; never raises."""
        key = self.key
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signing_input, _PKCS1V15, _SHA256)
                return True
            # JWS ES256 signatures are raw r||s (RFC 7518 section 3.4); cryptography wants DER.
            if len(signature) != 64:
                return False
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, signing_input, _ECDSA_SHA256)
            return True
        except (InvalidSignature, ValueError, TypeError):
            return False


class _SkipEntry(ValueError):
    """A JWKS entry we cannot use for grant tokens: skipped, never fatal."""


def _b64_int(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise _SkipEntry(f"member {name!r} missing or not a string")
    try:
        # Padding is tolerated in key material (it is not in tokens).
        return b64url_decode(value.rstrip("="))
    except ValueError:
        raise _SkipEntry(f"member {name!r} is not base64url") from None


def _minimal_b64(number: int) -> str:
    return b64url_encode(number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big"))


def _rsa_key(jwk: Mapping[str, Any], kid: str | None, source: str) -> VerificationKey:
    if jwk.get("alg", "RS256") != "RS256":
        raise _SkipEntry(f"alg {jwk.get('alg')!r} is not RS256")
    n = int.from_bytes(_b64_int(jwk, "n"), "big")
    e = int.from_bytes(_b64_int(jwk, "e"), "big")
    if n.bit_length() < MIN_RSA_BITS:
        logger.warning(
            "JWKS %s: skipping RSA key %r of %d bits (at least %d required)",
            source, kid, n.bit_length(), MIN_RSA_BITS,
        )
        raise _SkipEntry("RSA key too small")
    try:
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise _SkipEntry(f"invalid RSA key: {exc}") from None
    # Thumbprint of the canonical (minimal) encoding, so aliases with odd encodings still match.
    thumbprint = jwk_thumbprint({"kty": "RSA", "n": _minimal_b64(n), "e": _minimal_b64(e)})
    return VerificationKey(kid, "RS256", key, thumbprint)


def _ec_key(jwk: Mapping[str, Any], kid: str | None) -> VerificationKey:
    if jwk.get("crv") != "P-256":
        raise _SkipEntry(f"curve {jwk.get('crv')!r} is not P-256")
    if jwk.get("alg", "ES256") != "ES256":
        raise _SkipEntry(f"alg {jwk.get('alg')!r} is not ES256")
    x, y = _b64_int(jwk, "x"), _b64_int(jwk, "y")
    if len(x) != 32 or len(y) != 32:
        raise _SkipEntry("P-256 coordinates must be 32 bytes")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(_P256, b"\x04" + x + y)
    except ValueError as exc:
        raise _SkipEntry(f"invalid P-256 point: {exc}") from None
    thumbprint = jwk_thumbprint(
        {"kty": "EC", "crv": "P-256", "x": b64url_encode(x), "y": b64url_encode(y)}
    )
    return VerificationKey(kid, "ES256", key, thumbprint)


def _entry_key(jwk: Mapping[str, Any], source: str) -> VerificationKey:
    """The key an entry publishes, built from its public members only."""
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _SkipEntry("kid is not a string")
    if jwk.get("use", "sig") != "sig":
        raise _SkipEntry(f"use {jwk.get('use')!r} is not sig")
    leaked = [name for name in _PRIVATE_MEMBERS if name in jwk]
    if leaked:
        logger.warning(
            "JWKS %s publishes private key members %s for key %r: ignored, but rotate that key",
            source, ", ".join(leaked), kid,
        )
    kty = jwk.get("kty")
    if kty == "RSA":
        return _rsa_key(jwk, kid, source)
    if kty == "EC":
        return _ec_key(jwk, kid)
    raise _SkipEntry(f"key type {kty!r} cannot sign RS256/ES256 grant tokens")


def key_from_jwk(jwk: Mapping[str, Any], alg: str, *, source: str) -> VerificationKey:
    """The public key a JWK holds, for `alg` (RS256 or ES256); ValueError when unusable."""
    expected = {"RS256": "RSA", "ES256": "EC"}.get(alg)
    if jwk.get("kty") != expected:
        raise ValueError(f"key type {jwk.get('kty')!r} cannot verify {alg}")
    return _entry_key(jwk, source)


class KeySet:
    """The usable keys of one JWKS document; immutable, parsed once per fetch."""

    __slots__ = ("_by_id", "_sole_by_alg", "entries", "thumbprints")

    def __init__(
        self,
        entries: Iterable[VerificationKey],
        ambiguous: Iterable[tuple[str | None, str]] = (),
    ) -> None:
        """`entries`: every usable key; `ambiguous`: (kid, alg) pairs no lookup may use."""
        self.entries = tuple(entries)
        excluded = set(ambiguous)
        self._by_id = {
            (k.kid, k.alg): k
            for k in self.entries
            if k.kid is not None and (k.kid, k.alg) not in excluded
        }
        self._sole_by_alg: dict[str, VerificationKey] = {}
        for alg in {k.alg for k in self.entries}:
            fitting = [k for k in self.entries if k.alg == alg]
            if len({k.thumbprint for k in fitting}) == 1:
                self._sole_by_alg[alg] = fitting[0]
        self.thumbprints = frozenset(k.thumbprint for k in self.entries)

    @classmethod
    def parse(cls, document: object, *, source: str, max_keys: int) -> KeySet:
        """Read a JWKS document; ValueError saying what is wrong when it is malformed.

        Entries that cannot sign RS256/ES256 grant tokens are skipped; a kid
        claimed by two different keys for one alg is dropped for that alg.
        """
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        if "keys" not in document:
            raise ValueError('no "keys" member')
        entries = document["keys"]
        if not isinstance(entries, list):
            raise ValueError(f'"keys" is a {type(entries).__name__}, not a list')
        if len(entries) > max_keys:
            raise ValueError(f"{len(entries)} keys, more than max_keys={max_keys}")
        usable: list[VerificationKey] = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"keys[{index}] is a {type(entry).__name__}, not an object")
            try:
                usable.append(_entry_key(entry, source))
            except _SkipEntry as exc:
                logger.debug("JWKS %s: skipping keys[%d] (kid %r): %s",
                             source, index, entry.get("kid"), exc)
        keys = cls(_unique(usable), _ambiguous_ids(usable, source))
        if not keys._by_id and not keys._sole_by_alg:
            raise ValueError(f"no usable RS256/ES256 key among {len(entries)} entries")
        return keys

    def find(self, kid: str | None, alg: str) -> VerificationKey | None:
        """The key `kid` names for `alg`; without kid, the one distinct key for `alg`."""
        if kid is None:
            return self._sole_by_alg.get(alg)
        return self._by_id.get((kid, alg))

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"KeySet({[(k.kid, k.alg) for k in self.entries]!r})"


def _unique(keys: list[VerificationKey]) -> list[VerificationKey]:
    """The keys without exact repeats (same kid, alg and key)."""
    return list(dict.fromkeys(keys))


def _ambiguous_ids(keys: list[VerificationKey], source: str) -> set[tuple[str | None, str]]:
    """(kid, alg) pairs that two different keys claim: no lookup may pick either."""
    thumbprints: dict[tuple[str | None, str], set[str]] = {}
    for key in keys:
        if key.kid is not None:
            thumbprints.setdefault((key.kid, key.alg), set()).add(key.thumbprint)
    ambiguous = {ident for ident, seen in thumbprints.items() if len(seen) > 1}
    for kid, alg in sorted(ambiguous, key=str):
        logger.warning("JWKS %s: kid %r names two different %s keys: ignoring it", source, kid, alg)
    return ambiguous


@dataclass(frozen=True, slots=True)
class _State:
    """One consistent snapshot, swapped whole so lock-free readers never see a mix."""

    keys: KeySet | None = None
    fetched_at: float = 0.0  # meaningful only when keys is not None
    last_attempt_at: float | None = None
    last_error: str | None = None  # None when the last attempt succeeded
    generation: int = 0  # completed attempts
    key_epoch: int = 0


class RefreshPolicy:
    """When to fetch, what to serve, what to fail with: no I/O, thread-safe."""

    def __init__(
        self, jwks_uri: str, *, ttl: float, refresh_cooldown: float, max_stale: float
    ) -> None:
        self.jwks_uri = jwks_uri
        self.ttl = ttl
        self.refresh_cooldown = refresh_cooldown
        self.max_stale = max_stale
        self._state = _State()
        self._write_lock = threading.Lock()

    @property
    def keys(self) -> KeySet | None:
        return self._state.keys

    @property
    def generation(self) -> int:
        return self._state.generation

    @property
    def key_epoch(self) -> int:
        return self._state.key_epoch

    def decide(self, kid: str | None, alg: str, now: float) -> VerificationKey | None:
        """The key to use, None when a fetch is needed first, or the error to answer with."""
        state = self._state
        if state.keys is not None and now - state.fetched_at < self.ttl:
            key = state.keys.find(kid, alg)
            if key is not None:
                return key
            if self._cooldown_over(state, now):
                return None
            raise self._unknown_key(state, kid, alg, now)
        if self._cooldown_over(state, now) or not self._retried_since_expiry(state):
            return None
        return self._resolve(state, kid, alg, now)

    def resolve(self, kid: str | None, alg: str, now: float) -> VerificationKey:
        """Like `decide` after a fetch (ours or another caller's): never asks for one."""
        return self._resolve(self._state, kid, alg, now)

    def record_success(self, keys: KeySet, now: float) -> None:
        with self._write_lock:
            old = self._state
            removed = old.keys is not None and not old.keys.thumbprints <= keys.thumbprints
            self._state = _State(
                keys=keys,
                fetched_at=now,
                last_attempt_at=now,
                generation=old.generation + 1,
                key_epoch=old.key_epoch + 1 if removed else old.key_epoch,
            )
        logger.debug("JWKS %s: %d usable keys", self.jwks_uri, len(keys))

    def record_failure(self, reason: str, now: float) -> None:
        with self._write_lock:
            old = self._state
            self._state = _State(
                keys=old.keys,
                fetched_at=old.fetched_at,
                last_attempt_at=now,
                last_error=reason,
                generation=old.generation + 1,
                key_epoch=old.key_epoch,
            )
        logger.warning("JWKS refresh from %s failed: %s; %s",
                       self.jwks_uri, reason, self._serving(old, now))

    def _serving(self, state: _State, now: float) -> str:
        if state.keys is None:
            return "no keys to serve"
        age = now - state.fetched_at
        if age >= self.ttl + self.max_stale:
            return f"keys fetched {age:.0f} s ago are too old to serve"
        return f"serving keys fetched {age:.0f} s ago"

    def _resolve(
        self, state: _State, kid: str | None, alg: str, now: float
    ) -> VerificationKey:
        if state.keys is None:
            raise self._unavailable(state, now, "no keys")
        age = now - state.fetched_at
        if age >= self.ttl + self.max_stale:
            raise self._unavailable(
                state, now, f"keys fetched {age:.0f} s ago are past ttl + max_stale"
            )
        key = state.keys.find(kid, alg)
        if key is not None:
            return key
        if age < self.ttl:
            raise self._unknown_key(state, kid, alg, now)
        raise self._unavailable(state, now, f"cannot confirm key {kid!r} for {alg}")

    def _cooldown_over(self, state: _State, now: float) -> bool:
        last = state.last_attempt_at
        return last is None or now - last >= self.refresh_cooldown

    def _retried_since_expiry(self, state: _State) -> bool:
        last = state.last_attempt_at
        return last is not None and last >= state.fetched_at + self.ttl

    def _unknown_key(
        self, state: _State, kid: str | None, alg: str, now: float
    ) -> TokenInvalid | GrantexUnavailable:
        # While the refetch that should have found the key is failing, the
        # client may be right (a rotation we cannot see yet): do not blame it.
        if state.last_error is not None:
            return self._unavailable(state, now, f"cannot confirm key {kid!r} for {alg}")
        return TokenInvalid(
            "The grant token was signed by an unknown key.",
            detail=f"no key {kid!r} for {alg} in {self.jwks_uri}",
        )

    def _unavailable(self, state: _State, now: float, what: str) -> GrantexUnavailable:
        elapsed = 0.0 if state.last_attempt_at is None else now - state.last_attempt_at
        retry_after = math.ceil(max(1.0, self.refresh_cooldown - elapsed))
        cause = f": last fetch failed: {state.last_error}" if state.last_error else ""
        return GrantexUnavailable(detail=f"JWKS {self.jwks_uri}: {what}{cause}",
                                  retry_after=retry_after)


class _FetchFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fetch_errors() -> tuple[type[BaseException], ...]:
    """What a fetch may raise; each becomes a recorded failure, never a 500."""
    import httpx

    return (_FetchFailed, asyncio.TimeoutError, httpx.HTTPError, httpx.StreamError,
            httpx.InvalidURL, OSError, ValueError)


def _describe(exc: BaseException, timeout: float) -> str:
    import httpx

    if isinstance(exc, (httpx.TimeoutException, TimeoutError, asyncio.TimeoutError)):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, _FetchFailed):
        return exc.reason
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _check_response(response: httpx.Response, max_bytes: int) -> None:
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location", "nowhere")
        raise _FetchFailed(f"redirect refused (status {status} to {location})")
    if status != 200:
        raise _FetchFailed(f"status {status}")
    content_type = response.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not _is_json_media_type(media_type):
        raise _FetchFailed(f"Content-Type {content_type or 'missing'!s}, not JSON")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise _FetchFailed(f"Content-Encoding {encoding} refused (identity was asked for)")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise _FetchFailed(f"body larger than {max_bytes} bytes (Content-Length {length})")


def _is_json_media_type(media_type: str) -> bool:
    main, _, sub = media_type.partition("/")
    return bool(main) and (media_type == "application/json" or sub.endswith("+json"))


class _Body:
    """Accumulates the body and fails as soon as it would pass the size bound."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        if len(self.data) + len(chunk) > self.max_bytes:
            raise _FetchFailed(f"body larger than {self.max_bytes} bytes")
        self.data += chunk


class _SyncFetch:
    """One GET on a worker thread, so that the caller stops waiting at the deadline.

    httpx's sync timeouts bound each network operation, not their sum, and cannot be
    shrunk as the deadline nears: httpcore reads the read timeout once per phase (the
    headers, the body), so headers sent just in time followed by a body dripped one
    byte per almost-`timeout` pass every read timeout; and a thread blocked on a socket
    cannot be interrupted. So the exchange runs on a daemon thread while the caller
    waits for it until the deadline, then raises TimeoutError (what a timed-out fetch
    always raised). The worker drops the connection at its first chunk of body past
    the deadline; until then httpx's per-operation timeout (the same `timeout`) bounds it.
    """

    def __init__(self, client: httpx.Client, url: str, *, timeout: float, max_bytes: int) -> None:
        self._client = client
        self._url = url
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._finished = threading.Event()
        self._outcome: bytes | BaseException = b""

    def run(self, deadline: float) -> bytes:
        """The body, or what the exchange raised; TimeoutError once `deadline` passes."""
        # In a copy of the caller's context, as if called here (e.g. tracing spans).
        context = contextvars.copy_context()
        worker = threading.Thread(target=context.run, args=(self._work, deadline),
                                  name="grantex-guard-jwks-fetch", daemon=True)
        worker.start()
        if not self._finished.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError
        outcome, self._outcome = self._outcome, b""  # no cycle through the traceback
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _work(self, deadline: float) -> None:
        try:
            self._outcome = self._download(deadline)
        except BaseException as exc:  # handed to the caller, who raises it
            self._outcome = exc
        finally:
            self._finished.set()

    def _download(self, deadline: float) -> bytes:
        with self._client.stream("GET", self._url, headers=_REQUEST_HEADERS,
                                 follow_redirects=False, timeout=self._timeout) as response:
            _check_response(response, self._max_bytes)
            body = _Body(self._max_bytes)
            # iter_bytes, not iter_raw: with identity encoding they are the same bytes, and
            # only iter_bytes also serves responses already read into memory (e.g. from an
            # httpx.MockTransport).
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise TimeoutError  # the caller has given up waiting
                body.add(chunk)
        return bytes(body.data)


def _parse_body(body: bytes, source: str, max_keys: int) -> KeySet:
    try:
        document = decode_json_object(body)
    except ValueError as exc:
        raise _FetchFailed(f"body is not a JSON object ({exc})") from None
    try:
        return KeySet.parse(document, source=source, max_keys=max_keys)
    except ValueError as exc:
        raise _FetchFailed(f"malformed JWKS: {exc}") from None


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


class KeyCache:
    """Keys from one JWKS URL, fetched lazily and refreshed by `RefreshPolicy`.

    Nothing is fetched in `__init__`; `warm_up()` / `warm_up_async()` fetch
    ahead of traffic. User clients are used as given and never closed;
    `close()` / `aclose()` release only what the cache opened.
    """

    def __init__(
        self,
        jwks_uri: str,
        *,
        clock: Callable[[], float],
        ttl: float = 600,
        refresh_cooldown: float = 30,
        max_stale: float = 3600,
        timeout: float = 5,
        max_bytes: int = 65536,
        max_keys: int = 128,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
    ) -> None:
        for name, value in (("ttl", ttl), ("timeout", timeout), ("max_bytes", max_bytes),
                            ("max_keys", max_keys)):
            _positive(name, value)
        if refresh_cooldown < 0 or max_stale < 0:
            raise ValueError("refresh_cooldown and max_stale must not be negative")
        self.jwks_uri = jwks_uri
        self._clock = clock
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_keys = max_keys
        self._policy = RefreshPolicy(
            jwks_uri, ttl=ttl, refresh_cooldown=refresh_cooldown, max_stale=max_stale
        )
        self._user_client = http_client
        self._own_client: httpx.Client | None = None
        self._user_async_client = async_http_client
        self._ssl_context: ssl.SSLContext | None = None
        self._sync_lock = threading.Lock()
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._loop_locks_guard = threading.Lock()

    @property
    def fetch_count(self) -> int:
        """Fetch attempts made so far, successful or not."""
        return self._policy.generation

    @property
    def key_epoch(self) -> int:
        """Bumped whenever a successful fetch removed a key that was there before."""
        return self._policy.key_epoch

    @property
    def keys(self) -> KeySet | None:
        """The last good key set, or None before the first successful fetch."""
        return self._policy.keys

    # -- sync driver ---------------------------------------------------------------------

    def get_key(self, kid: str | None, alg: str) -> VerificationKey:
        """The key for a token header; TokenInvalid or GrantexUnavailable otherwise."""
        seen = self._policy.generation
        key = self._policy.decide(kid, alg, self._clock())
        if key is not None:
            return key
        with self._sync_lock:
            if self._policy.generation == seen:
                self._fetch_sync()
        return self._policy.resolve(kid, alg, self._clock())

    def warm_up(self) -> None:
        """Fetch the keys now; GrantexUnavailable when that fails."""
        with self._sync_lock:
            failure = self._fetch_sync()
        self._raise_for(failure)

    def close(self) -> None:
        """Close the HTTP client the cache created (never one that was passed in)."""
        client, self._own_client = self._own_client, None
        if client is not None:
            client.close()

    def _fetch_sync(self) -> str | None:
        """One attempt, recorded in the policy; returns the failure reason, if any."""
        try:
            keys = self._download_sync()
        except _fetch_errors() as exc:
            return self._record_failure(exc)
        self._policy.record_success(keys, self._clock())
        return None

    def _download_sync(self) -> KeySet:
        client = self._sync_client()
        # Real time, not the injected clock: this bounds actual waiting. It starts once the
        # client exists: building one is local, one-time setup (imports, the CA bundle).
        deadline = time.monotonic() + self._timeout
        fetch = _SyncFetch(client, self.jwks_uri, timeout=self._timeout, max_bytes=self._max_bytes)
        return _parse_body(fetch.run(deadline), self.jwks_uri, self._max_keys)

    def _sync_client(self) -> httpx.Client:
        if self._user_client is not None:
            return self._user_client
        if self._own_client is None:
            import httpx

            self._own_client = httpx.Client(follow_redirects=False, timeout=self._timeout)
        return self._own_client

    # -- async driver --------------------------------------------------------------------

    async def get_key_async(self, kid: str | None, alg: str) -> VerificationKey:
        """`get_key` for async code: never blocks the event loop."""
        seen = self._policy.generation
        key = self._policy.decide(kid, alg, self._clock())
        if key is not None:
            return key
        async with self._async_lock():
            if self._policy.generation == seen:
                await self._fetch_async()
        return self._policy.resolve(kid, alg, self._clock())

    async def warm_up_async(self) -> None:
        """Fetch the keys now; GrantexUnavailable when that fails."""
        async with self._async_lock():
            failure = await self._fetch_async()
        self._raise_for(failure)

    async def aclose(self) -> None:
        """Release what the cache opened (the async path keeps no client between fetches)."""
        self.close()

    def _async_lock(self) -> asyncio.Lock:
        # One lock per event loop: an asyncio.Lock is bound to the loop that first uses
        # it, and one Guard may serve several loops (e.g. Django's async_to_sync).
        loop = asyncio.get_running_loop()
        with self._loop_locks_guard:
            lock = self._loop_locks.get(loop)
            if lock is None:
                lock = self._loop_locks[loop] = asyncio.Lock()
        return lock

    async def _fetch_async(self) -> str | None:
        try:
            keys = await asyncio.wait_for(self._download_async(), self._timeout)
        except _fetch_errors() as exc:
            return self._record_failure(exc)
        self._policy.record_success(keys, self._clock())
        return None

    async def _download_async(self) -> KeySet:
        if self._user_async_client is not None:
            return await self._download_with(self._user_async_client)
        import httpx

        # A short-lived client per fetch (fetches are rare), so no client is tied to a loop.
        # Its TLS context is built once, in a worker thread: loading CA files is blocking I/O.
        if self._ssl_context is None:
            self._ssl_context = await asyncio.to_thread(httpx.create_ssl_context)
        async with httpx.AsyncClient(follow_redirects=False, timeout=self._timeout,
                                     verify=self._ssl_context) as client:
            return await self._download_with(client)

    async def _download_with(self, client: httpx.AsyncClient) -> KeySet:
        async with client.stream("GET", self.jwks_uri, headers=_REQUEST_HEADERS,
                                 follow_redirects=False, timeout=self._timeout) as response:
            _check_response(response, self._max_bytes)
            body = _Body(self._max_bytes)
            async for chunk in response.aiter_bytes():
                body.add(chunk)
        return _parse_body(bytes(body.data), self.jwks_uri, self._max_keys)

    # -- shared --------------------------------------------------------------------------

    def _record_failure(self, exc: BaseException) -> str:
        reason = _describe(exc, self._timeout)
        self._policy.record_failure(reason, self._clock())
        return reason

    def _raise_for(self, failure: str | None) -> None:
        if failure is not None:
            raise GrantexUnavailable(
                detail=f"JWKS {self.jwks_uri}: {failure}",
                retry_after=math.ceil(max(1.0, self._policy.refresh_cooldown)),
            )
