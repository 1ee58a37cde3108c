"""Revocation state shared through a real redis-server by checkers standing in for workers."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from grantex_guard import GrantexUnavailable, Guard, TokenRevoked
from grantex_guard.revocation import RedisRevocationStore, RevocationChecker, handle_webhook

from .conftest import API, FakeClock
from .fake_grantex_api import API_KEY, FakeGrantexAPI, facts
from .redis_server import RedisServer
from .test_revocation_webhooks import SECRET, signed


@pytest.fixture
def api() -> Iterator[FakeGrantexAPI]:
    with FakeGrantexAPI() as server:
        yield server


def worker(api: FakeGrantexAPI, clock: FakeClock, redis_url: str, **options: Any) -> RevocationChecker:
    return RevocationChecker(issuer="https://issuer.example", api_key=API_KEY, api_base_url=api.url,
                             clock=clock, timeout=1, store=RedisRevocationStore(redis_url, socket_timeout=2),
                             **options)


def mint(issuer: Any, guard: Guard, **options: Any) -> dict[str, Any]:
    return facts(guard, issuer.mint(["payments:initiate"], audience=API, **options))


def test_revocation_learnt_by_one_worker_refuses_in_another(
        api: FakeGrantexAPI, clock: FakeClock, redis_url: str, issuer: Any, guard: Guard) -> None:
    first, second = worker(api, clock, redis_url), worker(api, clock, redis_url)
    args = mint(issuer, guard)
    second.check(**args)
    first.revoke_locally(jti=args["token_id"], expires_at=args["expires_at"])
    with pytest.raises(TokenRevoked):
        second.check(**args, required=False)


def test_online_answer_is_shared_between_workers(api: FakeGrantexAPI, clock: FakeClock, redis_url: str,
                                                 issuer: Any, guard: Guard) -> None:
    api.answer = "revoked"
    first, second = worker(api, clock, redis_url), worker(api, clock, redis_url)
    args = mint(issuer, guard)
    for checker in (first, second, first, second):
        with pytest.raises(TokenRevoked):
            checker.check(**args)
    assert api.calls["status"] == 1


def test_two_workers_make_one_call_per_token_per_ttl(api: FakeGrantexAPI, clock: FakeClock, redis_url: str,
                                                     issuer: Any, guard: Guard) -> None:
    api.delay = 0.01
    workers = [worker(api, clock, redis_url), worker(api, clock, redis_url)]
    tokens = [mint(issuer, guard) for _ in range(100)]
    failures: list[BaseException] = []

    def verify_all(checker: RevocationChecker, offset: int) -> None:
        try:
            for round_number in range(5):
                for index in range(100):
                    checker.check(**tokens[(index + offset + round_number) % 100])
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=verify_all, args=(checker, offset))
               for checker in workers for offset in (0, 50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert api.calls["status"] == 100
    clock.advance(60)
    workers[1].check(**tokens[0])
    assert api.calls["status"] == 101


async def test_async_workers_share_answers(api: FakeGrantexAPI, clock: FakeClock, redis_url: str,
                                           issuer: Any, guard: Guard) -> None:
    api.delay = 0.05
    workers = [worker(api, clock, redis_url), worker(api, clock, redis_url)]
    tokens = [mint(issuer, guard) for _ in range(20)]
    await asyncio.gather(*(checker.check_async(**args) for checker in workers for args in tokens * 3))
    assert api.calls["status"] == 20
    for checker in workers:
        await checker.aclose()
        await checker.store.aclose()


async def test_a_burst_of_async_lookups_shares_a_bounded_set_of_connections(redis_url: str) -> None:
    import redis as redis_sync

    # The store's connections name themselves (redis-py passes `client_name` from the URL
    # to CLIENT SETNAME), so other clients of this Redis do not disturb the count.
    name = f"burst-{uuid.uuid4().hex}"
    observer = redis_sync.Redis.from_url(redis_url)

    def connections() -> int:
        return sum(1 for client in observer.client_list() if client.get("name") == name)

    assert connections() == 0
    store = RedisRevocationStore(f"{redis_url}?client_name={name}", socket_timeout=2, max_connections=4)
    answers = await asyncio.gather(*(store.lookup_async(f"tok_{n}", f"grnt_{n}", None, 0.0)
                                     for n in range(200)))
    opened = connections()
    await store.aclose()
    observer.close()
    assert answers == [None] * 200
    assert 1 <= opened <= 4


def test_webhook_into_redis_refuses_child_tokens_in_every_worker(api: FakeGrantexAPI, clock: FakeClock,
                                                                 redis_url: str, issuer: Any,
                                                                 guard: Guard) -> None:
    checker = worker(api, clock, redis_url)
    parent = issuer.mint(["payments:initiate"], audience=API)
    child = facts(guard, issuer.mint(["payments:initiate"], audience=API, delegated_from=parent))
    body, headers = signed({"id": "evt_1", "type": "grant.revoked", "createdAt": "2027-01-15T08:00:00Z",
                            "data": {"grantId": guard.verify(parent).grant_id, "cascade": True}}, clock())
    store = RedisRevocationStore(redis_url)
    status, _ = handle_webhook(body, headers, secret=SECRET, store=store, now=clock())
    assert status == 200
    with pytest.raises(TokenRevoked):
        checker.check(**child, required=False)


@pytest.mark.parametrize(("fail_open", "required", "allowed"), [
    (False, True, False), (True, True, True), (False, False, True)])
def test_redis_down_fails_by_policy_and_recovers(api: FakeGrantexAPI, clock: FakeClock, redis_url: str,
                                                 redis_server: RedisServer, issuer: Any, guard: Guard,
                                                 fail_open: bool, required: bool, allowed: bool) -> None:
    checker = worker(api, clock, redis_url, fail_open=fail_open)
    args = mint(issuer, guard)
    redis_server.stop()
    try:
        if allowed:
            checker.check(**args, required=required)
        else:
            with pytest.raises(GrantexUnavailable):
                checker.check(**args, required=required)
    finally:
        redis_server.start()
    api.answer = "revoked"
    with pytest.raises(TokenRevoked):
        checker.check(**args)


async def test_redis_down_fails_closed_on_the_async_path(api: FakeGrantexAPI, clock: FakeClock,
                                                         redis_url: str, redis_server: RedisServer,
                                                         issuer: Any, guard: Guard) -> None:
    checker = worker(api, clock, redis_url)
    args = mint(issuer, guard)
    redis_server.stop()
    try:
        with pytest.raises(GrantexUnavailable):
            await checker.check_async(**args)
    finally:
        redis_server.start()
    await checker.check_async(**args)
    await checker.store.aclose()
    await checker.aclose()


def test_shared_answers_expire_with_the_injected_clock(api: FakeGrantexAPI, clock: FakeClock, redis_url: str,
                                                       issuer: Any, guard: Guard) -> None:
    first, second = worker(api, clock, redis_url), worker(api, clock, redis_url)
    args = mint(issuer, guard)
    first.check(**args)
    clock.advance(60)
    second.check(**args)
    assert api.calls["status"] == 2
