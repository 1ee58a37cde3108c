"""The revocation feed: a local copy of the service's revocation set, kept current.

    snapshot  GET /v1/revocations[?pageToken=...]            replaces the set
    stream    GET /v1/revocations/stream?since=<cursor>      Server-Sent Events
    long-poll GET /v1/revocations?since=<cursor>&wait=<s>    when the stream 404s

`FeedState` is the set (pure, clock-driven); `RevocationFeed` keeps it
current from a daemon thread (`start`/`close`) or an asyncio task
(`start_async`/`aclose`), reconnecting with backoff and resuming at the cursor.
Used by `grantex_guard.revocation.RevocationChecker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .jose import decode_json_object

if TYPE_CHECKING:
    import httpx

__all__ = ["FeedState", "RevocationFeed"]

logger = logging.getLogger("grantex_guard.revocation")

_GRANT_ACTIONS = frozenset({"revoked", "suspended", "resumed"})
_MAX_PAGES = 10_000
_MAX_LINE = 65_536
# An entry without expiresAt is kept this long (the longest token lifetime in use).
_DEFAULT_RETENTION = 86_400.0
_PRUNE_EVERY = 60.0


def _expiry(value: object, now: float) -> float:
    if value is None:
        return now + _DEFAULT_RETENTION
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    raise ValueError("expiresAt must be a number or an ISO-8601 string")


@dataclass(slots=True)
class _Sets:
    grants: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (action, until)
    tokens: dict[str, float] = field(default_factory=dict)  # jti -> until


class FeedState:
    """The revocation set learnt from the feed. Written by one feed worker, read by any thread."""

    def __init__(self, clock: Callable[[], float], max_entries: int = 1_000_000) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._sets = _Sets()
        self.cursor: int | None = None  # None until a snapshot has been applied
        self.heard_at: float | None = None
        self._pruned_at = clock()

    def listed(self, token_id: str, grant_id: str, parent_grant_id: str | None, now: float) -> str | None:
        """"revoked" / "suspended" when the token or its grant (or parent grant) is listed."""
        sets = self._sets
        until = sets.tokens.get(token_id)
        if until is not None and now < until:
            return "revoked"
        entry = sets.grants.get(grant_id)
        if entry is not None and now < entry[1]:
            return entry[0]
        if parent_grant_id is not None:
            entry = sets.grants.get(parent_grant_id)
            if entry is not None and now < entry[1]:
                return entry[0]
        return None

    def fresh(self, now: float, max_staleness: float) -> bool:
        return self.heard_at is not None and now - self.heard_at <= max_staleness

    def heard(self) -> None:
        self.heard_at = now = self._clock()
        if now - self._pruned_at >= _PRUNE_EVERY:
            self.prune(now)

    def replace(self, entries: Iterable[object], cursor: int | None) -> None:
        """Apply a snapshot: the new set replaces the old one in one assignment."""
        sets, highest = _Sets(), 0
        ordered = sorted((entry for entry in entries if isinstance(entry, dict) and _valid_seq(entry)),
                         key=_seq)
        for entry in ordered:
            self._apply_to(sets, entry)
            highest = max(highest, _seq(entry))
        self._sets = sets
        self.cursor = cursor if cursor is not None else highest
        self.heard()

    def apply(self, entry: object) -> bool:
        """Apply one entry from the stream or a long-poll page; False when ignored."""
        if not isinstance(entry, dict) or not _valid_seq(entry):
            return False
        if self.cursor is not None and _seq(entry) <= self.cursor:
            return False
        if not self._apply_to(self._sets, entry):
            return False
        self.cursor = _seq(entry)
        return True

    def prune(self, now: float) -> None:
        """Forget entries past their expiresAt (their tokens are expired anyway)."""
        self._pruned_at = now
        sets = self._sets
        for jti, until in list(sets.tokens.items()):
            if until <= now:
                sets.tokens.pop(jti, None)
        for grant_id, (_, until) in list(sets.grants.items()):
            if until <= now:
                sets.grants.pop(grant_id, None)

    def __len__(self) -> int:
        return len(self._sets.tokens) + len(self._sets.grants)

    def _apply_to(self, sets: _Sets, entry: dict[str, Any]) -> bool:
        action = entry.get("action")
        now = self._clock()
        try:
            until = _expiry(entry.get("expiresAt"), now)
        except ValueError:
            logger.warning("revocation feed: entry %s has a bad expiresAt; ignored", _seq(entry))
            return False
        if len(sets.tokens) + len(sets.grants) >= self._max_entries:
            self.prune(now)
        if action == "token_revoked":
            jti = entry.get("jti")
            if not isinstance(jti, str) or not jti:
                return False
            sets.tokens[jti] = until
            return True
        grant_id = entry.get("grantId")
        if action not in _GRANT_ACTIONS or not isinstance(grant_id, str) or not grant_id:
            logger.warning("revocation feed: entry %s not understood; ignored", _seq(entry))
            return False
        current = sets.grants.get(grant_id)
        if action == "revoked":
            sets.grants[grant_id] = ("revoked", until)
        elif action == "suspended":
            if current is None or current[0] != "revoked":
                sets.grants[grant_id] = ("suspended", until)
        elif current is not None and current[0] == "suspended":  # resumed lifts a suspension only
            del sets.grants[grant_id]
        return True


def _valid_seq(entry: dict[str, Any]) -> bool:
    return type(entry.get("seq")) is int


def _seq(entry: dict[str, Any]) -> int:
    return int(entry["seq"])


class _SSEParser:
    """Server-Sent Events, line by line: returns (event, data) when a blank line ends one."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def line(self, text: str) -> tuple[str, str] | None:
        if not text:
            if not self._data and self._event == "message":
                return None
            event, data = self._event, "\n".join(self._data)
            self._event, self._data = "message", []
            return event, data
        if text.startswith(":"):
            return None
        name, _, value = text.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


