"""The revocation feed over real HTTP: snapshot, SSE stream, long-poll, staleness, reconnects."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from grantex_guard import GrantexUnavailable, Guard, TokenRevoked, _feed
from grantex_guard._feed import _MAX_LINE, _MAX_PAGE_BYTES, RevocationFeed, _FeedFailure, _LineReader
from grantex_guard.revocation import RevocationChecker
from grantex_guard.testing import LocalIssuer

from .conftest import API, FakeClock
from .fake_grantex_api import API_KEY, FakeGrantexAPI, LoopbackServer, facts, wait_async, wait_until


@pytest.fixture
def api() -> Iterator[FakeGrantexAPI]:
    with FakeGrantexAPI() as server:
        yield server


@pytest.fixture
def feed_checker(api: FakeGrantexAPI, clock: FakeClock) -> Iterator[RevocationChecker]:
    checker = make_checker(api, clock)
    yield checker
    checker.close()


def make_checker(api: FakeGrantexAPI, clock: FakeClock, **options: Any) -> RevocationChecker:
    return RevocationChecker(issuer="https://issuer.example", api_key=API_KEY, api_base_url=api.url,
                             source="feed", mode="always", clock=clock, timeout=1, **options)


def started(checker: RevocationChecker) -> RevocationChecker:
    checker.start()
    assert checker.feed is not None
    state = checker.feed.state
    wait_until(lambda: state.cursor is not None)
    return checker


def applied(checker: RevocationChecker, seq: int) -> None:
    assert checker.feed is not None
    state = checker.feed.state
    wait_until(lambda: (state.cursor or 0) >= seq)


def mint(issuer: LocalIssuer, guard: Guard, **options: Any) -> dict[str, Any]:
    return facts(guard, issuer.mint(["payments:initiate"], audience=API, **options))


def test_snapshot_follows_every_page(api: FakeGrantexAPI, feed_checker: RevocationChecker,
                                     issuer: LocalIssuer, guard: Guard) -> None:
    tokens = [mint(issuer, guard) for _ in range(5)]
    for args in tokens:
        api.feed.publish("revoked", grant_id=args["grant_id"])
    started(feed_checker)
    assert api.calls["snapshot"] == 3
    assert feed_checker.feed is not None and feed_checker.feed.state.cursor == 5
    for args in tokens:
        with pytest.raises(TokenRevoked):
            feed_checker.check(**args)


def test_stream_revocation_refuses_the_grant(api: FakeGrantexAPI, feed_checker: RevocationChecker,
                                             issuer: LocalIssuer, guard: Guard) -> None:
    args = mint(issuer, guard)
    started(feed_checker).check(**args)
    applied(feed_checker, api.feed.publish("revoked", grant_id=args["grant_id"])["seq"])
    with pytest.raises(TokenRevoked):
        feed_checker.check(**args)
    assert api.calls["status"] == 0


def test_stream_revocation_of_a_parent_grant_refuses_child_tokens(
        api: FakeGrantexAPI, feed_checker: RevocationChecker, issuer: LocalIssuer, guard: Guard) -> None:
    parent = issuer.mint(["payments:initiate"], audience=API)
    child = facts(guard, issuer.mint(["payments:initiate"], audience=API, delegated_from=parent))
    started(feed_checker)
    applied(feed_checker, api.feed.publish("revoked", grant_id=guard.verify(parent).grant_id)["seq"])
    with pytest.raises(TokenRevoked):
        feed_checker.check(**child)


def test_token_revoked_lists_the_jti(api: FakeGrantexAPI, feed_checker: RevocationChecker,
                                     issuer: LocalIssuer, guard: Guard) -> None:
    args, sibling = mint(issuer, guard), mint(issuer, guard)
    started(feed_checker)
    applied(feed_checker, api.feed.publish("token_revoked", jti=args["token_id"])["seq"])
    with pytest.raises(TokenRevoked):
        feed_checker.check(**args)
    feed_checker.check(**sibling)


def test_resumed_lifts_a_suspension_only(api: FakeGrantexAPI, feed_checker: RevocationChecker,
                                         issuer: LocalIssuer, guard: Guard) -> None:
    suspended, revoked = mint(issuer, guard), mint(issuer, guard)
    started(feed_checker)
    api.feed.publish("suspended", grant_id=suspended["grant_id"])
    api.feed.publish("revoked", grant_id=revoked["grant_id"])
    applied(feed_checker, 2)
    with pytest.raises(TokenRevoked, match="suspended"):
        feed_checker.check(**suspended)
    api.feed.publish("resumed", grant_id=suspended["grant_id"])
    applied(feed_checker, api.feed.publish("resumed", grant_id=revoked["grant_id"])["seq"])
    feed_checker.check(**suspended)
    with pytest.raises(TokenRevoked):
        feed_checker.check(**revoked)


def test_entries_are_dropped_at_their_expiry(api: FakeGrantexAPI, clock: FakeClock,
                                             feed_checker: RevocationChecker, issuer: LocalIssuer,
                                             guard: Guard) -> None:
    args = mint(issuer, guard)
    started(feed_checker)
    entry = api.feed.publish("revoked", grant_id=args["grant_id"], expires_at=clock() + 10)
    applied(feed_checker, entry["seq"])
    with pytest.raises(TokenRevoked):
        feed_checker.check(**args)
    clock.advance(10)
    assert feed_checker.feed is not None
    feed_checker.feed.state.prune(clock())
    assert len(feed_checker.feed.state) == 0


def test_iso_expiry_is_understood(api: FakeGrantexAPI, feed_checker: RevocationChecker, issuer: LocalIssuer,
                                  guard: Guard) -> None:
    args = mint(issuer, guard)
    started(feed_checker)
    seq = api.feed.publish("revoked", grant_id=args["grant_id"], expires_at="2099-01-01T00:00:00Z")["seq"]
    applied(feed_checker, seq)
    with pytest.raises(TokenRevoked):
        feed_checker.check(**args)


def test_stale_feed_fails_closed(api: FakeGrantexAPI, clock: FakeClock, feed_checker: RevocationChecker,
                                 issuer: LocalIssuer, guard: Guard) -> None:
    args = mint(issuer, guard)
    started(feed_checker).check(**args)
    api.feed.pause()
    time.sleep(0.1)  # let an in-flight heartbeat land before the clock moves
    clock.advance(5.5)
    with pytest.raises(GrantexUnavailable, match="retry later") as info:
        feed_checker.check(**args)
    assert "silent" in info.value.detail
    api.feed.resume()
    assert feed_checker.feed is not None
    wait_until(lambda: feed_checker.feed is not None and feed_checker.feed.state.fresh(clock(), 5))
    feed_checker.check(**args)


def test_feed_never_heard_from_fails_closed(api: FakeGrantexAPI, feed_checker: RevocationChecker,
                                            issuer: LocalIssuer, guard: Guard) -> None:
    with pytest.raises(GrantexUnavailable) as info:
        feed_checker.check(**mint(issuer, guard))
    assert "never heard from" in info.value.detail


def test_stale_feed_falls_back_to_the_status_endpoint(api: FakeGrantexAPI, clock: FakeClock,
                                                      issuer: LocalIssuer, guard: Guard) -> None:
    checker = make_checker(api, clock, feed_fallback="online")
    args = mint(issuer, guard)
    api.answer = "revoked"
    with pytest.raises(TokenRevoked):
        checker.check(**args)
    assert api.calls["status"] == 1
    checker.close()


def test_stale_feed_with_fail_open_allows(api: FakeGrantexAPI, feed_checker: RevocationChecker,
                                          clock: FakeClock, issuer: LocalIssuer, guard: Guard) -> None:
    checker = make_checker(api, clock, fail_open=True)
    checker.check(**mint(issuer, guard))


def test_stale_feed_does_not_block_tokens_that_need_no_check(api: FakeGrantexAPI, clock: FakeClock,
                                                             issuer: LocalIssuer, guard: Guard) -> None:
    checker = make_checker(api, clock)
    checker.check(**mint(issuer, guard), required=False)


def test_listed_tokens_are_refused_even_when_no_check_is_required(
        api: FakeGrantexAPI, feed_checker: RevocationChecker, issuer: LocalIssuer, guard: Guard) -> None:
    args = mint(issuer, guard)
    started(feed_checker)
    applied(feed_checker, api.feed.publish("revoked", grant_id=args["grant_id"])["seq"])
    with pytest.raises(TokenRevoked):
        feed_checker.check(**args, required=False)


def test_reconnects_with_the_cursor_after_a_drop(api: FakeGrantexAPI, feed_checker: RevocationChecker,
                                                 issuer: LocalIssuer, guard: Guard) -> None:
    args = mint(issuer, guard)
    api.feed.publish("revoked", grant_id="grnt_before")
    started(feed_checker)
    applied(feed_checker, api.feed.publish("revoked", grant_id="grnt_during")["seq"])
    api.feed.drop()
    wait_until(lambda: len(api.feed.stream_sinces) == 2)
    applied(feed_checker, api.feed.publish("revoked", grant_id=args["grant_id"])["seq"])
    assert api.feed.stream_sinces == ["1", "2"]
    assert api.calls["snapshot"] == 1
    with pytest.raises(TokenRevoked):
        feed_checker.check(**args)


def test_entries_it_does_not_understand_are_skipped(api: FakeGrantexAPI, feed_checker: RevocationChecker,
                                                   issuer: LocalIssuer, guard: Guard) -> None:
    args = mint(issuer, guard)
    started(feed_checker)
    api.feed.garbage('event: revocation\ndata: {"seq": "x", "action": "revoked"}\n\n')
    api.feed.garbage('event: revocation\ndata: {"seq": 99, "action": "exploded", "grantId": "g"}\n\n')
    api.feed.garbage("nonsense line\n\n")
    applied(feed_checker, api.feed.publish("revoked", grant_id=args["grant_id"])["seq"])
    with pytest.raises(TokenRevoked):
        feed_checker.check(**args)
    assert (api.calls["snapshot"], api.calls["stream"]) == (1, 1)


@pytest.mark.parametrize("data", ["{not json", "[1, 2]"])
def test_revocation_data_that_is_not_json_makes_the_feed_resync_from_a_snapshot(
        data: str, api: FakeGrantexAPI, feed_checker: RevocationChecker, issuer: LocalIssuer,
        guard: Guard) -> None:
    args = mint(issuer, guard)
    started(feed_checker)
    api.feed.garbage(f"event: revocation\ndata: {data}\n\n")  # a revocation we cannot read...
    api.feed.publish("revoked", grant_id=args["grant_id"])  # ...is in the next snapshot
    wait_until(lambda: api.calls["snapshot"] == 2)
    wait_until(lambda: feed_checker.feed is not None and feed_checker.feed.state.cursor is not None)
    with pytest.raises(TokenRevoked):
        feed_checker.check(**args)


def test_long_poll_is_used_when_the_stream_is_missing(api: FakeGrantexAPI, clock: FakeClock,
                                                      issuer: LocalIssuer, guard: Guard) -> None:
    api.feed.stream_enabled = False
    args = mint(issuer, guard)
    feed_checker = started(make_checker(api, clock, feed_max_staleness=2))
    wait_until(lambda: api.calls["poll"] >= 1)
    applied(feed_checker, api.feed.publish("revoked", grant_id=args["grant_id"])["seq"])
    with pytest.raises(TokenRevoked):
        feed_checker.check(**args)
    assert api.feed.poll_sinces[0] == "0"
    feed_checker.close()


def test_close_stops_a_silent_stream_promptly(api: FakeGrantexAPI, clock: FakeClock) -> None:
    checker = started(make_checker(api, clock))
    wait_until(lambda: api.feed.stream_sinces != [])
    api.feed.pause()
    began = time.monotonic()
    checker.close()
    assert time.monotonic() - began < 1.0
    assert checker.feed is not None and checker.feed._thread is None


async def test_feed_runs_as_an_asyncio_task(api: FakeGrantexAPI, clock: FakeClock, issuer: LocalIssuer,
                                            guard: Guard) -> None:
    checker = make_checker(api, clock)
    args = mint(issuer, guard)
    await checker.start_async()
    assert checker.feed is not None
    state = checker.feed.state
    seq = api.feed.publish("revoked", grant_id=args["grant_id"])["seq"]
    await wait_async(lambda: (state.cursor or 0) >= seq)  # fails the test on timeout
    with pytest.raises(TokenRevoked):
        await checker.check_async(**args)
    await checker.aclose()
    assert checker.feed._task is None


# -- the user's own HTTP clients ---------------------------------------------------------------


def make_feed(url: str, **options: Any) -> RevocationFeed:
    options.setdefault("max_staleness", 2)
    return RevocationFeed(url, API_KEY, clock=time.time, timeout=1, backoff=(0.05, 0.2), **options)


def feed_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == "grantex_guard.revocation" and record.levelno >= logging.WARNING]


def test_the_feed_uses_the_users_client_and_leaves_it_open(api: FakeGrantexAPI) -> None:
    seen: list[str] = []
    client = httpx.Client(event_hooks={"request": [lambda request: seen.append(request.url.path)]})
    api.feed.publish("revoked", grant_id="grnt_1")
    feed = make_feed(api.url, http_client=client)
    feed.start()
    wait_until(lambda: feed.connections == 1)
    seq = api.feed.publish("revoked", grant_id="grnt_2")["seq"]
    wait_until(lambda: feed.state.cursor == seq)
    feed.close()
    assert seen == ["/v1/revocations", "/v1/revocations/stream"]
    assert not client.is_closed
    assert client.get(api.url + "/v1/revocations", headers={"Authorization": f"Bearer {API_KEY}"}).is_success
    client.close()


def test_the_guards_http_client_reaches_its_feed(api: FakeGrantexAPI, issuer: LocalIssuer) -> None:
    seen: list[str] = []
    client = httpx.Client(event_hooks={"request": [lambda request: seen.append(request.url.path)]})
    guard = Guard(issuer=issuer.issuer, audience=API, api_key=API_KEY, api_base_url=api.url,
                  revocation_source="feed", http_client=client)
    try:
        guard.revocation.start()
        wait_until(lambda: "/v1/revocations/stream" in seen)
    finally:
        guard.close()
    assert seen[:2] == ["/v1/revocations", "/v1/revocations/stream"]
    client.close()


async def test_the_async_feed_uses_the_users_async_client_and_leaves_it_open(api: FakeGrantexAPI) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    client = httpx.AsyncClient(event_hooks={"request": [hook]})
    feed = make_feed(api.url, async_http_client=client, http_client=httpx.Client(transport=_refuse()))
    await feed.start_async()
    await wait_async(lambda: feed.connections == 1)
    seq = api.feed.publish("revoked", grant_id="grnt_1")["seq"]
    await wait_async(lambda: feed.state.cursor == seq)
    await feed.aclose()
    assert seen == ["/v1/revocations", "/v1/revocations/stream"]
    assert not client.is_closed
    await client.aclose()


def _refuse() -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"the sync client was used for {request.url}")

    return httpx.MockTransport(handler)


def test_long_reads_do_not_depend_on_the_users_client_timeout(api: FakeGrantexAPI,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    api.feed.stream_enabled = False  # long-poll: the service holds each request about a second
    client = httpx.Client(timeout=0.1)
    feed = make_feed(api.url, http_client=client)
    with caplog.at_level(logging.WARNING, logger="grantex_guard.revocation"):
        feed.start()
        wait_until(lambda: api.calls["poll"] >= 2)
        feed.close()
    assert feed_warnings(caplog) == ["revocation feed: no stream endpoint; using long-poll"]
    client.close()


# -- bounded reads -----------------------------------------------------------------------------


class HostileAPI(LoopbackServer):
    """The feed endpoints over real HTTP, each answer taken from a plan per endpoint.

    Answers: "page" (the entries, after `since` for a long-poll), "endless_page" (a JSON
    page that never ends), "declared_page" (one that announces a gigabyte), "missing"
    (404), "events" (an SSE stream with the entries, then heartbeats), "endless_line"
    (an SSE stream whose second event is one line that never ends). Endless answers
    stop when the client hangs up (or at `_GIVE_UP` bytes); `sent` has what each wrote.
    """

    _GIVE_UP = 256 * 1024 * 1024

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.plans: dict[str, list[str]] = {"snapshot": [], "poll": [], "stream": []}
        self.defaults = {"snapshot": "page", "poll": "page", "stream": "events"}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.sent: list[int] = []
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def publish(self, grant_id: str) -> int:
        with self._lock:
            self.entries.append({"seq": len(self.entries) + 1, "action": "revoked", "grantId": grant_id})
            return len(self.entries)

    def after(self, since: int) -> list[dict[str, Any]]:
        with self._lock:
            return [entry for entry in self.entries if entry["seq"] > since]

    def answer(self, endpoint: str) -> str:
        with self._lock:
            plan = self.plans[endpoint]
            return plan.pop(0) if plan else self.defaults[endpoint]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                api.requests.append((url.path, query))
                if url.path == "/v1/revocations/stream":
                    endpoint = "stream"
                else:
                    endpoint = "poll" if "since" in query else "snapshot"
                since = int(query.get("since") or 0)
                getattr(self, "_" + api.answer(endpoint))(since)

            def _head(self, status: int, kind: str, length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()

            def _page(self, since: int) -> None:
                if since:
                    time.sleep(0.05)  # a long-poll that found nothing new at once
                entries = api.after(since)
                raw = json.dumps({"entries": entries, "cursor": entries[-1]["seq"] if entries else since})
                self._head(200, "application/json", len(raw))
                self.wfile.write(raw.encode())

            def _missing(self, since: int) -> None:
                self._head(404, "application/json", 2)
                self.wfile.write(b"{}")

            def _endless(self, opening: bytes, filler: bytes) -> None:
                sent = 0
                try:
                    self.wfile.write(opening)
                    sent += len(opening)
                    while sent < api._GIVE_UP and not api.stopping.is_set():
                        self.wfile.write(filler)
                        sent += len(filler)
                except OSError:
                    pass
                api.sent.append(sent)

            def _endless_page(self, since: int) -> None:
                self._head(200, "application/json")
                entry = json.dumps({"seq": 1, "action": "revoked", "grantId": "grnt_" + "x" * 40}) + ","
                self._endless(b'{"entries": [', entry.encode() * 1000)

            def _declared_page(self, since: int) -> None:
                self._head(200, "application/json", 1 << 30)
                self._endless(b'{"entries": [', b" " * 65536)

            def _events(self, since: int) -> None:
                self._head(200, "text/event-stream")
                deadline = time.monotonic() + 5
                try:
                    self.wfile.write(b"event: ready\ndata: {}\n\n")
                    while time.monotonic() < deadline and not api.stopping.is_set():
                        for entry in api.after(since):
                            self.wfile.write(f"event: revocation\ndata: {json.dumps(entry)}\n\n".encode())
                            since = entry["seq"]
                        self.wfile.write(b"event: heartbeat\ndata: {}\n\n")
                        self.wfile.flush()
                        time.sleep(0.02)
                except OSError:
                    return

            def _endless_line(self, since: int) -> None:
                self._head(200, "text/event-stream")
                self._endless(b"event: ready\ndata: {}\n\nevent: revocation\ndata: ", b"x" * 65536)

        return Handler


@pytest.fixture
def hostile() -> Iterator[HostileAPI]:
    with HostileAPI() as server:
        yield server


READ_BOUND = 64 * 1024 * 1024  # what an endless answer may have written (the bound plus socket buffers)


@pytest.mark.parametrize("answer", ["endless_page", "declared_page"])
def test_an_oversized_snapshot_page_is_refused_and_the_feed_retries(
        hostile: HostileAPI, answer: str, caplog: pytest.LogCaptureFixture) -> None:
    hostile.publish("grnt_1")
    hostile.plans["snapshot"] = [answer]
    feed = make_feed(hostile.url)
    with caplog.at_level(logging.WARNING, logger="grantex_guard.revocation"):
        feed.start()
        wait_until(lambda: feed.state.cursor == 1)
        feed.close()
    assert feed.state.listed("tok_x", "grnt_1", None, time.time()) == "revoked"
    wait_until(lambda: len(hostile.sent) == 1)
    assert hostile.sent[0] < READ_BOUND
    if answer == "endless_page":
        assert hostile.sent[0] > _MAX_PAGE_BYTES  # refused by the bound, not by a timeout
    assert any(f"{_MAX_PAGE_BYTES}-byte bound; refused" in message for message in feed_warnings(caplog))
    assert [path for path, _ in hostile.requests[:2]] == ["/v1/revocations", "/v1/revocations"]


def test_an_endless_long_poll_page_keeps_the_last_state(hostile: HostileAPI,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    hostile.publish("grnt_1")
    hostile.defaults["stream"] = "missing"
    hostile.plans["poll"] = ["page", "endless_page"]
    feed = make_feed(hostile.url)
    with caplog.at_level(logging.WARNING, logger="grantex_guard.revocation"):
        feed.start()
        wait_until(lambda: len(hostile.sent) == 1)
        # the refused page's entries are lost: the feed resyncs, answering from what it knew
        assert feed.state.listed("tok_x", "grnt_1", None, time.time()) == "revoked"
        seq = hostile.publish("grnt_2")
        wait_until(lambda: feed.state.cursor == seq)
        feed.close()
    assert feed.state.listed("tok_x", "grnt_1", None, time.time()) == "revoked"
    assert feed.state.listed("tok_x", "grnt_2", None, time.time()) == "revoked"
    assert _MAX_PAGE_BYTES < hostile.sent[0] < READ_BOUND
    assert any("long-poll: the page runs past" in message for message in feed_warnings(caplog))
    assert [query.get("since") for path, query in hostile.requests].count(None) >= 2  # two snapshots


async def test_the_async_feed_refuses_an_endless_page_and_recovers(hostile: HostileAPI,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    hostile.publish("grnt_1")
    hostile.plans["snapshot"] = ["endless_page"]
    feed = make_feed(hostile.url)
    with caplog.at_level(logging.WARNING, logger="grantex_guard.revocation"):
        await feed.start_async()
        await wait_async(lambda: feed.state.cursor == 1 and feed.connections == 1)
        await feed.aclose()
    await wait_async(lambda: len(hostile.sent) == 1)
    assert _MAX_PAGE_BYTES < hostile.sent[0] < READ_BOUND
    assert any("snapshot: the page runs past" in message for message in feed_warnings(caplog))


def test_an_over_long_sse_line_is_refused_and_the_feed_resyncs(hostile: HostileAPI,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    hostile.publish("grnt_1")
    hostile.plans["stream"] = ["endless_line"]
    feed = make_feed(hostile.url)
    with caplog.at_level(logging.WARNING, logger="grantex_guard.revocation"):
        feed.start()
        wait_until(lambda: feed.connections == 2)
        seq = hostile.publish("grnt_2")
        wait_until(lambda: feed.state.cursor == seq)
        feed.close()
    wait_until(lambda: len(hostile.sent) == 1)
    assert hostile.sent[0] < READ_BOUND
    # what the refused line carried is lost: a snapshot comes before the stream resumes
    assert [path for path, _ in hostile.requests[:4]] == ["/v1/revocations", "/v1/revocations/stream"] * 2
    assert [query.get("since") for path, query in hostile.requests if path.endswith("/stream")] == ["1", "1"]
    assert any(f"a line longer than {_MAX_LINE} bytes; refused" in message
               for message in feed_warnings(caplog))


async def test_the_async_feed_refuses_an_over_long_sse_line(hostile: HostileAPI,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    hostile.plans["stream"] = ["endless_line"]
    feed = make_feed(hostile.url)
    with caplog.at_level(logging.WARNING, logger="grantex_guard.revocation"):
        await feed.start_async()
        await wait_async(lambda: feed.connections == 2)
        seq = hostile.publish("grnt_1")
        await wait_async(lambda: feed.state.cursor == seq)
        await feed.aclose()
    await wait_async(lambda: len(hostile.sent) == 1)
    assert hostile.sent[0] < READ_BOUND
    assert any("a line longer than" in message for message in feed_warnings(caplog))


def test_many_data_lines_cannot_make_an_endless_event(api: FakeGrantexAPI,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    feed = make_feed(api.url)
    with caplog.at_level(logging.WARNING, logger="grantex_guard.revocation"):
        feed.start()
        wait_until(lambda: feed.connections == 1)
        api.feed.garbage("event: revocation\n" + "data: xxxxxxxxxxxxxxxxxxxxxxxx\n" * 4000 + "\n")
        wait_until(lambda: feed.connections == 2)
        seq = api.feed.publish("revoked", grant_id="grnt_1")["seq"]
        wait_until(lambda: feed.state.cursor == seq)
        feed.close()
    assert any("an event longer than" in message for message in feed_warnings(caplog))


def test_the_line_reader_splits_every_line_ending_across_chunks() -> None:
    reader = _LineReader()
    chunks = [b"event: a\r", b"\ndata: 1\r", b"", b"\n\r", b"data: 2\n\n", b"x\r\r\n", b"tail"]
    lines = [line for chunk in chunks for line in reader.feed(chunk)]
    assert lines == ["event: a", "data: 1", "", "data: 2", "", "x", ""]
    assert reader.feed(b"\n") == ["tail"]
    assert reader.feed("caf\u00e9\n".encode()) == ["caf\u00e9"]


def test_the_line_reader_refuses_a_long_line_as_it_arrives() -> None:
    reader = _LineReader()
    assert reader.feed(b"x" * _MAX_LINE + b"\n") == ["x" * _MAX_LINE]  # at the bound: accepted
    for _ in range(_MAX_LINE // 1024):
        assert reader.feed(b"y" * 1024) == []
    with pytest.raises(_FeedFailure, match="line longer than"):
        reader.feed(b"y")  # refused at the first byte past the bound, no end of line needed
    with pytest.raises(_FeedFailure):
        _LineReader().feed(b"z" * (_MAX_LINE + 1) + b"\n")


def test_the_snapshot_pager_follows_page_tokens_within_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = _feed._Snapshot()
    assert snapshot.add({"entries": [{"seq": 1}], "cursor": 7, "nextPageToken": "p2"})
    assert snapshot.params == {"pageToken": "p2"}
    assert not snapshot.add({"entries": [{"seq": 2}], "cursor": 9})
    assert (snapshot.entries, snapshot.cursor) == ([{"seq": 1}, {"seq": 2}], 9)
    monkeypatch.setattr(_feed, "_MAX_PAGES", 2)
    endless = _feed._Snapshot()
    assert endless.add({"entries": [], "nextPageToken": "again"})
    with pytest.raises(_FeedFailure, match="more than 2 pages"):  # incomplete: never applied
        endless.add({"entries": [], "nextPageToken": "again"})
