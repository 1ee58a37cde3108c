"""Revocation: is this (signature-valid) grant token still honoured by its issuer?

    checker = RevocationChecker(issuer=..., api_key=..., clock=time.time)
    checker.check(token=..., token_id=jti, grant_id=..., parent_grant_id=..., expires_at=exp,
                  required=checker.needs_check(scopes, forced=None))

Every check first consults what is already known, locally and for free:
the store (revocations pushed by webhooks or `revoke_locally`, and cached
online answers) and, with `source="feed"`, the feed's revocation set. Only
when that knows nothing and the policy requires certainty (`required`) does
the checker ask the service (one call per token per `cache_ttl`, shared by
every thread, task and, with `RedisRevocationStore`, every worker) or
insist on a fresh feed. Failures map to TokenRevoked / TokenExpired (401)
or GrantexUnavailable (503, never blamed on the client).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ._feed import RevocationFeed
from ._online import _Failure, _OnlineService, _Result, derive_api_base_url
from ._stores import MemoryRevocationStore, RedisRevocationStore, RevocationStore, StoreUnavailable
from ._webhooks import (
    MAX_WEBHOOK_BODY,
    WebhookError,
    WebhookEvent,
    check_webhook_secret,
    handle_webhook,
    handle_webhook_async,
    verify_webhook,
    webhook_headers,
)
from .errors import GrantexUnavailable, TokenExpired, TokenRevoked
from .scopes import parse_base

if TYPE_CHECKING:
    import httpx

    from .verifier import Guard

__all__ = [
    "DEFAULT_HIGH_STAKES",
    "MAX_CACHE_TTL",
    "MAX_WEBHOOK_BODY",
    "MemoryRevocationStore",
    "RedisRevocationStore",
    "RevocationChecker",
    "RevocationPolicy",
    "RevocationStore",
    "StoreUnavailable",
    "WebhookError",
    "WebhookEvent",
    "check_webhook_secret",
    "derive_api_base_url",
    "handle_webhook",
    "handle_webhook_async",
    "route_revocation",
    "verify_webhook",
    "webhook_headers",
]

logger = logging.getLogger("grantex_guard.revocation")

DEFAULT_HIGH_STAKES = ("payments:initiate", "email:send", "files:write")
MAX_CACHE_TTL = 300.0  # the protocol caps revocation caching at 5 minutes
MODES = ("never", "high_stakes", "always")
SOURCES = ("status", "grants_verify", "tokens_verify", "feed")
HOSTED_ISSUER, HOSTED_API = "https://grantex.dev", "https://api.grantex.dev"
_FAILURE_HOLD = 2.0  # after a 5xx or a timeout, no call to the service for this long
_PEER_POLL = 0.02
_DEFAULT_RETENTION = 86_400.0  # a revoked grant id without a known expiry is kept one day

# Verdicts (plain strings, as cached): "active" passes; "revoked", "suspended", "not_found" and
# "expired" refuse the token.


# -- policy --------------------------------------------------------------------------------


class RevocationPolicy:
    """Which tokens need a confirmed answer: "never", "high_stakes" (default with an API key) or "always"."""

    def __init__(self, mode: str, high_stakes_scopes: Sequence[str] = DEFAULT_HIGH_STAKES, *,
                 can_check: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"revocation_check must be one of {', '.join(MODES)}; got {mode!r}")
        if isinstance(high_stakes_scopes, str):
            raise ValueError("high_stakes_scopes must be a sequence of 'resource:action' strings")
        self.mode = mode
        self._always, self._never = mode == "always", mode == "never"
        self.can_check = can_check
        self.high_stakes = frozenset(parse_base(scope) for scope in high_stakes_scopes)
        self._memo: dict[tuple[str, ...], bool] = {}

    def is_high_stakes(self, scope: str) -> bool:
        """True for a scope whose `resource:action` is high-stakes, with or without a constraint."""
        resource, _, rest = scope.partition(":")
        return f"{resource}:{rest.partition(':')[0]}" in self.high_stakes

    def needs_check(self, scopes: Sequence[str], forced: bool | None = None) -> bool:
        if forced or self._always:
            return True
        if self._never:
            return False
        key = scopes if isinstance(scopes, tuple) else tuple(scopes)
        needed = self._memo.get(key)
        if needed is None:
            needed = any(self.is_high_stakes(scope) for scope in key)
            if len(self._memo) >= 4096:
                self._memo.clear()
            self._memo[key] = needed
        return needed

    def validate_route(self, forced: bool | None) -> None:
        """For a route's own setting, at decoration time: it may only tighten the policy."""
        if forced is False:
            raise ValueError(_NO_SWITCHING_OFF)
        if forced and not self.can_check:
            raise ValueError("This route forces a revocation check, but the guard has no api_key "
                             "to ask Grantex with: configure api_key (and revocation_source).")


