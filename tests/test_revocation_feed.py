"""The revocation feed over real HTTP: snapshot, SSE stream, long-poll, staleness, reconnects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from grantex_guard import GrantexUnavailable, Guard, TokenRevoked
from grantex_guard.revocation import RevocationChecker
from grantex_guard.testing import LocalIssuer

from .conftest import API, FakeClock
from .fake_grantex_api import API_KEY, FakeGrantexAPI, facts, wait_until


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


def test_garbage_events_are_ignored(api: FakeGrantexAPI, feed_checker: RevocationChecker,
                                    issuer: LocalIssuer, guard: Guard) -> None:
    args = mint(issuer, guard)
    started(feed_checker)
    api.feed.garbage("event: revocation\ndata: {not json\n\n")
    api.feed.garbage('event: revocation\ndata: {"seq": "x", "action": "revoked"}\n\n')
    api.feed.garbage("event: revocation\ndata: [1, 2]\n\nnonsense line\n\n")
    api.feed.garbage('event: revocation\ndata: {"seq": 99, "action": "exploded", "grantId": "g"}\n\n')
    applied(feed_checker, api.feed.publish("revoked", grant_id=args["grant_id"])["seq"])
    with pytest.raises(TokenRevoked):
        feed_checker.check(**args)
    assert api.calls["stream"] == 1


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
    deadline = time.monotonic() + 5
    while (state.cursor or 0) < seq and time.monotonic() < deadline:
        import asyncio

        await asyncio.sleep(0.01)
    with pytest.raises(TokenRevoked):
        await checker.check_async(**args)
    await checker.aclose()
    assert checker.feed._task is None