class _FeedFailure(Exception):
    pass


class RevocationFeed:
    """Keeps a `FeedState` current from the service; one worker (thread or task) at a time."""

    def __init__(self, base_url: str, api_key: str, *, clock: Callable[[], float], timeout: float,
                 max_staleness: float, backoff: tuple[float, float] = (0.5, 30.0)) -> None:
        self.state = FeedState(clock)
        self._base = base_url
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._timeout = timeout
        self._read_timeout = max_staleness + 1
        self._poll_wait = max(1, int(max_staleness / 2))
        self._backoff = backoff
        self._long_poll = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.connections = 0  # stream connections opened (diagnostics)

    # -- sans-IO ---------------------------------------------------------------------------

    def _timeouts(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(self._timeout, read=self._read_timeout)

    def _page(self, response: httpx.Response, body: bytes, what: str) -> dict[str, Any]:
        if response.status_code != 200:
            kind = {401: "API key refused", 403: "API key refused", 404: "feed disabled on this service"}
            reason = kind.get(response.status_code, f"status {response.status_code}")
            raise _FeedFailure(f"{what}: {reason}")
        try:
            page = decode_json_object(body)
        except ValueError as exc:
            raise _FeedFailure(f"{what}: body is not a JSON object ({exc})") from None
        if not isinstance(page.get("entries", []), list):
            raise _FeedFailure(f"{what}: 'entries' is not a list")
        return page

    def _on_event(self, event: str, data: str) -> None:
        self.state.heard()
        if event != "revocation":
            return
        try:
            entry = decode_json_object(data.encode("utf-8"))
        except ValueError:
            logger.warning("revocation feed: garbage event data ignored")
            return
        self.state.apply(entry)

    def _on_poll(self, page: dict[str, Any]) -> None:
        for entry in page.get("entries", []):
            self.state.apply(entry)
        self.state.heard()

    def _connected(self, response: httpx.Response) -> None:
        self.connections += 1
        stream = response.extensions.get("network_stream")
        self._socket = stream.get_extra_info("socket") if stream is not None else None

    def _failed(self, exc: BaseException, backoff: float) -> float:
        logger.warning("revocation feed: %s; reconnecting in %.1f s", exc or type(exc).__name__, backoff)
        return min(backoff * 2, self._backoff[1])

    # -- thread driver -------------------------------------------------------------------

    def start(self) -> None:
        """Run the feed in a daemon thread (Django, Flask, any sync server)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run_sync, name="grantex-revocation-feed", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._interrupt()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self._timeout + 1)

    def _interrupt(self) -> None:
        # Shutting the socket down wakes a read blocked on a quiet stream at once.
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _run_sync(self) -> None:
        import httpx

        backoff = self._backoff[0]
        with httpx.Client(timeout=self._timeouts(), follow_redirects=False) as client:
            while not self._stopping.is_set():
                try:
                    if self.state.cursor is None:
                        self._snapshot_sync(client)
                    if self._long_poll:
                        self._poll_sync(client)
                        backoff = self._backoff[0]
                        continue
                    if self._stream_sync(client):
                        backoff = self._backoff[0]
                except Exception as exc:  # the feed must outlive any failure
                    if self._stopping.is_set():
                        break
                    wait, backoff = backoff, self._failed(exc, backoff)
                    self._stopping.wait(wait)
                    continue
                self._stopping.wait(backoff)

    def _get_sync(self, client: httpx.Client, path: str, params: dict[str, Any], what: str) -> dict[str, Any]:
        response = client.get(self._base + path, params=params, headers=self._headers)
        return self._page(response, response.content, what)

    def _snapshot_sync(self, client: httpx.Client) -> None:
        entries: list[object] = []
        params: dict[str, Any] = {}
        page: dict[str, Any] = {}
        for _ in range(_MAX_PAGES):
            page = self._get_sync(client, "/v1/revocations", params, "snapshot")
            entries.extend(page.get("entries", []))
            token = page.get("nextPageToken")
            if not isinstance(token, str) or not token:
                break
            params = {"pageToken": token}
        cursor = page.get("cursor")
        self.state.replace(entries, cursor if type(cursor) is int else None)

    def _poll_sync(self, client: httpx.Client) -> None:
        params = {"since": self.state.cursor, "wait": self._poll_wait}
        self._on_poll(self._get_sync(client, "/v1/revocations", params, "long-poll"))

    def _stream_sync(self, client: httpx.Client) -> bool:
        """Follow the stream until it ends; True when it connected."""
        parser = _SSEParser()
        with client.stream("GET", self._base + "/v1/revocations/stream",
                           params={"since": self.state.cursor},
                           headers={**self._headers, "Accept": "text/event-stream"}) as response:
            if response.status_code == 404:
                logger.warning("revocation feed: no stream endpoint; using long-poll")
                self._long_poll = True
                return True
            self._page(response, b"{}", "stream")
            self._connected(response)
            try:
                for line in response.iter_lines():
                    if self._stopping.is_set():
                        break
                    event = parser.line(line[:_MAX_LINE])
                    if event is not None:
                        self._on_event(*event)
            finally:
                self._socket = None
        return True

    # -- asyncio driver ------------------------------------------------------------------

    async def start_async(self) -> None:
        """Run the feed as a task on the running loop (ASGI lifespan)."""
        if self._task is not None and not self._task.done():
            return
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._run_async(), name="grantex-feed")

    async def aclose(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.close()

    async def _run_async(self) -> None:
        import httpx

        backoff = self._backoff[0]
        ssl_context = await asyncio.to_thread(httpx.create_ssl_context)
        async with httpx.AsyncClient(timeout=self._timeouts(), follow_redirects=False,
                                     verify=ssl_context) as client:
            while not self._stopping.is_set():
                try:
                    if self.state.cursor is None:
                        await self._snapshot_async(client)
                    if self._long_poll:
                        await self._poll_async(client)
                        backoff = self._backoff[0]
                        continue
                    if await self._stream_async(client):
                        backoff = self._backoff[0]
                except Exception as exc:  # the feed must outlive any failure
                    wait, backoff = backoff, self._failed(exc, backoff)
                    await asyncio.sleep(wait)
                    continue
                await asyncio.sleep(backoff)

    async def _get_async(self, client: httpx.AsyncClient, path: str, params: dict[str, Any],
                         what: str) -> dict[str, Any]:
        response = await client.get(self._base + path, params=params, headers=self._headers)
        return self._page(response, response.content, what)

    async def _snapshot_async(self, client: httpx.AsyncClient) -> None:
        entries: list[object] = []
        params: dict[str, Any] = {}
        page: dict[str, Any] = {}
        for _ in range(_MAX_PAGES):
            page = await self._get_async(client, "/v1/revocations", params, "snapshot")
            entries.extend(page.get("entries", []))
            token = page.get("nextPageToken")
            if not isinstance(token, str) or not token:
                break
            params = {"pageToken": token}
        cursor = page.get("cursor")
        self.state.replace(entries, cursor if type(cursor) is int else None)

    async def _poll_async(self, client: httpx.AsyncClient) -> None:
        params = {"since": self.state.cursor, "wait": self._poll_wait}
        self._on_poll(await self._get_async(client, "/v1/revocations", params, "long-poll"))

    async def _stream_async(self, client: httpx.AsyncClient) -> bool:
        parser = _SSEParser()
        async with client.stream("GET", self._base + "/v1/revocations/stream",
                                 params={"since": self.state.cursor},
                                 headers={**self._headers, "Accept": "text/event-stream"}) as response:
            if response.status_code == 404:
                logger.warning("revocation feed: no stream endpoint; using long-poll")
                self._long_poll = True
                return True
            self._page(response, b"{}", "stream")
            self.connections += 1
            async for line in response.aiter_lines():
                event = parser.line(line[:_MAX_LINE])
                if event is not None:
                    self._on_event(*event)
        return True