_NO_SWITCHING_OFF = ("revocation=False: a route cannot switch revocation checks off; it may only "
                     "force them (True) or inherit the guard's policy (None)")


def route_revocation(revocation: object, guard: Guard | None = None) -> bool | None:
    """A route's `revocation=` setting, validated where the route is declared.

    None inherits the guard's policy and True forces a check; False is refused
    (a route may only tighten the policy). With the guard known, True is also
    checked against its policy (it needs an api_key); otherwise the Guard checks
    it on first use.
    """
    if revocation is not None and not isinstance(revocation, bool):
        raise TypeError(f"revocation must be True or None, got {revocation!r}")
    if revocation is False:
        raise ValueError(_NO_SWITCHING_OFF)
    if revocation and guard is not None:
        guard.revocation.policy.validate_route(True)
    return revocation


# -- stores --------------------------------------------------------------------------------


# -- the checker ---------------------------------------------------------------------------


class _Alarm:
    """Logs each distinct problem at most once per interval, so an outage does not flood the log."""

    def __init__(self, clock: Callable[[], float], interval: float) -> None:
        self._clock = clock
        self._interval = interval
        self._last: dict[str, float] = {}

    def __call__(self, level: int, message: str) -> None:
        now = self._clock()
        last = self._last.get(message)
        if last is None or now - last >= self._interval:
            if len(self._last) >= 256:
                self._last.clear()
            self._last[message] = now
            logger.log(level, "%s", message)


