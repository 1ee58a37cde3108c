"""A controllable fake of the Grantex API over real HTTP on 127.0.0.1 (wire-formats.md shapes).

    with FakeGrantexAPI() as api:
        api.url                              # "http://127.0.0.1:<port>"
        api.answer = "revoked"               # every online check answers this...
        api.answers[jti] = "active"          # ...except for this token
        api.calls["status"]                  # calls per endpoint
        api.feed.publish("revoked", grant_id="grnt_1")
        api.feed.pause() / resume() / drop() / garbage("event: revocation\\ndata: {oops\\n\\n")

Answers (`api.answer`, `api.answers[jti]`): "active", "revoked", "suspended",
"unknown", "expired", "not_found", "wrong_developer" (each in the shape of the
endpoint asked), "http_400", "http_401", "http_404", "http_429" (with
`Retry-After: api.retry_after`), "http_500", "garbage" (a non-JSON 200).
`api.delay` seconds are slept before any online answer (timeouts).
Endpoints counted in `calls`: status, grants_verify, tokens_verify, snapshot,
poll, stream.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

API_KEY = "gx_test_0123456789"


def _jti(token: str) -> str | None:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    jti = claims.get("jti")
    return jti if isinstance(jti, str) else None


def _status_body(kind: str) -> dict[str, Any]:
    state = kind if kind in ("active", "revoked", "suspended", "unknown") else "revoked"
    return {"revoked": state in ("revoked", "suspended"), "status": state}


def _grants_verify_body(kind: str) -> dict[str, Any]:
    if kind == "active":
        return {"active": True, "claims": {}}
    reason = kind if kind in ("revoked", "expired", "not_found", "wrong_developer") else "revoked"
    return {"active": False, "reason": reason}


def _tokens_verify_body(kind: str) -> dict[str, Any]:
    if kind == "active":
        return {"valid": True, "grantId": "grnt_x", "scopes": [], "principal": "user_x",
                "agent": "did:grantex:ag_x", "expiresAt": "2030-01-01T00:00:00Z"}
    return {"valid": False}


_BODIES = {"status": _status_body, "grants_verify": _grants_verify_body, "tokens_verify": _tokens_verify_body}


class FakeFeed:
    """The revocation log behind the snapshot, long-poll and SSE endpoints."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.page_size = 2
        self.heartbeat = 0.05
        self.stream_enabled = True
        self.stream_sinces: list[str | None] = []
        self.poll_sinces: list[str | None] = []
        self._condition = threading.Condition()
        self._paused = False
        self._generation = 0  # bumped by drop(): open streams end
        self._garbage: list[str] = []

    def publish(self, action: str, *, grant_id: str | None = None, jti: str | None = None,
                expires_at: float | str | None = None) -> dict[str, Any]:
        with self._condition:
            entry: dict[str, Any] = {"seq": len(self.entries) + 1, "action": action, "at": time.time()}
            if grant_id is not None:
                entry["grantId"] = grant_id
            if jti is not None:
                entry["jti"] = jti
            if expires_at is not None:
                entry["expiresAt"] = expires_at
            self.entries.append(entry)
            self._condition.notify_all()
            return entry

    def pause(self) -> None:
        """Open streams go silent (no events, no heartbeats) until resume()."""
        with self._condition:
            self._paused = True

    def resume(self) -> None:
        with self._condition:
            self._paused = False
            self._condition.notify_all()

    def drop(self) -> None:
        """End every open stream now (the client sees the connection close)."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def garbage(self, raw: str) -> None:
        """Send these raw bytes into the open streams (e.g. an event with invalid JSON)."""
        with self._condition:
            self._garbage.append(raw)
            self._condition.notify_all()

    def after(self, since: int) -> list[dict[str, Any]]:
        with self._condition:
            return [entry for entry in self.entries if entry["seq"] > since]

    @property
    def cursor(self) -> int:
        return len(self.entries)


_Server = TypeVar("_Server", bound="LoopbackServer")


class LoopbackServer:
    """A threaded HTTP server on a free 127.0.0.1 port; subclasses supply the handler."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self: _Server) -> _Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class FakeGrantexAPI(LoopbackServer):
    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.answer = "active"
        self.answers: dict[str, str] = {}
        self.retry_after = 30
        self.delay = 0.0
        self.calls: Counter[str] = Counter()
        self.feed = FakeFeed()
        self._lock = threading.Lock()
        super().__init__(_handler_for(self))

    def count(self, endpoint: str) -> None:
        with self._lock:
            self.calls[endpoint] += 1

    def answer_for(self, jti: str | None) -> str:
        return self.answers.get(jti or "", self.answer)

    def stop(self) -> None:
        self.feed.drop()
        super().stop()


