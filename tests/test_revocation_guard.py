"""Revocation through Guard.verify / verify_async: policy, forcing, local revocations, the feed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from grantex_guard import GrantexUnavailable, Guard, TokenRevoked
from grantex_guard.revocation import MemoryRevocationStore, RedisRevocationStore
from grantex_guard.testing import LocalIssuer

from .conftest import API, FakeClock
from .fake_grantex_api import API_KEY, FakeGrantexAPI, wait_until


@pytest.fixture
def api() -> Iterator[FakeGrantexAPI]:
    with FakeGrantexAPI() as server:
        yield server


@pytest.fixture
def jwks_url(issuer: LocalIssuer) -> Iterator[str]:
    with issuer.serve() as url:
        yield url


@pytest.fixture
def online_guard(issuer: LocalIssuer, api: FakeGrantexAPI, jwks_url: str,
                 clock: FakeClock) -> Callable[..., Guard]:
    """Guards whose JWKS and Grantex API are both real HTTP servers on 127.0.0.1."""
    def build(**options: Any) -> Guard:
        return Guard(issuer=issuer.issuer, jwks_uri=jwks_url, audience=API, api_key=API_KEY,
                     api_base_url=api.url, http_timeout=1, clock=clock, **options)
    return build


def test_a_revoked_high_stakes_grant_is_refused(issuer: LocalIssuer, api: FakeGrantexAPI,
        online_guard: Callable[..., Guard]) -> None:
    guard = online_guard()
    api.answer = "revoked"
    with pytest.raises(TokenRevoked) as caught:
        guard.verify(issuer.mint(["payments:initiate:max_500"], audience=API))
    assert (caught.value.status, caught.value.code) == (401, "TOKEN_REVOKED")
    assert api.calls["status"] == 1


async def test_the_async_path_checks_too(issuer: LocalIssuer, api: FakeGrantexAPI,
        online_guard: Callable[..., Guard]) -> None:
    guard = online_guard()
    api.answer = "revoked"
    with pytest.raises(TokenRevoked):
        await guard.verify_async(issuer.mint(["email:send"], audience=API))
    await guard.aclose()


def test_low_stakes_tokens_make_no_call_by_default(issuer: LocalIssuer, api: FakeGrantexAPI,
        online_guard: Callable[..., Guard]) -> None:
    guard = online_guard()
    api.answer = "revoked"
    assert guard.verify(issuer.mint(["calendar:read"], audience=API))
    assert api.calls["status"] == 0


def test_a_route_can_force_the_check(issuer: LocalIssuer, api: FakeGrantexAPI,
        online_guard: Callable[..., Guard]) -> None:
    guard = online_guard()
    api.answer = "revoked"
    with pytest.raises(TokenRevoked):
        guard.verify(issuer.mint(["calendar:read"], audience=API), revocation=True)


def test_a_route_cannot_switch_the_check_off(issuer: LocalIssuer, api: FakeGrantexAPI,
        online_guard: Callable[..., Guard]) -> None:
    guard = online_guard()
    with pytest.raises(ValueError, match="cannot switch revocation checks off"):
        guard.verify(issuer.mint(["payments:initiate"], audience=API), revocation=False)


def test_answers_are_cached_across_cached_verifications(issuer: LocalIssuer, api: FakeGrantexAPI,
                                                        clock: FakeClock,
                                                        online_guard: Callable[..., Guard]) -> None:
    guard = online_guard(revocation_cache_ttl=60)
    token = issuer.mint(["payments:initiate"], audience=API)
    for _ in range(50):
        guard.verify(token)
    assert api.calls["status"] == 1
    clock.advance(61)
    guard.verify(token)
    assert api.calls["status"] == 2


def test_an_unreachable_service_is_a_503_unless_fail_open(issuer: LocalIssuer, api: FakeGrantexAPI,
                                                         online_guard: Callable[..., Guard]) -> None:
    api.answer = "http_500"
    token = issuer.mint(["payments:initiate"], audience=API)
    with pytest.raises(GrantexUnavailable) as caught:
        online_guard().verify(token)
    assert caught.value.status == 503
    assert online_guard(fail_open=True).verify(token)


@pytest.mark.parametrize("revoke", ["grant_id", "jti"])
def test_a_local_revocation_refuses_a_cached_token(issuer: LocalIssuer, guard: Guard,
                                                   revoke: str) -> None:
    token = issuer.mint(["calendar:read"], audience=API)
    grant = guard.verify(token)
    guard.revoke_locally(**{revoke: grant.grant_id if revoke == "grant_id" else grant.token_id})
    with pytest.raises(TokenRevoked):
        guard.verify(token)


def test_revoking_a_grant_refuses_the_tokens_delegated_from_it(issuer: LocalIssuer,
                                                               guard: Guard) -> None:
    parent = issuer.mint(["calendar:read"], audience=API)
    child = issuer.mint(["calendar:read"], audience=API, delegated_from=parent)
    guard.revoke_locally(grant_id=guard.verify(parent).grant_id)
    with pytest.raises(TokenRevoked):
        guard.verify(child)


def test_a_revocation_learnt_by_one_worker_refuses_in_another(issuer: LocalIssuer,
                                                              redis_url: str) -> None:
    worker_a = issuer.guard(audience=API, revocation_store=RedisRevocationStore(redis_url))
    worker_b = issuer.guard(audience=API, revocation_store=RedisRevocationStore(redis_url))
    token = issuer.mint(["calendar:read"], audience=API)
    assert worker_b.verify(token)

    worker_a.revoke_locally(grant_id=worker_a.verify(token).grant_id)

    with pytest.raises(TokenRevoked):
        worker_b.verify(token)


def test_the_feed_starts_with_warm_up_and_refuses_what_it_lists(issuer: LocalIssuer,
                                                                api: FakeGrantexAPI,
                                                                jwks_url: str) -> None:
    guard = Guard(issuer=issuer.issuer, jwks_uri=jwks_url, audience=API, api_key=API_KEY,
                  api_base_url=api.url, revocation_source="feed")
    issuer.clock = time.time  # the feed's staleness is real time
    token = issuer.mint(["payments:initiate"], audience=API)
    grant_id = issuer.guard(audience=API).verify(token).grant_id
    guard.warm_up()
    try:
        wait_until(lambda: _passes(guard, token))
        api.feed.publish("revoked", grant_id=grant_id)
        wait_until(lambda: not _passes(guard, token))
        with pytest.raises(TokenRevoked):
            guard.verify(token)
    finally:
        guard.close()


def _passes(guard: Guard, token: str) -> bool:
    try:
        guard.verify(token)
    except (TokenRevoked, GrantexUnavailable):
        return False
    return True


def test_revocation_options_are_validated_at_construction(issuer: LocalIssuer) -> None:
    with pytest.raises(ValueError, match="300"):
        issuer.guard(api_key=API_KEY, revocation_cache_ttl=600)
    with pytest.raises(ValueError, match="needs api_key"):
        issuer.guard(revocation_check="always")  # no API key, no feed: nothing could check


def test_the_api_key_never_appears_in_the_config_repr(issuer: LocalIssuer) -> None:
    guard = issuer.guard(api_key=API_KEY, revocation_store=MemoryRevocationStore())
    assert API_KEY not in repr(guard.config)


def test_a_verified_grant_can_be_confirmed_alone(issuer: LocalIssuer, api: FakeGrantexAPI,
                                                 online_guard: Callable[..., Guard]) -> None:
    guard = online_guard()
    token = issuer.mint(["calendar:read"], audience=API)
    grant = guard.verify(token)
    api.answer = "revoked"
    with pytest.raises(TokenRevoked):
        guard.confirm_not_revoked(grant, token)
    assert api.calls["status"] == 1


async def test_a_verified_grant_can_be_confirmed_alone_async(
        issuer: LocalIssuer, api: FakeGrantexAPI, online_guard: Callable[..., Guard]) -> None:
    guard = online_guard()
    token = issuer.mint(["calendar:read"], audience=API)
    grant = await guard.verify_async(token)
    await guard.confirm_not_revoked_async(grant, token)
    assert api.calls["status"] == 1
    await guard.aclose()
