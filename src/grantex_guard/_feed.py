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
import re
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
_MAX_LINE = 65_536  # bytes in one SSE line (and characters in one event's data)
_MAX_PAGE_BYTES = 4 * 1024 * 1024  # one snapshot or long-poll page, as read
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

    def resync(self) -> None:
        """Fetch a snapshot before resuming. Until it is applied the entries known so far
        still answer, and freshness runs out as usual: nothing is heard meanwhile."""
        self.cursor = None

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


class _FeedFailure(Exception):
    pass


class _DataRefused(_FeedFailure):
    """Data the feed had to refuse (too long, not JSON): whatever it carried is lost, so
    the state resyncs from a snapshot rather than resuming after the cursor."""


class _SSEParser:
    """Server-Sent Events, line by line: returns (event, data) when a blank line ends one."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []
        self._size = 0

    def line(self, text: str) -> tuple[str, str] | None:
        if not text:
            if not self._data and self._event == "message":
                return None
            event, data = self._event, "\n".join(self._data)
            self._event, self._data, self._size = "message", [], 0
            return event, data
        if text.startswith(":"):
            return None
        name, _, value = text.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._size += len(value) + 1
            if self._size > _MAX_LINE:  # many short data lines make one long event
                raise _DataRefused(f"stream: an event longer than {_MAX_LINE} characters; refused")
            self._data.append(value)
        return None


class _LineReader:
    """Cuts a byte stream into SSE lines (LF, CRLF or CR), refusing a line longer than
    `_MAX_LINE` bytes as soon as that many arrive without an end: never more is held."""

    _ENDS = re.compile(rb"\r\n|\r|\n")

    def __init__(self) -> None:
        self._partial = bytearray()
        self._after_cr = False  # the last chunk ended in CR: a leading LF belongs to it

    def feed(self, chunk: bytes) -> list[str]:
        if not chunk:
            return []
        start = 1 if self._after_cr and chunk.startswith(b"\n") else 0
        self._after_cr = False
        lines: list[str] = []
        for end in self._ENDS.finditer(chunk, start):
            self._take(chunk, start, end.start())
            lines.append(self._partial.decode("utf-8", errors="replace"))
            self._partial.clear()
            start = end.end()
            self._after_cr = end.group() == b"\r" and start == len(chunk)
        self._take(chunk, start, len(chunk))
        return lines

    def _take(self, chunk: bytes, start: int, end: int) -> None:
        if len(self._partial) + end - start > _MAX_LINE:
            raise _DataRefused(f"stream: a line longer than {_MAX_LINE} bytes; refused")
        self._partial += chunk[start:end]


class _PageBody:
    """A snapshot or long-poll page, collected chunk by chunk up to `_MAX_PAGE_BYTES`."""

    def __init__(self, response: httpx.Response, what: str) -> None:
        self._what = what
        self._body = bytearray()
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > _MAX_PAGE_BYTES:
            raise _DataRefused(f"{what}: the page declares {declared} bytes, over the "
                               f"{_MAX_PAGE_BYTES}-byte bound; refused")

    def add(self, chunk: bytes) -> None:
        self._body += chunk
        if len(self._body) > _MAX_PAGE_BYTES:
            raise _DataRefused(f"{self._what}: the page runs past the {_MAX_PAGE_BYTES}-byte bound; refused")

    def page(self) -> dict[str, Any]:
        try:
            page = decode_json_object(bytes(self._body))
        except ValueError as exc:
            raise _DataRefused(f"{self._what}: body is not a JSON object ({exc})") from None
        if not isinstance(page.get("entries", []), list):
            raise _DataRefused(f"{self._what}: 'entries' is not a list")
        return page


class _Snapshot:
    """The snapshot's paging, without I/O: `add` each page; True means fetch another with `params`."""

    def __init__(self) -> None:
        self.entries: list[object] = []
        self.params: dict[str, Any] = {}
        self.cursor: int | None = None
        self._pages = 0

    def add(self, page: dict[str, Any]) -> bool:
        self._pages += 1
        self.entries.extend(page.get("entries", []))
        cursor = page.get("cursor")
        self.cursor = cursor if type(cursor) is int else None
        token = page.get("nextPageToken")
        if not isinstance(token, str) or not token:
            return False
        if self._pages >= _MAX_PAGES:  # an incomplete snapshot must not replace the set
            raise _FeedFailure(f"snapshot: more than {_MAX_PAGES} pages; refused")
        self.params = {"pageToken": token}
        return True


