"""Online revocation checks against a fake Grantex API over real HTTP: outcomes, caching, policy."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from grantex_guard import GrantexUnavailable, Guard, TokenExpired, TokenRevoked
from grantex_guard.revocation import (
    MemoryRevocationStore,
    RevocationChecker,
    RevocationPolicy,
)
from grantex_guard.testing import LocalIssuer

from .conftest import API, FakeClock
from .fake_grantex_api import API_KEY, FakeGrantexAPI, facts

ONLINE_SOURCES = ("status", "grants_verify", "tokens_verify")


@pytest.fixture
def api() -> Iterator[FakeGrantexAPI]:
    with FakeGrantexAPI() as server:
        yield server


def make_checker(api: FakeGrantexAPI, clock: FakeClock, **options: Any) -> RevocationChecker:
    options.setdefault("api_key", API_KEY)
    options.setdefault("timeout", 1)
    return RevocationChecker(issuer="https://issuer.example", api_base_url=api.url, clock=clock, **options)


def mint(issuer: LocalIssuer, guard: Guard, scopes: tuple[str, ...] = ("payments:initiate",),
         **options: Any) -> dict[str, Any]:
    return facts(guard, issuer.mint(list(scopes), audience=API, **options))


# -- outcomes ------------------------------------------------------------------------------

OUTCOMES = [
    ("status", "active", None),
    ("status", "revoked", TokenRevoked),
    ("status", "suspended", TokenRevoked),
    ("status", "unknown", GrantexUnavailable),
    ("grants_verify", "active", None),
    ("grants_verify", "revoked", TokenRevoked),
    ("grants_verify", "expired", TokenExpired),
    ("grants_verify", "not_found", TokenRevoked),
    ("grants_verify", "wrong_developer", GrantexUnavailable),
    ("grants_verify", "http_400", GrantexUnavailable),
    ("tokens_verify", "active", None),
    ("tokens_verify", "revoked", TokenRevoked),
    *[(source, answer, GrantexUnavailable) for source in ONLINE_SOURCES
      for answer in ("http_401", "http_429", "http_500", "garbage")],
]


@pytest.mark.parametrize(("source", "answer", "expected"), OUTCOMES)
def test_online_answer_maps_to_outcome(api: FakeGrantexAPI, clock: FakeClock, issuer: LocalIssuer,
                                       guard: Guard, source: str, answer: str,
                                       expected: type[Exception] | None) -> None:
    api.answer = answer
    checker = make_checker(api, clock, source=source)
    if expected is None:
        checker.check(**mint(issuer, guard))
    else:
        with pytest.raises(expected):
            checker.check(**mint(issuer, guard))
    assert api.calls[source] == 1


@pytest.mark.parametrize(("source", "answer", "expected"), OUTCOMES[::3])
async def test_async_online_answer_maps_to_outcome(api: FakeGrantexAPI, clock: FakeClock,
                                                   issuer: LocalIssuer, guard: Guard, source: str,
                                                   answer: str, expected: type[Exception] | None) -> None:
    api.answer = answer
    checker = make_checker(api, clock, source=source)
    try:
        if expected is None:
            await checker.check_async(**mint(issuer, guard))
        else:
            with pytest.raises(expected):
                await checker.check_async(**mint(issuer, guard))
    finally:
        await checker.aclose()
    assert api.calls[source] == 1


def test_unknown_status_fails_closed_even_with_fail_open(api: FakeGrantexAPI, clock: FakeClock,
                                                        issuer: LocalIssuer, guard: Guard) -> None:
    api.answer = "unknown"
    checker = make_checker(api, clock, fail_open=True)
    with pytest.raises(GrantexUnavailable):
        checker.check(**mint(issuer, guard))


def test_status_404_is_a_configuration_error_naming_the_other_sources(
        api: FakeGrantexAPI, clock: FakeClock, issuer: LocalIssuer, guard: Guard,
        caplog: pytest.LogCaptureFixture) -> None:
    api.answer = "http_404"
    checker = make_checker(api, clock, fail_open=True)
    logged = caplog.at_level(logging.ERROR, "grantex_guard.revocation")
    with logged, pytest.raises(GrantexUnavailable) as info:
        checker.check(**mint(issuer, guard))
    assert "grants_verify" in info.value.detail
    assert "grants_verify" in caplog.records[0].getMessage()
    assert caplog.records[0].levelno == logging.ERROR


def test_configuration_error_is_logged_once_per_ttl(api: FakeGrantexAPI, clock: FakeClock,
                                                    issuer: LocalIssuer, guard: Guard,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    api.answer = "wrong_developer"
    checker = make_checker(api, clock, source="grants_verify", cache_ttl=60)
    with caplog.at_level(logging.ERROR, "grantex_guard.revocation"):
        for _ in range(3):
            with pytest.raises(GrantexUnavailable):
                checker.check(**mint(issuer, guard))
        clock.advance(60)
        with pytest.raises(GrantexUnavailable):
            checker.check(**mint(issuer, guard))
    assert [record.levelno for record in caplog.records] == [logging.ERROR, logging.ERROR]


def test_service_failure_message_never_echoes_the_token(api: FakeGrantexAPI, clock: FakeClock,
                                                        issuer: LocalIssuer, guard: Guard) -> None:
    api.answer = "http_500"
    checker = make_checker(api, clock, source="tokens_verify")
    args = mint(issuer, guard)
    with pytest.raises(GrantexUnavailable) as info:
        checker.check(**args)
    assert args["token"] not in str(info.value) and args["token"] not in info.value.detail


# -- caching -------------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "expected"), [("active", None), ("revoked", TokenRevoked)])
def test_result_is_cached_for_the_ttl(api: FakeGrantexAPI, clock: FakeClock, issuer: LocalIssuer,
                                      guard: Guard, answer: str, expected: type[Exception] | None) -> None:
    api.answer = answer
    checker = make_checker(api, clock, cache_ttl=60)
    args = mint(issuer, guard)
    for _ in range(5):
        if expected is None:
            checker.check(**args)
        else:
            with pytest.raises(expected):
                checker.check(**args)
    assert api.calls["status"] == 1


def test_result_is_checked_again_after_the_ttl(api: FakeGrantexAPI, clock: FakeClock, issuer: LocalIssuer,
                                               guard: Guard) -> None:
    checker = make_checker(api, clock, cache_ttl=60)
    args = mint(issuer, guard)
    checker.check(**args)
    clock.advance(59)
    checker.check(**args)
    assert api.calls["status"] == 1
    clock.advance(1)
    api.answer = "revoked"
    with pytest.raises(TokenRevoked):
        checker.check(**args)
    assert api.calls["status"] == 2


def test_result_is_never_cached_past_the_token_expiry(api: FakeGrantexAPI, clock: FakeClock,
                                                      issuer: LocalIssuer, guard: Guard) -> None:
    checker = make_checker(api, clock, cache_ttl=60)
    args = mint(issuer, guard, expires_in=20)
    checker.check(**args)
    clock.advance(20)
    checker.check(**args)
    assert api.calls["status"] == 2


def test_cache_ttl_above_five_minutes_is_refused(api: FakeGrantexAPI, clock: FakeClock) -> None:
    make_checker(api, clock, cache_ttl=300)
    with pytest.raises(ValueError, match="5 minutes"):
        make_checker(api, clock, cache_ttl=301)


def test_memory_store_is_bounded_in_entries() -> None:
    store = MemoryRevocationStore(max_entries=3)
    for number in range(10):
        store.record(f"tok_{number}", "active", until=100.0, now=0.0)
        store.deny(jti=f"tok_{number}", grant_id=None, until=100.0, now=0.0)
    assert store.lookup("tok_9", "grnt", None, 1.0) == "revoked"
    assert store.lookup("tok_0", "grnt", None, 1.0) is None
    assert len(store._results) == 3 and len(store._tokens) == 3


# -- single flight -------------------------------------------------------------------------

def test_hundred_threads_checking_one_token_make_one_call(api: FakeGrantexAPI, clock: FakeClock,
                                                          issuer: LocalIssuer, guard: Guard) -> None:
    api.delay = 0.2
    checker = make_checker(api, clock)
    args = mint(issuer, guard)
    start = threading.Barrier(100)
    failures: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            checker.check(**args)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert api.calls["status"] == 1


async def test_hundred_tasks_checking_one_token_make_one_call(api: FakeGrantexAPI, clock: FakeClock,
                                                              issuer: LocalIssuer, guard: Guard) -> None:
    api.delay = 0.2
    api.answer = "revoked"
    checker = make_checker(api, clock)
    args = mint(issuer, guard)
    results = await asyncio.gather(*(checker.check_async(**args) for _ in range(100)),
                                   return_exceptions=True)
    await checker.aclose()
    assert all(isinstance(result, TokenRevoked) for result in results)
    assert api.calls["status"] == 1


# -- rate limits and failures --------------------------------------------------------------

def test_retry_after_is_honoured_without_calls(api: FakeGrantexAPI, clock: FakeClock, issuer: LocalIssuer,
                                               guard: Guard) -> None:
    api.answer, api.retry_after = "http_429", 30
    checker = make_checker(api, clock)
    with pytest.raises(GrantexUnavailable) as first:
        checker.check(**mint(issuer, guard))
    assert first.value.retry_after == 30
    api.answer = "active"
    clock.advance(20)
    with pytest.raises(GrantexUnavailable) as second:
        checker.check(**mint(issuer, guard))
    assert second.value.retry_after == 10
    assert api.calls["status"] == 1
    clock.advance(10)
    checker.check(**mint(issuer, guard))
    assert api.calls["status"] == 2


def test_fail_open_allows_while_rate_limited(api: FakeGrantexAPI, clock: FakeClock, issuer: LocalIssuer,
                                             guard: Guard, caplog: pytest.LogCaptureFixture) -> None:
    api.answer = "http_429"
    checker = make_checker(api, clock, fail_open=True)
    with caplog.at_level(logging.WARNING, "grantex_guard.revocation"):
        checker.check(**mint(issuer, guard))
        checker.check(**mint(issuer, guard))
    assert api.calls["status"] == 1
    assert "fail_open" in caplog.records[0].getMessage()


@pytest.mark.parametrize("fail_open", [False, True])
def test_timeout_fails_closed_or_open(api: FakeGrantexAPI, clock: FakeClock, issuer: LocalIssuer,
                                      guard: Guard, fail_open: bool) -> None:
    api.delay = 1.0
    checker = make_checker(api, clock, timeout=0.3, fail_open=fail_open)
    if fail_open:
        checker.check(**mint(issuer, guard))
    else:
        with pytest.raises(GrantexUnavailable, match="retry later"):
            checker.check(**mint(issuer, guard))


def test_connection_refused_fails_closed(clock: FakeClock, issuer: LocalIssuer, guard: Guard) -> None:
    checker = RevocationChecker(issuer="https://issuer.example", api_key=API_KEY,
                                api_base_url="http://127.0.0.1:9", clock=clock, timeout=0.5)
    with pytest.raises(GrantexUnavailable) as info:
        checker.check(**mint(issuer, guard))
    assert info.value.retry_after >= 1


def test_server_error_holds_calls_briefly(api: FakeGrantexAPI, clock: FakeClock, issuer: LocalIssuer,
                                          guard: Guard) -> None:
    api.answer = "http_500"
    checker = make_checker(api, clock)
    for _ in range(3):
        with pytest.raises(GrantexUnavailable):
            checker.check(**mint(issuer, guard))
    assert api.calls["status"] == 1
    clock.advance(2)
    api.answer = "active"
    checker.check(**mint(issuer, guard))
    assert api.calls["status"] == 2


def test_bad_api_key_is_a_configuration_error_not_the_clients(clock: FakeClock, issuer: LocalIssuer,
                                                              guard: Guard, api: FakeGrantexAPI) -> None:
    checker = make_checker(api, clock, api_key="gx_wrong", fail_open=True)
    with pytest.raises(GrantexUnavailable) as info:
        checker.check(**mint(issuer, guard))
    assert "API key" in info.value.detail


# -- policy --------------------------------------------------------------------------------

POLICY = [
    ("never", ("payments:initiate",), None, False),
    ("never", ("calendar:read",), True, True),
    ("always", ("calendar:read",), None, True),
    ("high_stakes", ("calendar:read",), None, False),
    ("high_stakes", ("calendar:read", "payments:initiate"), None, True),
    ("high_stakes", ("payments:initiate:max_500",), None, True),
    ("high_stakes", ("email:send",), None, True),
    ("high_stakes", ("files:write:folder_a",), None, True),
    ("high_stakes", ("files:read",), None, False),
    ("high_stakes", ("payments:refund",), None, False),
    ("high_stakes", ("calendar:read",), True, True),
]


@pytest.mark.parametrize(("mode", "scopes", "forced", "expected"), POLICY)
def test_policy_decides_which_tokens_are_checked(mode: str, scopes: tuple[str, ...], forced: bool | None,
                                                 expected: bool) -> None:
    assert RevocationPolicy(mode).needs_check(scopes, forced) is expected


def test_custom_high_stakes_scopes_replace_the_defaults() -> None:
    policy = RevocationPolicy("high_stakes", ["com.stripe.charges:create"])
    assert policy.needs_check(("com.stripe.charges:create:max_5000",))
    assert not policy.needs_check(("payments:initiate",))


def test_malformed_high_stakes_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="resource:action"):
        RevocationPolicy("high_stakes", ["payments"])


def test_a_route_cannot_loosen_the_policy() -> None:
    with pytest.raises(ValueError, match="only force"):
        RevocationPolicy("always").validate_route(False)


def test_forcing_a_check_without_an_api_key_is_refused_at_start_up(clock: FakeClock) -> None:
    checker = RevocationChecker(issuer="https://issuer.example", api_key=None, clock=clock)
    with pytest.raises(ValueError, match="api_key"):
        checker.policy.validate_route(True)


@pytest.mark.parametrize(("api_key", "expected"), [(None, "never"), (API_KEY, "high_stakes")])
def test_default_mode_depends_on_the_api_key(clock: FakeClock, api_key: str | None, expected: str) -> None:
    checker = RevocationChecker(issuer="https://issuer.example", api_key=api_key, clock=clock)
    assert checker.policy.mode == expected
    assert checker.enabled is (api_key is not None)


@pytest.mark.parametrize(("options", "message"), [
    ({"mode": "always"}, "needs api_key"), ({"source": "feed"}, "needs api_key"),
    ({"mode": "sometimes"}, "revocation_check must be"), ({"source": "ask_a_friend"}, "revocation_source"),
    ({"feed_fallback": "online"}, "feed_fallback"), ({"api_key": " "}, "api_key")])
def test_invalid_options_are_refused(clock: FakeClock, options: dict[str, Any], message: str) -> None:
    options.setdefault("api_key", None)
    with pytest.raises(ValueError, match=message):
        RevocationChecker(issuer="https://issuer.example", clock=clock, **options)


@pytest.mark.parametrize(("issuer_url", "expected"), [
    ("https://grantex.dev", "https://api.grantex.dev"),
    ("https://grantex.dev/", "https://api.grantex.dev"),
    ("https://auth.example.com", "https://auth.example.com"),
])
def test_api_base_url_is_derived_from_the_issuer(clock: FakeClock, issuer_url: str, expected: str) -> None:
    checker = RevocationChecker(issuer=issuer_url, api_key=API_KEY, clock=clock)
    assert checker.api_base_url == expected


def test_unrequired_check_makes_no_call(api: FakeGrantexAPI, clock: FakeClock, issuer: LocalIssuer,
                                        guard: Guard) -> None:
    api.answer = "revoked"
    checker = make_checker(api, clock)
    args = mint(issuer, guard, scopes=("calendar:read",))
    checker.check(**args, required=checker.needs_check(("calendar:read",)))
    assert api.calls["status"] == 0


# -- revocations learnt another way --------------------------------------------------------

def test_local_revocation_is_honoured_with_checks_off(clock: FakeClock, issuer: LocalIssuer,
                                                      guard: Guard) -> None:
    checker = RevocationChecker(issuer=issuer.issuer, api_key=None, clock=clock)
    args = mint(issuer, guard)
    checker.check(**args, required=False)
    checker.revoke_locally(jti=args["token_id"])
    with pytest.raises(TokenRevoked):
        checker.check(**args, required=False)


def test_local_grant_revocation_cascades_to_child_tokens(clock: FakeClock, issuer: LocalIssuer,
                                                         guard: Guard) -> None:
    checker = RevocationChecker(issuer=issuer.issuer, api_key=None, clock=clock)
    parent = issuer.mint(["payments:initiate"], audience=API)
    child = facts(guard, issuer.mint(["payments:initiate"], audience=API, delegated_from=parent))
    checker.revoke_locally(grant_id=guard.verify(parent).grant_id)
    with pytest.raises(TokenRevoked):
        checker.check(**child, required=False)


def test_local_revocation_expires_with_the_token(clock: FakeClock, issuer: LocalIssuer, guard: Guard) -> None:
    checker = RevocationChecker(issuer=issuer.issuer, api_key=None, clock=clock)
    args = mint(issuer, guard)
    checker.revoke_locally(jti=args["token_id"], expires_at=clock() + 10)
    clock.advance(10)
    checker.check(**args, required=False)


def test_local_revocation_needs_an_identifier(clock: FakeClock) -> None:
    checker = RevocationChecker(issuer="https://issuer.example", api_key=None, clock=clock)
    with pytest.raises(ValueError, match="jti or a grant_id"):
        checker.revoke_locally()


async def test_async_client_is_closed_by_aclose(api: FakeGrantexAPI, clock: FakeClock, issuer: LocalIssuer,
                                                guard: Guard) -> None:
    checker = make_checker(api, clock)
    await checker.check_async(**mint(issuer, guard))
    assert checker.service is not None
    client = await checker.service._async_client()
    await checker.aclose()
    assert client.is_closed