class _Flight:
    """One online call in progress in this process; the threads asking the same wait on it."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: _Result | None = None


_REFUSALS = {
    "suspended": "The grant behind this token is suspended.",
    "not_found": "The issuer does not know the grant behind this token.",
}


class RevocationChecker:
    """Revocation for one Guard: policy, known revocations, online checks and the feed.

    Thread-safe and usable from any number of event loops. See the module
    docstring for the order of checks and the README for the model.
    """

    def __init__(
        self,
        *,
        issuer: str,
        api_key: str | None,
        api_base_url: str | None = None,
        mode: str | None = None,
        source: str = "status",
        cache_ttl: float = 60,
        high_stakes_scopes: Sequence[str] = DEFAULT_HIGH_STAKES,
        fail_open: bool = False,
        store: RevocationStore | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 5,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        feed_max_staleness: float = 5,
        feed_fallback: str | None = None,
    ) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"revocation_check must be one of {', '.join(MODES)}; got {mode!r}")
        if source not in SOURCES:
            raise ValueError(f"revocation_source must be one of {', '.join(SOURCES)}; got {source!r}")
        if isinstance(cache_ttl, bool) or not 0 <= cache_ttl <= MAX_CACHE_TTL:
            raise ValueError(f"revocation_cache_ttl must be between 0 and {MAX_CACHE_TTL:g} seconds "
                             f"(the protocol caps revocation caching at 5 minutes); got {cache_ttl!r}")
        if not timeout > 0 or not feed_max_staleness > 0:
            raise ValueError("timeout and feed_max_staleness must be positive")
        if feed_fallback not in (None, "online"):
            raise ValueError(f"feed_fallback must be None or 'online'; got {feed_fallback!r}")
        if feed_fallback is not None and source != "feed":
            raise ValueError("feed_fallback applies only with revocation_source='feed'")
        if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
            raise ValueError("api_key must be a non-empty string or None")
        mode = mode if mode is not None else ("high_stakes" if api_key else "never")
        if api_key is None and (mode != "never" or source == "feed"):
            raise ValueError(f"revocation_check={mode!r} with revocation_source={source!r} needs api_key: "
                             "online checks and the feed answer only the developer that owns the key")
        base = (api_base_url or derive_api_base_url(issuer)).rstrip("/")
        if not base.startswith(("https://", "http://")):
            raise ValueError(f"api_base_url must be an http(s) URL; got {base!r}")
        self.policy = RevocationPolicy(mode, high_stakes_scopes, can_check=api_key is not None)
        self.needs_check = self.policy.needs_check  # bound once: it runs on every verification
        self.store: RevocationStore = store if store is not None else MemoryRevocationStore()
        self.source = source
        self.enabled = api_key is not None
        self.api_base_url = base
        self._clock = clock
        self._ttl = float(cache_ttl)
        self._fail_open = fail_open
        self._timeout = timeout
        self._max_staleness = feed_max_staleness
        self._fallback = feed_fallback
        self._alarm = _Alarm(clock, self._ttl or 60.0)
        self.service: _OnlineService | None = None
        self.feed: RevocationFeed | None = None
        if api_key is not None and (source != "feed" or feed_fallback == "online"):
            self.service = _OnlineService(base, api_key, "status" if source == "feed" else source,
                                          clock=clock, timeout=timeout, http_client=http_client,
                                          async_http_client=async_http_client)
        if api_key is not None and source == "feed":
            self.feed = RevocationFeed(base, api_key, clock=clock, timeout=timeout,
                                       max_staleness=feed_max_staleness, http_client=http_client,
                                       async_http_client=async_http_client)
        self._flights: dict[str, _Flight] = {}
        self._flights_lock = threading.Lock()
        self._loop_flights: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Future[_Result]]] = weakref.WeakKeyDictionary()

    # -- policy ------------------------------------------------------------------------------

    # -- the check ---------------------------------------------------------------------------

    def check(self, *, token: str, token_id: str, grant_id: str, parent_grant_id: str | None,
              expires_at: float, required: bool = True) -> None:
        """Refuse a revoked token: TokenRevoked / TokenExpired, or GrantexUnavailable.

        Known revocations refuse always; `required` (from `needs_check`) adds
        the confirmation: an online answer or a fresh feed.
        """
        now = self._clock()
        try:
            known = self.store.lookup(token_id, grant_id, parent_grant_id, now)
        except StoreUnavailable as exc:
            self._store_down(exc, required)
            return
        feed = self.feed
        if feed is None:
            if known == "active":  # the warm path: one dict lookup
                return
        elif known is None and feed.state.listed(token_id, grant_id, parent_grant_id, now) is None:
            heard = feed.state.heard_at
            if not required or (heard is not None and now - heard <= self._max_staleness):
                return
        if known is not None and known != "active":
            self._refuse(known)
        if self._feed_settles(token_id, grant_id, parent_grant_id, now, required):
            return
        if known is None and required and self.service is not None:
            self._conclude(self._online(token, token_id, grant_id, parent_grant_id, expires_at))

    async def check_async(self, *, token: str, token_id: str, grant_id: str, parent_grant_id: str | None,
                          expires_at: float, required: bool = True) -> None:
        """`check` for async code: redis.asyncio and httpx.AsyncClient, never a blocking call."""
        now = self._clock()
        try:
            known = await self.store.lookup_async(token_id, grant_id, parent_grant_id, now)
        except StoreUnavailable as exc:
            self._store_down(exc, required)
            return
        if known is not None and known != "active":
            self._refuse(known)
        if self._feed_settles(token_id, grant_id, parent_grant_id, now, required):
            return
        if known is None and required and self.service is not None:
            result = await self._online_async(token, token_id, grant_id, parent_grant_id, expires_at)
            self._conclude(result)

    def _feed_settles(self, token_id: str, grant_id: str, parent_grant_id: str | None, now: float,
                      required: bool) -> bool:
        """With a feed: refuse a listed token; True when no online call is to follow."""
        feed = self.feed
        if feed is None:
            return not required
        listed = feed.state.listed(token_id, grant_id, parent_grant_id, now)
        if listed is not None:
            self._refuse(listed)
        if not required or feed.state.fresh(now, self._max_staleness):
            return True
        if self._fallback == "online":
            return False
        heard = feed.state.heard_at
        silence = "never heard from" if heard is None else f"silent for {now - heard:.1f} s"
        self._conclude(_Failure("unavailable", f"revocation feed {silence} (feed_max_staleness="
                                f"{self._max_staleness:g} s)", max(1.0, self._max_staleness)))
        return True

    def _refuse(self, verdict: str) -> None:
        detail = f"revocation check ({self.source}): {verdict}"
        if verdict == "expired":
            raise TokenExpired(detail=detail)
        raise TokenRevoked(_REFUSALS.get(verdict), detail=detail)

    def _conclude(self, result: _Result) -> None:
        if isinstance(result, str):
            if result != "active":
                self._refuse(result)
            return
        retry_after = math.ceil(result.retry_after)
        if result.kind == "configuration":
            self._alarm(logging.ERROR, f"revocation checks misconfigured: {result.detail}")
            raise GrantexUnavailable(detail=result.detail, retry_after=retry_after)
        if result.kind == "unknown":
            raise GrantexUnavailable("The issuer could not confirm this grant is active: retry later.",
                                     detail=result.detail, retry_after=retry_after)
        if self._fail_open:
            self._alarm(logging.WARNING, f"revocation not confirmed, allowing (fail_open): {result.detail}")
            return
        raise GrantexUnavailable(detail=result.detail, retry_after=retry_after)

    def _store_down(self, exc: StoreUnavailable, required: bool) -> None:
        if not required:
            self._alarm(logging.WARNING, f"revocation store unreachable, known revocations not consulted "
                        f"for tokens that need no check: {exc}")
            return
        self._conclude(_Failure("unavailable", f"revocation store unreachable: {exc}", 5.0))

    def _until(self, now: float, expires_at: float) -> float:
        return min(now + self._ttl, float(expires_at))

    # -- online, sync --------------------------------------------------------------------------

    def _online(self, token: str, token_id: str, grant_id: str, parent_grant_id: str | None,
                expires_at: float) -> _Result:
        with self._flights_lock:
            flight = self._flights.get(token_id)
            leader = flight is None
            if flight is None:
                flight = self._flights[token_id] = _Flight()
        if not leader:
            if flight.done.wait(self._timeout + 1.0) and flight.result is not None:
                return flight.result
            return _Failure("unavailable", "timed out waiting for a concurrent check", 1.0)
        try:
            flight.result = self._ask(token, token_id, grant_id, parent_grant_id, expires_at)
        except StoreUnavailable as exc:
            flight.result = _Failure("unavailable", f"revocation store unreachable: {exc}", 5.0)
        finally:
            with self._flights_lock:
                self._flights.pop(token_id, None)
            if flight.result is None:
                flight.result = _Failure("unavailable", "the revocation check failed", 1.0)
            flight.done.set()
        return flight.result

    def _ask(self, token: str, token_id: str, grant_id: str, parent_grant_id: str | None,
             expires_at: float) -> _Result:
        assert self.service is not None
        held = self.service.held(self._clock())
        if held is not None:
            return held
        # Claim, then look: a previous holder records its answer before releasing the claim.
        claimed = self.store.claim(token_id, self._timeout + 1.0)
        known = self.store.lookup(token_id, grant_id, parent_grant_id, self._clock())
        deadline = time.monotonic() + self._timeout + 1.0
        while not claimed and known is None and time.monotonic() < deadline:  # another worker asks
            time.sleep(_PEER_POLL)
            known = self.store.lookup(token_id, grant_id, parent_grant_id, self._clock())
        if known is not None:
            if claimed:
                self.store.release(token_id)
            return known
        result = self.service.call(token, token_id, grant_id)
        now = self._clock()
        if isinstance(result, str) and self._until(now, expires_at) > now:
            self.store.record(token_id, result, self._until(now, expires_at), now)
        if claimed:
            self.store.release(token_id)
        return result

    # -- online, async -------------------------------------------------------------------------

    async def _online_async(self, token: str, token_id: str, grant_id: str, parent_grant_id: str | None,
                            expires_at: float) -> _Result:
        loop = asyncio.get_running_loop()
        with self._flights_lock:
            flights = self._loop_flights.get(loop)
            if flights is None:
                flights = self._loop_flights[loop] = {}
        pending = flights.get(token_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Result] = loop.create_future()
        flights[token_id] = future
        result: _Result = _Failure("unavailable", "the revocation check was interrupted", 1.0)
        try:
            result = await self._ask_async(token, token_id, grant_id, parent_grant_id, expires_at)
        except StoreUnavailable as exc:
            result = _Failure("unavailable", f"revocation store unreachable: {exc}", 5.0)
        finally:
            flights.pop(token_id, None)
            future.set_result(result)
        return result

    async def _ask_async(self, token: str, token_id: str, grant_id: str, parent_grant_id: str | None,
                         expires_at: float) -> _Result:
        assert self.service is not None
        store = self.store
        held = self.service.held(self._clock())
        if held is not None:
            return held
        claimed = await store.claim_async(token_id, self._timeout + 1.0)
        known = await store.lookup_async(token_id, grant_id, parent_grant_id, self._clock())
        deadline = time.monotonic() + self._timeout + 1.0
        while not claimed and known is None and time.monotonic() < deadline:
            await asyncio.sleep(_PEER_POLL)
            known = await store.lookup_async(token_id, grant_id, parent_grant_id, self._clock())
        if known is not None:
            if claimed:
                await store.release_async(token_id)
            return known
        result = await self.service.call_async(token, token_id, grant_id)
        now = self._clock()
        if isinstance(result, str) and self._until(now, expires_at) > now:
            await store.record_async(token_id, result, self._until(now, expires_at), now)
        if claimed:
            await store.release_async(token_id)
        return result

    # -- revocations learnt another way --------------------------------------------------------

    def revoke_locally(self, *, jti: str | None = None, grant_id: str | None = None,
                       expires_at: float | None = None) -> None:
        """Refuse a token (by jti) or a grant and its children from now on, in every worker sharing the store.

        Without `expires_at` the entry is kept one day (a grant id does not
        say how long its tokens live).
        """
        now = self._clock()
        self.store.deny(jti=jti, grant_id=grant_id, until=self._retention(jti, grant_id, now, expires_at),
                        now=now)

    async def revoke_locally_async(self, *, jti: str | None = None, grant_id: str | None = None,
                                   expires_at: float | None = None) -> None:
        now = self._clock()
        await self.store.deny_async(jti=jti, grant_id=grant_id,
                                    until=self._retention(jti, grant_id, now, expires_at), now=now)

    @staticmethod
    def _retention(jti: str | None, grant_id: str | None, now: float, expires_at: float | None) -> float:
        if not jti and not grant_id:
            raise ValueError("revoke_locally needs a jti or a grant_id")
        return float(expires_at) if expires_at is not None else now + _DEFAULT_RETENTION

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the feed in a daemon thread (no-op for online sources)."""
        if self.feed is not None:
            self.feed.start()

    async def start_async(self) -> None:
        """Start the feed as a task on the running loop (no-op for online sources)."""
        if self.feed is not None:
            await self.feed.start_async()

    def close(self) -> None:
        """Stop the feed and close the HTTP clients the checker made (a store passed in is yours)."""
        if self.feed is not None:
            self.feed.close()
        if self.service is not None:
            self.service.close()

    async def aclose(self) -> None:
        if self.feed is not None:
            await self.feed.aclose()
        if self.service is not None:
            await self.service.aclose()