def _handler_for(api: FakeGrantexAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def _error(self, status: int, code: str, headers: dict[str, str] | None = None) -> None:
            self._json(status, {"message": code.lower(), "code": code, "requestId": "req_fake"}, headers)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {api.api_key}":
                return True
            self._error(401, "UNAUTHORIZED")
            return False

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {name: values[0] for name, values in parse_qs(url.query).items()}
            if url.path == "/v1/revocations/status":
                self._online("status", query.get("jti"))
            elif url.path == "/v1/revocations" and "since" in query:
                self._poll(query)
            elif url.path == "/v1/revocations":
                self._snapshot(query)
            elif url.path == "/v1/revocations/stream":
                self._stream(query)
            else:
                self._error(404, "NOT_FOUND")

        def do_POST(self) -> None:
            endpoint = {"/v1/grants/verify": "grants_verify", "/v1/tokens/verify": "tokens_verify"}
            path = urlsplit(self.path).path
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if path not in endpoint:
                self._error(404, "NOT_FOUND")
                return
            try:
                token = json.loads(body)["token"]
            except (ValueError, KeyError, TypeError):
                self._error(400, "BAD_REQUEST")
                return
            self._online(endpoint[path], _jti(token))

        def _online(self, endpoint: str, jti: str | None) -> None:
            api.count(endpoint)
            if api.delay:
                time.sleep(api.delay)
            if not self._authorised():
                return
            kind = api.answer_for(jti)
            if kind.startswith("http_"):
                status = int(kind[5:])
                headers = {"Retry-After": str(api.retry_after), "X-RateLimit-Limit": "100",
                           "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(api.retry_after)}
                self._error(status, f"HTTP_{status}", headers if status == 429 else None)
            elif kind == "garbage":
                self._json(200, b"<html>surprise</html>")
            else:
                self._json(200, _BODIES[endpoint](kind))

        def _snapshot(self, query: dict[str, str]) -> None:
            api.count("snapshot")
            if not self._authorised():
                return
            feed = api.feed
            start = int(query.get("pageToken", "0"))
            entries = feed.after(0)
            page = entries[start:start + feed.page_size]
            body: dict[str, Any] = {"entries": page, "cursor": feed.cursor}
            if start + feed.page_size < len(entries):
                body["nextPageToken"] = str(start + feed.page_size)
            self._json(200, body)

        def _poll(self, query: dict[str, str]) -> None:
            api.count("poll")
            if not self._authorised():
                return
            feed = api.feed
            feed.poll_sinces.append(query.get("since"))
            since = int(query["since"])
            deadline = time.monotonic() + min(float(query.get("wait", "1")), 2.0)
            with feed._condition:
                while not feed.after(since) and time.monotonic() < deadline and not api.stopping.is_set():
                    feed._condition.wait(0.05)
            entries = feed.after(since)
            self._json(200, {"entries": entries, "cursor": entries[-1]["seq"] if entries else since})

        def _stream(self, query: dict[str, str]) -> None:
            api.count("stream")
            feed = api.feed
            if not feed.stream_enabled:
                self._error(404, "NOT_FOUND")
                return
            if not self._authorised():
                return
            feed.stream_sinces.append(query.get("since"))
            sent = int(query.get("since") or 0)
            generation = feed._generation
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            try:
                self._write("event: ready\ndata: {}\n\n")
                last_beat = time.monotonic()
                while not api.stopping.is_set() and feed._generation == generation:
                    with feed._condition:
                        feed._condition.wait(0.01)
                        if feed._generation != generation:
                            break
                        if feed._paused:
                            continue
                        garbage, feed._garbage = feed._garbage, []
                    for raw in garbage:
                        self._write(raw)
                    for entry in feed.after(sent):
                        self._write(f"event: revocation\ndata: {json.dumps(entry)}\n\n")
                        sent = entry["seq"]
                    if time.monotonic() - last_beat >= feed.heartbeat:
                        self._write("event: heartbeat\ndata: {}\n\n")
                        last_beat = time.monotonic()
            except OSError:
                return

        def _write(self, text: str) -> None:
            self.wfile.write(text.encode())
            self.wfile.flush()

    return Handler


def facts(guard: Any, token: str) -> dict[str, Any]:
    """What a Guard hands the revocation checker for `token` (verified first, as the Guard will)."""
    grant = guard.verify(token)
    return {"token": token, "token_id": grant.token_id, "grant_id": grant.grant_id,
            "parent_grant_id": grant.parent_grant_id, "expires_at": grant.expires_at.timestamp()}


def signed_webhook(event: dict[str, Any], timestamp: float | None = None, *, secret: str,
                   legacy: bool = False) -> tuple[bytes, dict[str, str]]:
    """A webhook as Grantex sends it: the body, its timestamp (now when None) and V2 signature
    headers; `legacy`: only the older signature of the body alone, without a timestamp."""
    body = json.dumps(event).encode()
    if legacy:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {"X-Grantex-Signature": f"sha256={digest}"}
    stamp = str(int(time.time() if timestamp is None else timestamp))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {"X-Grantex-Timestamp": stamp, "X-Grantex-Signature-V2": f"sha256={digest}"}


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll (real time) until `predicate()` holds: for what a background feed does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        time.sleep(0.01)


async def wait_async(predicate: Any, timeout: float = 5.0) -> None:
    """`wait_until` for a test running in an event loop: awaits instead of blocking it."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await asyncio.sleep(0.01)
