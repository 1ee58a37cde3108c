"""Redis clients made from a URL, for the shared stores (revocations, DPoP replays).

One sync client, made on first use, and one asyncio client per event loop: a
connection pool belongs to the loop that opened it, so a client is never shared
between loops. Pools are bounded: a burst of requests waits (up to the timeout)
for one of `max_connections` instead of opening a connection each, which under
load makes connects time out.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["RedisClients"]


class RedisClients:
    def __init__(self, url: str, *, timeout: float, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be positive")
        self._url = url
        self._pool_options: dict[str, Any] = {
            "max_connections": max_connections, "timeout": timeout,
            "socket_timeout": timeout, "socket_connect_timeout": timeout,
        }
        self._sync: redis.Redis | None = None
        # Keyed by the loop itself, not its id(): an id can be reused by a later loop.
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def sync(self) -> redis.Redis:
        if self._sync is None:
            import redis

            with self._lock:
                if self._sync is None:
                    pool = redis.BlockingConnectionPool.from_url(self._url, **self._pool_options)
                    self._sync = redis.Redis.from_pool(pool)
        return self._sync

    def for_running_loop(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._by_loop.get(loop)
            if client is None:
                import redis.asyncio

                self._forget_closed_loops()
                pool = redis.asyncio.BlockingConnectionPool.from_url(self._url, **self._pool_options)
                client = self._by_loop[loop] = redis.asyncio.Redis.from_pool(pool)
        return client

    def close(self) -> None:
        """Close the sync client (the asyncio ones are closed by `aclose` in their loops)."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the running loop's client; forget those of loops that have closed."""
        with self._lock:
            client = self._by_loop.pop(asyncio.get_running_loop(), None)
            self._forget_closed_loops()
        if client is not None:
            await client.aclose()

    def _forget_closed_loops(self) -> None:
        """Drop the clients of loops that have closed (e.g. each `asyncio.run`'s).

        Weak keys alone would not free them: a used client's connections refer to
        their loop, so the entry keeps its own key alive. Such a client cannot be
        closed any more (its loop is gone); once dropped, it and its loop are
        garbage, and collecting the transports closes their sockets.
        """
        for loop in [loop for loop in self._by_loop if loop.is_closed()]:
            del self._by_loop[loop]