def _accept(response: httpx.Response, what: str) -> None:
    if response.status_code != 200:
        kind = {401: "API key refused", 403: "API key refused", 404: "feed disabled on this service"}
        reason = kind.get(response.status_code, f"status {response.status_code}")
        raise _FeedFailure(f"{what}: {reason}")


class RevocationFeed:
    """Keeps a `FeedState` current from the service; one worker (thread or task) at a time.

    `http_client` / `async_http_client`: the user's own clients (proxies, mTLS), used
    as given and never closed; every request carries its own timeouts, so the stream's
    and the long-poll's long reads do not depend on the client's default.
    """

    def __init__(self, base_url: str, api_key: str, *, clock: Callable[[], float], timeout: float,
                 max_staleness: float, backoff: tuple[float, float] = (0.5, 30.0),
                 http_client: httpx.Client | None = None,
                 async_http_client: httpx.AsyncClient | None = None) -> None:
        self.state = FeedState(clock)
        self._base = base_url
        # identity: the size bounds then hold for what arrives, not only for what it unpacks to
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                         "Accept-Encoding": "identity"}
        self._timeout = timeout
        self._read_timeout = max_staleness + 1
        self._poll_wait = max(1, int(max_staleness / 2))
        self._backoff = backoff
        self._user_client = http_client
        self._user_async_client = async_http_client
        self._long_poll = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self._socket_lock = threading.Lock()
        self.connections = 0  # stream connections opened (diagnostics)

    # -- sans-IO ---------------------------------------------------------------------------

    def _request(self, path: str, params: dict[str, Any], accept: str = "application/json") -> dict[str, Any]:
        import httpx

        return {"url": self._base + path, "params": params, "headers": {**self._headers, "Accept": accept},
                "timeout": httpx.Timeout(self._timeout, read=self._read_timeout), "follow_redirects": False}

    def _stream_request(self) -> dict[str, Any]:
        return self._request("/v1/revocations/stream", {"since": self.state.cursor}, "text/event-stream")

    def _poll_request(self) -> dict[str, Any]:
        return self._request("/v1/revocations", {"since": self.state.cursor, "wait": self._poll_wait})

    def _stream_missing(self, response: httpx.Response) -> bool:
        if response.status_code != 404:
            _accept(response, "stream")
            self.connections += 1
            return False
        logger.warning("revocation feed: no stream endpoint; using long-poll")
        self._long_poll = True
        return True

    def _on_event(self, event: str, data: str) -> None:
        self.state.heard()
        if event != "revocation":
            return
        try:
            entry = decode_json_object(data.encode("utf-8"))
        except ValueError:
            raise _DataRefused("stream: a revocation event whose data is not a JSON object") from None
        self.state.apply(entry)  # entries it does not understand (an unknown action) are skipped

    def _on_poll(self, page: dict[str, Any]) -> None:
        for entry in page.get("entries", []):
            self.state.apply(entry)
        self.state.heard()

    def _failed(self, exc: BaseException, backoff: float) -> float:
        if isinstance(exc, _DataRefused):
            self.state.resync()
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
        # Shutting the socket down wakes a read blocked on a quiet stream at once. Under the
        # lock, so that a socket is shut only while the stream holds it (a user's client may
        # reuse the connection afterwards).
        with self._socket_lock:
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)

    def _watch(self, response: httpx.Response | None) -> None:
        stream = response.extensions.get("network_stream") if response is not None else None
        with self._socket_lock:
            self._socket = stream.get_extra_info("socket") if stream is not None else None

    def _run_sync(self) -> None:
        import httpx

        with contextlib.ExitStack() as owned:
            client = self._user_client
            if client is None:
                client = owned.enter_context(httpx.Client(follow_redirects=False))
            self._loop_sync(client)

    def _loop_sync(self, client: httpx.Client) -> None:
        backoff = self._backoff[0]
        while not self._stopping.is_set():
            try:
                if self.state.cursor is None:
                    self._snapshot_sync(client)
                if self._long_poll:
                    self._on_poll(self._get_sync(client, self._poll_request(), "long-poll"))
                    backoff = self._backoff[0]
                    continue
                self._stream_sync(client)
                backoff = self._backoff[0]
            except Exception as exc:  # the feed must outlive any failure
                if self._stopping.is_set():
                    break
                wait, backoff = backoff, self._failed(exc, backoff)
                self._stopping.wait(wait)
                continue
            self._stopping.wait(backoff)

    @staticmethod
    def _get_sync(client: httpx.Client, request: dict[str, Any], what: str) -> dict[str, Any]:
        with client.stream("GET", **request) as response:
            _accept(response, what)
            body = _PageBody(response, what)
            for chunk in response.iter_bytes():
                body.add(chunk)
            return body.page()

    def _snapshot_sync(self, client: httpx.Client) -> None:
        snapshot = _Snapshot()
        while snapshot.add(self._get_sync(client, self._request("/v1/revocations", snapshot.params),
                                          "snapshot")):
            pass
        self.state.replace(snapshot.entries, snapshot.cursor)

    def _stream_sync(self, client: httpx.Client) -> None:
        """Follow the stream until it ends."""
        parser, reader = _SSEParser(), _LineReader()
        with client.stream("GET", **self._stream_request()) as response:
            if self._stream_missing(response):
                return
            self._watch(response)
            try:
                for chunk in response.iter_bytes():
                    if self._stopping.is_set():
                        break
                    for line in reader.feed(chunk):
                        event = parser.line(line)
                        if event is not None:
                            self._on_event(*event)
            finally:
                self._watch(None)

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

        async with contextlib.AsyncExitStack() as owned:
            client = self._user_async_client
            if client is None:
                ssl_context = await asyncio.to_thread(httpx.create_ssl_context)  # blocking file reads
                client = await owned.enter_async_context(
                    httpx.AsyncClient(follow_redirects=False, verify=ssl_context))
            await self._loop_async(client)

    async def _loop_async(self, client: httpx.AsyncClient) -> None:
        backoff = self._backoff[0]
        while not self._stopping.is_set():
            try:
                if self.state.cursor is None:
                    await self._snapshot_async(client)
                if self._long_poll:
                    self._on_poll(await self._get_async(client, self._poll_request(), "long-poll"))
                    backoff = self._backoff[0]
                    continue
                await self._stream_async(client)
                backoff = self._backoff[0]
            except Exception as exc:  # the feed must outlive any failure
                wait, backoff = backoff, self._failed(exc, backoff)
                await asyncio.sleep(wait)
                continue
            await asyncio.sleep(backoff)

    @staticmethod
    async def _get_async(client: httpx.AsyncClient, request: dict[str, Any], what: str) -> dict[str, Any]:
        async with client.stream("GET", **request) as response:
            _accept(response, what)
            body = _PageBody(response, what)
            async for chunk in response.aiter_bytes():
                body.add(chunk)
            return body.page()

    async def _snapshot_async(self, client: httpx.AsyncClient) -> None:
        snapshot = _Snapshot()
        while snapshot.add(await self._get_async(client, self._request("/v1/revocations", snapshot.params),
                                                 "snapshot")):
            pass
        self.state.replace(snapshot.entries, snapshot.cursor)

    async def _stream_async(self, client: httpx.AsyncClient) -> None:
        parser, reader = _SSEParser(), _LineReader()
        async with client.stream("GET", **self._stream_request()) as response:
            if self._stream_missing(response):
                return
            async for chunk in response.aiter_bytes():
                for line in reader.feed(chunk):
                    event = parser.line(line)
                    if event is not None:
                        self._on_event(*event)
