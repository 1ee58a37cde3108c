"""Guard: the verification pipeline, once, for the sync and the async caller.

    size -> header (alg, typ, crit, kid) -> key by kid and type -> signature
    -> exp / iat / nbf -> iss -> claims of the four shapes -> (token cache)
    -> audience -> delegation limit -> scopes

Everything up to the token cache is a fact about the token and is cached
(bounded, keyed by a hash, never past `exp` nor `jwks_ttl`); everything after
depends on the route and runs on every call. Only the key lookup differs
between `verify` and `verify_async`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from cachetools import LRUCache

from .claims import read_audience, read_grant, read_time
from .config import GuardConfig
from .dpop import MemoryReplayStore, Proof, ReplayStore, check_proof, replay_key
from .errors import DelegationDenied, GuardError, ProofInvalid, ProofRequired, TokenExpired, TokenInvalid
from .grant import Grant
from .jose import CompactToken, split_compact
from .jwks import KeyCache, VerificationKey
from .revocation import DEFAULT_HIGH_STAKES, RevocationChecker, RevocationStore
from .scopes import Requirement, requirement

if TYPE_CHECKING:
    import httpx

__all__ = ["Guard"]

logger = logging.getLogger("grantex_guard")

_LENIENT_TYPES = frozenset({None, "jwt", "at+jwt", "application/at+jwt"})
_STRICT_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_MAX_KID_LENGTH = 256
_HEADER_CACHE_SIZE = 256  # distinct valid headers are few: one per (alg, kid, typ)

Scopes = Iterable[str] | Requirement


class _Verified(NamedTuple):
    grant: Grant
    expires: int
    key_epoch: int
    cache_until: float
    # Whether the configured audience and delegation limit admit it: both depend only on
    # the token and this guard, so a cached token is not checked against them again.
    fits_config: bool


class Guard:
    """Verifies Grantex grant tokens for one API. Thread-safe; share one per process.

    Options are described in the README's configuration reference; every one
    is validated here, so a misconfiguration fails at start-up, not on the
    first request.
    """

    def __init__(
        self,
        issuer: str | None = None,
        jwks_uri: str | None = None,
        *,
        audience: str | Sequence[str] | None = None,
        audience_check: Literal["on", "off"] = "on",
        algorithms: Sequence[str] = ("RS256", "ES256"),
        legacy_claims: bool = True,
        leeway: float = 30,
        max_delegation_depth: int = 3,
        max_token_bytes: int = 8192,
        clock: Callable[[], float] | None = None,
        jwks_ttl: float = 600,
        jwks_refresh_cooldown: float = 30,
        jwks_max_stale: float = 3600,
        http_timeout: float = 5,
        jwks_max_bytes: int = 65536,
        jwks_max_keys: int = 128,
        token_cache_size: int = 10_000,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        allow_http: bool = False,
        realm: str = "grantex",
        resource: str | None = None,
        proof_of_possession: Literal["enforce", "require", "warn", "off"] = "enforce",
        dpop_max_age: float = 300,
        dpop_leeway: float = 10,
        replay_store: ReplayStore | None = None,
        public_base_url: str | None = None,
        trust_forwarded_headers: bool = False,
        api_key: str | None = None,
        api_base_url: str | None = None,
        revocation_check: Literal["never", "high_stakes", "always"] | None = None,
        revocation_source: Literal["status", "grants_verify", "tokens_verify", "feed"] = "status",
        revocation_cache_ttl: float = 60,
        high_stakes_scopes: Sequence[str] = DEFAULT_HIGH_STAKES,
        fail_open: bool = False,
        revocation_store: RevocationStore | None = None,
        feed_max_staleness: float = 5,
        feed_fallback: Literal["online"] | None = None,
    ) -> None:
        options = {name: value for name, value in locals().items() if name != "self"}
        self.config = config = GuardConfig(**options)
        self._clock = config.now
        self._keys = KeyCache(
            config.jwks_uri or "",
            clock=self._clock,
            ttl=config.jwks_ttl,
            refresh_cooldown=config.jwks_refresh_cooldown,
            max_stale=config.jwks_max_stale,
            timeout=config.http_timeout,
            max_bytes=config.jwks_max_bytes,
            max_keys=config.jwks_max_keys,
            http_client=config.http_client,
            async_http_client=config.async_http_client,
        )
        self._algorithms = frozenset(config.algorithms)
        self._accepted_types = _LENIENT_TYPES if config.legacy_claims else _STRICT_TYPES
        # LRU-bounded in size; each entry carries its own deadline, checked on every read.
        # Least recently used first; an OrderedDict moves and evicts in C, under the lock.
        self._cache: OrderedDict[bytes, _Verified] | None = (
            OrderedDict() if config.token_cache_size else None)
        self._cache_size = config.token_cache_size
        self._cache_lock = threading.Lock()
        self._headers: dict[bytes, tuple[str, str | None]] = {}
        self._max_bytes = config.max_token_bytes
        # `is None`, not `or`: an empty MemoryReplayStore has len() 0 and is falsy.
        self._replay_store: ReplayStore = (config.replay_store if config.replay_store is not None
                                           else MemoryReplayStore(clock=self._clock))
        self._warned_unproven: LRUCache[str, bool] = LRUCache(4096)
        self._revocation = RevocationChecker(
            issuer=config.issuer or "",
            api_key=config.api_key,
            api_base_url=config.api_base_url,
            mode=config.revocation_check,
            source=config.revocation_source,
            cache_ttl=config.revocation_cache_ttl,
            high_stakes_scopes=config.high_stakes_scopes,
            fail_open=config.fail_open,
            store=config.revocation_store,
            clock=self._clock,
            timeout=config.http_timeout,
            http_client=config.http_client,
            async_http_client=config.async_http_client,
            feed_max_staleness=config.feed_max_staleness,
            feed_fallback=config.feed_fallback,
        )
        self._feed_started = self._revocation.feed is None
        self._feed_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> Guard:
        """Build from a settings mapping with upper-case keys (`{"ISSUER": ..., "AUDIENCE": ...}`)."""
        return cls(**GuardConfig.options_from_settings(settings))

    @property
    def keys(self) -> KeyCache:
        """The key cache (fetch counts and the current key set, for diagnostics)."""
        return self._keys

    # -- the two entry points -------------------------------------------------

    def verify(
        self,
        token: str,
        scopes: Scopes = (),
        any_scopes: Iterable[str] = (),
        audience: str | Sequence[str] | None = None,
        dpop: str | None = None,
        method: str | None = None,
        url: str | None = None,
        revocation: bool | None = None,
    ) -> Grant:
        """Verify `token` and authorise it for `scopes`; raise a GuardError otherwise.

        `dpop`, `method` and `url` describe the request: a key-bound token (`cnf.jkt`)
        needs its DPoP proof for exactly this method and URL. `audience` replaces
        the configured audience for this call; `revocation=True` forces a
        confirmed revocation check whatever the policy.
        """
        required = self._requirement(scopes, any_scopes)
        try:
            cache_key, verified = self._cached(token)
            if verified is None:
                compact, kid, alg = self._read_header(token)
                verified = self._admit(cache_key, compact, self._keys.get_key(kid, alg))
            grant = self._authorize(verified, audience)
            proof = self._check_proof(grant, token, dpop, method, url)
            if proof is not None and not self._replay_store.first_use(*self._replay_entry(proof)):
                raise _replayed()
            self._check_scopes(grant, required)
            if not self._feed_started:
                self._start_feed()
            grant = verified.grant
            self._revocation.check(
                token=token, token_id=grant.token_id, grant_id=grant.grant_id,
                parent_grant_id=grant.parent_grant_id, expires_at=verified.expires,
                required=self._revocation_required(grant, revocation))
            _log_acceptance(grant)
            return grant
        except GuardError as exc:
            _log_rejection(exc)
            raise

    async def verify_async(
        self,
        token: str,
        scopes: Scopes = (),
        any_scopes: Iterable[str] = (),
        audience: str | Sequence[str] | None = None,
        dpop: str | None = None,
        method: str | None = None,
        url: str | None = None,
        revocation: bool | None = None,
    ) -> Grant:
        """`verify` for async code: the only I/O (a key fetch) never blocks the event loop."""
        required = self._requirement(scopes, any_scopes)
        try:
            cache_key, verified = self._cached(token)
            if verified is None:
                compact, kid, alg = self._read_header(token)
                key = await self._keys.get_key_async(kid, alg)
                verified = self._admit(cache_key, compact, key)
            grant = self._authorize(verified, audience)
            proof = self._check_proof(grant, token, dpop, method, url)
            if proof is not None and not await self._replay_store.first_use_async(
                *self._replay_entry(proof)
            ):
                raise _replayed()
            self._check_scopes(grant, required)
            if not self._feed_started:
                self._start_feed()
            grant = verified.grant
            await self._revocation.check_async(
                token=token, token_id=grant.token_id, grant_id=grant.grant_id,
                parent_grant_id=grant.parent_grant_id, expires_at=verified.expires,
                required=self._revocation_required(grant, revocation))
            _log_acceptance(grant)
            return grant
        except GuardError as exc:
            _log_rejection(exc)
            raise

    # -- lifecycle --------------------------------------------------------------

    def warm_up(self) -> None:
        """Fetch the JWKS now and start the revocation feed, if any (call it at start-up).

        Raises GrantexUnavailable when the keys cannot be fetched.
        """
        self._keys.warm_up()
        self._start_feed()

    async def warm_up_async(self) -> None:
        """`warm_up` for an ASGI lifespan: the feed, if any, runs as a task on this loop."""
        await self._keys.warm_up_async()
        with self._feed_lock:
            start, self._feed_started = not self._feed_started, True
        if start:
            await self._revocation.start_async()

    def revoke_locally(self, *, jti: str | None = None, grant_id: str | None = None,
                       expires_at: float | None = None) -> None:
        """Refuse a token (`jti`) or a grant (`grant_id`) from now on.

        A grant's tokens and those delegated directly from it (`parentGrnt`) are refused;
        deeper descendants only by the online check or the feed (see SECURITY.md).
        """
        self._revocation.revoke_locally(jti=jti, grant_id=grant_id, expires_at=expires_at)

    def confirm_not_revoked(self, grant: Grant, token: str, *, forced: bool | None = True) -> None:
        """The revocation step alone, for a grant this guard verified earlier in the request.

        Adapters use it when a route forces a check (`revocation=True`) on a
        grant their middleware already verified: verifying again would replay
        the request's DPoP proof. Raises TokenRevoked, TokenExpired or
        GrantexUnavailable.
        """
        self._revocation.check(
            token=token, token_id=grant.token_id, grant_id=grant.grant_id,
            parent_grant_id=grant.parent_grant_id, expires_at=grant.expires_at.timestamp(),
            required=self._revocation_required(grant, forced))

    async def confirm_not_revoked_async(self, grant: Grant, token: str, *,
                                        forced: bool | None = True) -> None:
        await self._revocation.check_async(
            token=token, token_id=grant.token_id, grant_id=grant.grant_id,
            parent_grant_id=grant.parent_grant_id, expires_at=grant.expires_at.timestamp(),
            required=self._revocation_required(grant, forced))

    @property
    def revocation(self) -> RevocationChecker:
        """The revocation checker: its `store` is what webhook endpoints record into."""
        return self._revocation

    def close(self) -> None:
        """Stop the feed and release the HTTP clients the guard opened (never ones passed in)."""
        self._revocation.close()
        self._keys.close()

    async def aclose(self) -> None:
        await self._revocation.aclose()
        await self._keys.aclose()

    def _start_feed(self) -> None:
        """The feed in a daemon thread, once (a lifespan may have started it as a task)."""
        with self._feed_lock:
            start, self._feed_started = not self._feed_started, True
        if start:
            self._revocation.start()

    def _revocation_required(self, grant: Grant, forced: bool | None) -> bool:
        """Whether this verification must confirm with Grantex (known revocations always apply)."""
        if forced is not None:
            self._revocation.policy.validate_route(forced)
        return self._revocation.needs_check(grant.scopes, forced)

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Guard:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # -- pipeline steps ---------------------------------------------------------

    @staticmethod
    def _requirement(scopes: Scopes, any_scopes: Iterable[str]) -> Requirement:
        if isinstance(scopes, Requirement):
            return scopes
        if isinstance(scopes, str) or isinstance(any_scopes, str):
            raise TypeError("scopes must be a list of scope strings, not a single string")
        if not scopes and not any_scopes:  # the common "any valid grant" call, kept cheap
            return _NO_REQUIREMENT
        return requirement(tuple(scopes), tuple(any_scopes))

    def _cached(self, token: str) -> tuple[bytes | None, _Verified | None]:
        """(cache key, entry): the key is None when the token cannot be cached (or is too big)."""
        if self._cache is None or not isinstance(token, str) or len(token) > self._max_bytes:
            return None, None
        key = _cache_key(token)
        cache = self._cache
        with self._cache_lock:
            verified = cache.get(key)
            if verified is None:
                return key, None
            if verified.cache_until <= self._clock() or verified.key_epoch != self._keys.key_epoch:
                del cache[key]
                return key, None
            cache.move_to_end(key)
        return key, verified

    def _read_header(self, token: str) -> tuple[CompactToken, str | None, str]:
        compact = split_compact(token, self._max_bytes)
        checked = self._headers.get(compact.header_b64)
        if checked is None:
            checked = self._check_header(compact.header())
            if len(self._headers) >= _HEADER_CACHE_SIZE:
                self._headers.clear()
            self._headers[compact.header_b64] = checked
        alg, kid = checked
        return compact, kid, alg

    def _check_header(self, header: dict[str, Any]) -> tuple[str, str | None]:
        """The header's (alg, kid) once alg, typ, crit and kid are acceptable."""
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:  # a list/dict is unhashable
            raise TokenInvalid(
                "The grant token's signing algorithm is not accepted.",
                detail=f"alg {alg!r} is not one of {sorted(self._algorithms)}",
            )
        if "crit" in header:
            raise TokenInvalid(detail=f"crit header {header['crit']!r} names extensions not supported")
        typ = header.get("typ")
        if typ is not None and not isinstance(typ, str):
            raise TokenInvalid(detail=f"typ header must be a string, got {type(typ).__name__}")
        if (typ.lower() if typ is not None else None) not in self._accepted_types:
            raise TokenInvalid(
                "This is not a grant token.",
                detail=f"typ {typ!r} is not a grant-token type (accepted: "
                f"{sorted(t or 'absent' for t in self._accepted_types)})",
            )
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID_LENGTH):
            raise TokenInvalid(detail="kid header must be a string of 1 to 256 characters")
        return alg, kid

    def _admit(self, cache_key: bytes | None, compact: CompactToken,
               key: VerificationKey) -> _Verified:
        """Signature, times, issuer and claims: the facts about a token that are cached."""
        claims = self._check_signature(compact, key)
        now = self._clock()
        issued, expires = self._check_times(claims, now)
        self._check_issuer(claims)
        grant = self._read_claims(claims, issued, expires)
        verified = _Verified(grant, expires, self._keys.key_epoch,
                             min(float(expires), now + self.config.jwks_ttl), self._fits_config(grant))
        cache = self._cache
        if cache is not None and cache_key is not None:
            with self._cache_lock:
                cache[cache_key] = verified
                cache.move_to_end(cache_key)
                if len(cache) > self._cache_size:
                    cache.popitem(last=False)
        return verified

    @staticmethod
    def _check_signature(compact: CompactToken, key: VerificationKey) -> dict[str, Any]:
        """The claims, decoded only once the signature over them is valid."""
        if not key.verify(compact.signing_input, compact.signature):
            raise TokenInvalid(
                "The grant token's signature is invalid.",
                detail=f"signature does not verify with key {key.kid!r} ({key.alg})",
            )
        return compact.payload()

    def _check_times(self, claims: dict[str, Any], now: float) -> tuple[int, int]:
        """(iat, exp) once both are integers and the token is current, within the leeway."""
        leeway = self.config.leeway
        expires = read_time(claims, "exp", required=True) or 0
        issued = read_time(claims, "iat", required=True) or 0
        not_before = read_time(claims, "nbf", required=False)
        if now > expires + leeway:
            raise _expired(expires, now)
        if issued > now + leeway:
            raise TokenInvalid(
                "The grant token is issued in the future: check the clocks.",
                detail=f"iat is {issued - now:.0f} s ahead of this server's clock (leeway {leeway} s)",
            )
        if not_before is not None and not_before > now + leeway:
            raise TokenInvalid(
                "The grant token is not valid yet.",
                detail=f"nbf is {not_before - now:.0f} s ahead of this server's clock",
            )
        return issued, expires

    def _check_issuer(self, claims: dict[str, Any]) -> None:
        issuer = claims.get("iss")
        if issuer != self.config.issuer:
            raise TokenInvalid(
                "The grant token was issued by an issuer this API does not trust.",
                detail=f"expected iss {self.config.issuer!r}, got {issuer!r}",
            )

    def _read_claims(self, claims: dict[str, Any], issued: int, expires: int) -> Grant:
        return read_grant(claims, legacy_claims=self.config.legacy_claims, issued_at=issued,
                          expires_at=expires, audience=read_audience(claims))

    def _authorize(self, verified: _Verified, audience: str | Sequence[str] | None) -> Grant:
        grant = verified.grant
        if self._clock() > verified.expires + self.config.leeway:
            raise _expired(verified.expires, self._clock())
        if audience is None and verified.fits_config:
            return grant
        self.check_audience(grant, audience)
        self._check_delegation(grant)
        return grant

    def _fits_config(self, grant: Grant) -> bool:
        try:
            self.check_audience(grant)
            self._check_delegation(grant)
        except GuardError:
            return False  # _authorize raises the precise error on every use
        return True

    def _check_delegation(self, grant: Grant) -> None:
        if grant.delegation_depth > self.config.max_delegation_depth:
            raise DelegationDenied(
                f"Delegation depth {grant.delegation_depth} exceeds this API's limit of "
                f"{self.config.max_delegation_depth}.",
            )

    def _check_proof(self, grant: Grant, token: str, dpop: str | None, method: str | None,
                     url: str | None) -> Proof | None:
        """Proof of possession (RFC 9449) under the configured policy; the proof to remember."""
        policy = self.config.proof_of_possession
        thumbprint = grant.key_thumbprint
        if policy == "off":
            return None
        if thumbprint is None:
            if policy == "require":
                raise ProofRequired("This API accepts only key-bound tokens sent with a DPoP proof.")
            return None
        if dpop is None:
            if policy == "warn":
                self._warn_unproven(grant)
                return None
            raise ProofRequired()
        if method is None or url is None:
            raise TypeError("verify(dpop=...) needs the request's method= and url=")
        return check_proof(dpop, access_token=token, thumbprint=thumbprint, method=method, url=url,
                           now=self._clock(), max_age=self.config.dpop_max_age,
                           leeway=self.config.dpop_leeway)

    def _replay_entry(self, proof: Proof) -> tuple[str, float]:
        return replay_key(proof), proof.issued_at + self.config.dpop_max_age + self.config.dpop_leeway

    def _warn_unproven(self, grant: Grant) -> None:
        if self._warned_unproven.get(grant.token_id) is None:
            self._warned_unproven[grant.token_id] = True
            logger.warning(
                "key-bound token %s accepted without a DPoP proof (proof_of_possession='warn')",
                grant.token_id,
            )

    @staticmethod
    def _check_scopes(grant: Grant, required: Requirement) -> Grant:
        if required:
            required.check(grant.scope_set)
        return grant

    def check_audience(self, grant: Grant, audience: str | Sequence[str] | None = None) -> None:
        """TokenInvalid unless `grant` is meant for `audience` (None: the configured one).

        Part of `verify`; adapters call it alone for a route's own `audience=` on a
        grant verified earlier in the request (verifying again would replay its proof).
        """
        if audience is None:
            if self.config.audience_check == "off":
                return
            expected: Sequence[str] = self.config.audience  # type: ignore[assignment]
        else:
            expected = (audience,) if isinstance(audience, str) else tuple(audience)
        if expected:
            if not any(value in grant.audience for value in expected):
                raise TokenInvalid(
                    "The grant token is not meant for this API.",
                    detail=f"expected aud {list(expected)}, token has {list(grant.audience) or 'no aud'}",
                )
        elif grant.audience:
            raise TokenInvalid(
                "The grant token is bound to another API.",
                detail=f"token has aud {list(grant.audience)} but no audience is configured: set "
                "audience= to this API's identifier, or audience_check='off' to ignore aud",
            )


def _cache_key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _expired(expires: int, now: float) -> TokenExpired:
    return TokenExpired(detail=f"token expired {_ago(now - expires)} ago (exp {expires})")


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


_NO_REQUIREMENT = requirement((), ())


def _replayed() -> ProofInvalid:
    return ProofInvalid("The DPoP proof was already used: sign a new proof for each request.",
                        detail="DPoP proof jti replayed within its validity window")


def _log_acceptance(grant: Grant) -> None:
    # Every use is logged with its jti, so a replayed bearer token can be found in the logs.
    logger.debug("grant token accepted: jti=%s grant=%s agent=%s", grant.token_id, grant.grant_id,
                 grant.agent_did)


def _log_rejection(exc: GuardError) -> None:
    if exc.status >= 500:
        logger.warning("grant token could not be checked: %s", exc.detail)
    else:
        logger.debug("grant token rejected: %s: %s", exc.code, exc.detail)
