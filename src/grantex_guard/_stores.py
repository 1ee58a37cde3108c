"""Revocation stores: where verdicts and known revocations live (memory, or Redis for many workers)."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._redis import RedisClients

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["MemoryRevocationStore", "RedisRevocationStore", "RevocationStore", "StoreUnavailable"]

logger = logging.getLogger("grantex_guard.revocation")


class StoreUnavailable(Exception):
    """The revocation store could not be reached (e.g. Redis is down)."""


class RevocationStore(Protocol):
    """Where known revocations and cached online answers live (per process, or shared).

    `lookup` answers "revoked" when the token or one of its grants is denied,
    else the cached verdict of an online check, else None. Times are the
    checker's clock (seconds since the epoch). Methods raise StoreUnavailable
    when the store cannot be reached. `claim`/`release` elect the one caller,
    across processes, that asks the service about a token.
    """

    def lookup(self, token_id: str, grant_id: str, parent_grant_id: str | None, now: float) -> str | None: ...
    def record(self, token_id: str, verdict: str, until: float, now: float) -> None: ...
    def deny(self, *, jti: str | None, grant_id: str | None, until: float, now: float) -> None: ...
    def claim(self, token_id: str, seconds: float) -> bool: ...
    def release(self, token_id: str) -> None: ...
    def close(self) -> None: ...
    async def lookup_async(self, token_id: str, grant_id: str, parent_grant_id: str | None,
                           now: float) -> str | None: ...
    async def record_async(self, token_id: str, verdict: str, until: float, now: float) -> None: ...
    async def deny_async(self, *, jti: str | None, grant_id: str | None, until: float,
                         now: float) -> None: ...
    async def claim_async(self, token_id: str, seconds: float) -> bool: ...
    async def release_async(self, token_id: str) -> None: ...
    async def aclose(self) -> None: ...


class MemoryRevocationStore:
    """The default store: this process only, bounded in entries, every entry with a deadline."""

    shared = False

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self._tokens: dict[str, float] = {}
        self._grants: dict[str, float] = {}
        self._results: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()  # writers only; reads are single dict lookups

    def lookup(self, token_id: str, grant_id: str, parent_grant_id: str | None, now: float) -> str | None:
        if self._tokens or self._grants:
            denied = self._denied(token_id, grant_id, parent_grant_id, now)
            if denied is not None:
                return denied
        entry = self._results.get(token_id)
        if entry is not None and now < entry[1]:
            return entry[0]
        return None

    def _denied(self, token_id: str, grant_id: str, parent_grant_id: str | None, now: float) -> str | None:
        pairs = ((self._tokens, token_id), (self._grants, grant_id), (self._grants, parent_grant_id))
        for table, key in pairs:
            until = table.get(key) if key is not None else None
            if until is not None and now < until:
                return "revoked"
        return None

    def record(self, token_id: str, verdict: str, until: float, now: float) -> None:
        with self._lock:
            self._make_room(self._results, now, lambda entry: entry[1])
            self._results[token_id] = (verdict, until)

    def deny(self, *, jti: str | None, grant_id: str | None, until: float, now: float) -> None:
        with self._lock:
            for table, key in ((self._tokens, jti), (self._grants, grant_id)):
                if key is not None:
                    self._make_room(table, now, lambda until: until)
                    table[key] = max(until, table.get(key, until))

    def _make_room(self, table: dict[str, Any], now: float, deadline: Callable[[Any], float]) -> None:
        if len(table) < self._max:
            return
        for key, value in list(table.items()):
            if deadline(value) <= now:
                del table[key]
        if len(table) >= self._max:
            del table[next(iter(table))]  # the oldest entry
            if table is not self._results:
                logger.warning("revocation store full (%d entries): the oldest revocation was dropped; "
                               "raise max_entries or use RedisRevocationStore", self._max)

    def claim(self, token_id: str, seconds: float) -> bool:
        return True  # one process: the checker's own single-flight is enough

    def release(self, token_id: str) -> None:
        return None

    def close(self) -> None:
        return None

    async def lookup_async(self, token_id: str, grant_id: str, parent_grant_id: str | None,
                           now: float) -> str | None:
        return self.lookup(token_id, grant_id, parent_grant_id, now)

    async def record_async(self, token_id: str, verdict: str, until: float, now: float) -> None:
        self.record(token_id, verdict, until, now)

    async def deny_async(self, *, jti: str | None, grant_id: str | None, until: float, now: float) -> None:
        self.deny(jti=jti, grant_id=grant_id, until=until, now=now)

    async def claim_async(self, token_id: str, seconds: float) -> bool:
        return True

    async def release_async(self, token_id: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError, ValueError)


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisRevocationStore:
    """Revocations and online answers shared by every worker and host (`pip install grantex-guard[redis]`).

    `url_or_client`: a redis URL (sync and asyncio clients are made from it,
    one asyncio client per event loop), a `redis.Redis` (sync only unless
    `async_client` is given) or a `redis.asyncio.Redis` (async only).
    Values carry their deadline, checked against the checker's clock; Redis
    expires them too (PX), so nothing outlives its token or the TTL. Clients
    made from a URL keep at most `max_connections` connections: a burst waits
    for a free one (up to `socket_timeout`) instead of opening one per request.
    """

    shared = True

    def __init__(self, url_or_client: str | redis.Redis | redis.asyncio.Redis, *,
                 async_client: redis.asyncio.Redis | None = None,
                 prefix: str = "grantex-guard:revocation:", socket_timeout: float = 0.5,
                 max_connections: int = 32) -> None:
        import redis as redis_sync
        import redis.asyncio as redis_async

        self._prefix = prefix
        self._made: RedisClients | None = None
        self._sync: redis_sync.Redis | None = None
        self._async_given = async_client
        if isinstance(url_or_client, str):
            self._made = RedisClients(url_or_client, timeout=socket_timeout,
                                      max_connections=max_connections)
        elif isinstance(url_or_client, redis_async.Redis):
            self._async_given = url_or_client
        elif isinstance(url_or_client, redis_sync.Redis):
            self._sync = url_or_client
        else:
            raise TypeError("url_or_client must be a redis URL, a redis.Redis or a redis.asyncio.Redis")

    def _keys(self, token_id: str, grant_id: str, parent_grant_id: str | None) -> list[str]:
        p = self._prefix
        keys = [f"{p}r:{token_id}", f"{p}t:{token_id}", f"{p}g:{grant_id}"]
        if parent_grant_id is not None:
            keys.append(f"{p}g:{parent_grant_id}")
        return keys

    @staticmethod
    def _verdict(values: Sequence[bytes | str | None], now: float) -> str | None:
        for raw in values[1:]:
            if raw is not None and now < float(raw):
                return "revoked"
        if values[0] is not None:
            text = values[0].decode() if isinstance(values[0], bytes) else values[0]
            verdict, _, until = text.partition(" ")
            if now < float(until):
                return verdict
        return None

    def _client(self) -> redis.Redis:
        if self._made is not None:
            return self._made.sync()
        if self._sync is None:
            raise RuntimeError("this RedisRevocationStore was given only an asyncio client")
        return self._sync

    def lookup(self, token_id: str, grant_id: str, parent_grant_id: str | None, now: float) -> str | None:
        try:
            values = self._client().mget(self._keys(token_id, grant_id, parent_grant_id))
            return self._verdict(values, now)
        except _redis_errors() as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

    def record(self, token_id: str, verdict: str, until: float, now: float) -> None:
        try:
            self._client().set(f"{self._prefix}r:{token_id}", f"{verdict} {until!r}",
                               px=_milliseconds(until - now))
        except _redis_errors() as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

    def deny(self, *, jti: str | None, grant_id: str | None, until: float, now: float) -> None:
        try:
            with self._client().pipeline(transaction=False) as pipe:
                for key in self._deny_keys(jti, grant_id):
                    pipe.set(key, repr(until), px=_milliseconds(until - now))
                pipe.execute()
        except _redis_errors() as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

    def _deny_keys(self, jti: str | None, grant_id: str | None) -> list[str]:
        keys = [f"{self._prefix}t:{jti}"] if jti else []
        return [*keys, f"{self._prefix}g:{grant_id}"] if grant_id else keys

    def claim(self, token_id: str, seconds: float) -> bool:
        try:
            return bool(self._client().set(f"{self._prefix}l:{token_id}", "1", nx=True,
                                           px=_milliseconds(seconds)))
        except _redis_errors() as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

    def release(self, token_id: str) -> None:
        try:
            self._client().delete(f"{self._prefix}l:{token_id}")
        except _redis_errors() as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

    def close(self) -> None:
        """Close the sync client this store made (given clients are the caller's to close)."""
        if self._made is not None:
            self._made.close()

    def _async_client(self) -> redis.asyncio.Redis:
        if self._async_given is not None:
            return self._async_given
        if self._made is None:
            raise RuntimeError("this RedisRevocationStore has no asyncio client: pass async_client")
        return self._made.for_running_loop()

    async def lookup_async(self, token_id: str, grant_id: str, parent_grant_id: str | None,
                           now: float) -> str | None:
        try:
            values = await self._async_client().mget(self._keys(token_id, grant_id, parent_grant_id))
            return self._verdict(values, now)
        except _redis_errors() as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

    async def record_async(self, token_id: str, verdict: str, until: float, now: float) -> None:
        try:
            await self._async_client().set(f"{self._prefix}r:{token_id}", f"{verdict} {until!r}",
                                           px=_milliseconds(until - now))
        except _redis_errors() as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

    async def deny_async(self, *, jti: str | None, grant_id: str | None, until: float, now: float) -> None:
        try:
            async with self._async_client().pipeline(transaction=False) as pipe:
                for key in self._deny_keys(jti, grant_id):
                    pipe.set(key, repr(until), px=_milliseconds(until - now))
                await pipe.execute()
        except _redis_errors() as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

    async def claim_async(self, token_id: str, seconds: float) -> bool:
        try:
            return bool(await self._async_client().set(f"{self._prefix}l:{token_id}", "1", nx=True,
                                                       px=_milliseconds(seconds)))
        except _redis_errors() as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

    async def release_async(self, token_id: str) -> None:
        try:
            await self._async_client().delete(f"{self._prefix}l:{token_id}")
        except _redis_errors() as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

    async def aclose(self) -> None:
        """Close the asyncio client of the running loop (and the sync one this store made)."""
        if self._made is not None:
            await self._made.aclose()
        self.close()
