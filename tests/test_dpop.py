"""Proof of possession (RFC 9449) through Guard.verify / verify_async, with real keys."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from grantex_guard import GrantexUnavailable, Guard, ProofInvalid, ProofRequired, dpop
from grantex_guard.dpop import MemoryReplayStore, RedisReplayStore, normalize_url
from grantex_guard.testing import DPoPAgent, LocalIssuer

from .conftest import API, FakeClock
from .redis_server import RedisServer

URL = "https://api.example.com/calendar"


@pytest.fixture
def agent(clock: FakeClock) -> DPoPAgent:
    return DPoPAgent(clock=clock)


@pytest.fixture
def bound_token(issuer: LocalIssuer, agent: DPoPAgent) -> str:
    return issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)


def verify(guard: Guard, token: str, proof: str | None, method: str = "GET", url: str = URL) -> Any:
    return guard.verify(token, scopes=["calendar:read"], dpop=proof, method=method, url=url)


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_a_bound_token_with_a_valid_proof_is_accepted(issuer: LocalIssuer, guard: Guard,
                                                      clock: FakeClock, alg: str) -> None:
    agent = DPoPAgent(alg, clock=clock)  # type: ignore[arg-type]
    token = issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)

    grant = verify(guard, token, agent.proof("GET", URL, token))

    assert grant.key_thumbprint == agent.thumbprint


async def test_verify_async_checks_the_proof_too(guard: Guard, agent: DPoPAgent,
                                                 bound_token: str) -> None:
    proof = agent.proof("POST", URL, bound_token)
    grant = await guard.verify_async(bound_token, dpop=proof, method="POST", url=URL)
    assert grant.key_thumbprint == agent.thumbprint
    with pytest.raises(ProofInvalid, match="already used"):
        await guard.verify_async(bound_token, dpop=proof, method="POST", url=URL)


def test_a_bound_token_without_a_proof_needs_one(guard: Guard, bound_token: str) -> None:
    with pytest.raises(ProofRequired) as caught:
        verify(guard, bound_token, None)
    error = caught.value
    assert (error.status, error.code) == (401, "DPOP_REQUIRED")
    assert (error.www_authenticate or "").startswith('DPoP algs="ES256 RS256", error="invalid_dpop_proof"')


@pytest.mark.parametrize(
    "request_url",
    ["HTTPS://API.EXAMPLE.COM/calendar", "https://api.example.com:443/calendar",
     "https://api.example.com/calendar?page=2", "https://api.example.com/calendar#top"],
)
def test_the_request_url_is_compared_normalised(guard: Guard, agent: DPoPAgent, bound_token: str,
                                                request_url: str) -> None:
    assert verify(guard, bound_token, agent.proof("GET", URL, bound_token), url=request_url)


def _with(**claims: Any) -> Callable[[DPoPAgent, str], str]:
    return lambda agent, token: agent.proof("GET", URL, token, claims=claims)


HOSTILE_PROOFS: dict[str, Callable[[DPoPAgent, str], str]] = {
    "wrong method": lambda agent, token: agent.proof("POST", URL, token),
    "wrong path": lambda agent, token: agent.proof("GET", "https://api.example.com/payments", token),
    "another host": lambda agent, token: agent.proof("GET", "https://evil.example/calendar", token),
    "http instead of https": lambda agent, token: agent.proof("GET", "http://api.example.com/calendar",
                                                              token),
    "htu with a query": lambda agent, token: agent.proof("GET", URL + "?a=1", token),
    "stale iat": _with(iat=1_800_000_000 - 400),
    "iat far in the future": _with(iat=1_800_000_000 + 3600),
    "iat a string": _with(iat="1800000000"),
    "missing ath": _with(ath=None),
    "ath of another token": lambda agent, token: agent.proof("GET", URL, token + "x"),
    "missing jti": _with(jti=None),
    "missing htm": _with(htm=None),
    "signed by another agent": lambda agent, token: DPoPAgent(clock=agent.clock).proof("GET", URL, token),
    "typ JWT": lambda agent, token: agent.proof("GET", URL, token, header={"typ": "JWT"}),
    "alg none": lambda agent, token: agent.proof("GET", URL, token, header={"alg": "none"}),
    "alg HS256": lambda agent, token: agent.proof("GET", URL, token, header={"alg": "HS256"}),
    "no jwk": lambda agent, token: agent.proof("GET", URL, token, header={"jwk": None}),
    "private d in the jwk": lambda agent, token: agent.proof(
        "GET", URL, token, header={"jwk": {**agent.key._public_members(), "d": "AAAA"}}),
    "jwk of another key type": lambda agent, token: agent.proof(
        "GET", URL, token, header={"alg": "RS256"}),
    "not a JWT": lambda agent, token: "not-a-proof",
    "the access token itself": lambda agent, token: token,
}


@pytest.mark.parametrize("make_proof", HOSTILE_PROOFS.values(), ids=HOSTILE_PROOFS.keys())
def test_hostile_proofs_are_refused(guard: Guard, agent: DPoPAgent, bound_token: str,
                                    make_proof: Callable[[DPoPAgent, str], str]) -> None:
    with pytest.raises(ProofInvalid) as caught:
        verify(guard, bound_token, make_proof(agent, bound_token))
    assert caught.value.status == 401
    assert bound_token not in caught.value.message


def test_a_proof_cannot_be_replayed(guard: Guard, agent: DPoPAgent, bound_token: str) -> None:
    proof = agent.proof("GET", URL, bound_token)
    verify(guard, bound_token, proof)
    with pytest.raises(ProofInvalid, match="already used"):
        verify(guard, bound_token, proof)


def test_a_replayed_proof_is_refused_by_another_worker_sharing_redis(
        issuer: LocalIssuer, agent: DPoPAgent, bound_token: str, redis_url: str) -> None:
    worker_a = issuer.guard(audience=API, replay_store=RedisReplayStore(redis_url))
    worker_b = issuer.guard(audience=API, replay_store=RedisReplayStore(redis_url))
    proof = agent.proof("GET", URL, bound_token)

    verify(worker_a, bound_token, proof)

    with pytest.raises(ProofInvalid, match="already used"):
        verify(worker_b, bound_token, proof)


async def test_the_async_path_shares_redis_too(issuer: LocalIssuer, agent: DPoPAgent,
                                               bound_token: str, redis_url: str) -> None:
    store = RedisReplayStore(redis_url)
    worker_a = issuer.guard(audience=API, replay_store=store)
    worker_b = issuer.guard(audience=API, replay_store=RedisReplayStore(redis_url))
    proof = agent.proof("GET", URL, bound_token)
    await worker_a.verify_async(bound_token, dpop=proof, method="GET", url=URL)
    with pytest.raises(ProofInvalid):
        worker_b.verify(bound_token, dpop=proof, method="GET", url=URL)
    await store.aclose()


def test_the_redis_store_keeps_no_clients_for_event_loops_that_have_closed(
        redis_url: str) -> None:
    """Each `asyncio.run` is a new loop: the store serves it and then lets the old loop go."""
    store = RedisReplayStore(redis_url)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    expires_at = time.time() + 60  # Redis's own clock: EXAT

    async def use(run: int, *, close: bool = False) -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        assert await store.first_use_async(f"proof-{run}", expires_at)
        assert not await store.first_use_async(f"proof-{run}", expires_at)
        if close:
            await store.aclose()

    for run in range(5):
        asyncio.run(use(run))
    gc.collect()
    # At most the last loop is still held (until another loop uses the store); with one
    # client kept per loop forever, all five would be.
    assert sum(loop() is not None for loop in loops) <= 1

    asyncio.run(use(5, close=True))  # still works, and aclose() lets go of the rest
    gc.collect()
    assert [loop() for loop in loops] == [None] * 6


def test_an_unreachable_replay_store_fails_closed(issuer: LocalIssuer, agent: DPoPAgent,
                                                  bound_token: str, redis_server: RedisServer,
                                                  redis_url: str) -> None:
    guard = issuer.guard(audience=API, replay_store=RedisReplayStore(redis_url))
    redis_server.stop()
    try:
        with pytest.raises(GrantexUnavailable) as caught:
            verify(guard, bound_token, agent.proof("GET", URL, bound_token))
        assert caught.value.status == 503
    finally:
        redis_server.start()
    assert verify(guard, bound_token, agent.proof("GET", URL, bound_token))


def test_an_unbound_token_stays_a_bearer_token(issuer: LocalIssuer, guard: Guard) -> None:
    assert verify(guard, issuer.mint(["calendar:read"], audience=API), None)


def test_policy_require_refuses_unbound_tokens(issuer: LocalIssuer) -> None:
    guard = issuer.guard(audience=API, proof_of_possession="require")
    with pytest.raises(ProofRequired):
        verify(guard, issuer.mint(["calendar:read"], audience=API), None)


def test_policy_warn_accepts_a_bound_token_without_proof_and_logs_once(
        issuer: LocalIssuer, bound_token: str, caplog: pytest.LogCaptureFixture) -> None:
    guard = issuer.guard(audience=API, proof_of_possession="warn")
    caplog.set_level(logging.WARNING, logger="grantex_guard")
    verify(guard, bound_token, None)
    verify(guard, bound_token, None)
    warnings = [record for record in caplog.records if "without a DPoP proof" in record.message]
    assert len(warnings) == 1
    assert bound_token not in caplog.text


def test_policy_warn_still_refuses_an_invalid_proof(issuer: LocalIssuer, agent: DPoPAgent,
                                                    bound_token: str) -> None:
    guard = issuer.guard(audience=API, proof_of_possession="warn")
    with pytest.raises(ProofInvalid):
        verify(guard, bound_token, agent.proof("DELETE", URL, bound_token))


def test_policy_off_ignores_the_binding(issuer: LocalIssuer, bound_token: str) -> None:
    assert verify(issuer.guard(audience=API, proof_of_possession="off"), bound_token, None)


def test_a_proof_without_method_and_url_is_a_programming_error(guard: Guard, agent: DPoPAgent,
                                                               bound_token: str) -> None:
    with pytest.raises(TypeError, match="method"):
        guard.verify(bound_token, dpop=agent.proof("GET", URL, bound_token))


def test_the_proof_window_follows_the_clock(issuer: LocalIssuer, agent: DPoPAgent,
                                            bound_token: str, clock: FakeClock) -> None:
    guard = issuer.guard(audience=API, dpop_max_age=60, dpop_leeway=0)
    proof = agent.proof("GET", URL, bound_token)
    clock.advance(61)
    with pytest.raises(ProofInvalid, match="older than 60 s"):
        verify(guard, bound_token, proof)


def test_memory_replay_store_is_bounded(clock: FakeClock) -> None:
    store = MemoryReplayStore(clock=clock, max_entries=100)
    for index in range(1000):
        assert store.first_use(f"jti-{index}", clock() + 300)
    assert len(store) == 100
    assert not store.first_use("jti-999", clock() + 300)


def test_memory_replay_store_forgets_expired_proofs(clock: FakeClock) -> None:
    store = MemoryReplayStore(clock=clock)
    assert store.first_use("jti", clock() + 10)
    clock.advance(11)
    assert store.first_use("jti", clock() + 10)


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("HTTPS://Example.COM:443/a/b?x=1#f", "https://example.com/a/b"),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/A", "http://example.com:8080/A"),
        ("https://[::1]:443/x", "https://[::1]/x"),
    ],
)
def test_normalize_url(url: str, normal: str) -> None:
    assert normalize_url(url) == normal


def test_an_agents_key_is_parsed_once_for_all_its_proofs(issuer: LocalIssuer, guard: Guard, agent: DPoPAgent,
                                                         bound_token: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real = dpop.key_from_jwk
    monkeypatch.setattr(dpop, "_PROOF_HEADERS", {})
    monkeypatch.setattr(dpop, "key_from_jwk", lambda *args, **kw: parsed.append("jwk") or real(*args, **kw))
    for _ in range(3):
        verify(guard, bound_token, agent.proof("GET", URL, bound_token))
    assert parsed == ["jwk"]


def test_the_proof_key_cache_is_bounded(issuer: LocalIssuer, guard: Guard, clock: FakeClock,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dpop, "_PROOF_HEADERS", {})
    monkeypatch.setattr(dpop, "_PROOF_HEADER_CACHE_SIZE", 3)
    sizes = []
    for _ in range(5):
        agent = DPoPAgent(clock=clock)
        token = issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)
        proof = agent.proof("GET", URL, token)
        verify(guard, token, proof)
        cached = dpop._PROOF_HEADERS.get(proof.split(".")[0].encode())
        assert cached is not None and cached.thumbprint == agent.thumbprint  # this agent's key
        sizes.append(len(dpop._PROOF_HEADERS))
    assert sizes == [1, 2, 3, 1, 2]  # a full cache is cleared before the next key goes in


def test_a_cached_key_still_must_match_the_tokens_binding(issuer: LocalIssuer, guard: Guard, clock: FakeClock,
                                                          agent: DPoPAgent, bound_token: str) -> None:
    verify(guard, bound_token, agent.proof("GET", URL, bound_token))  # the agent's key is now cached
    other = DPoPAgent(clock=clock)
    token_for_other = issuer.mint(["calendar:read"], audience=API, bound_to=other.thumbprint)
    with pytest.raises(ProofInvalid):
        verify(guard, token_for_other, agent.proof("GET", URL, token_for_other))


def test_an_agents_proof_header_is_checked_once_but_every_signature_is(
        guard: Guard, agent: DPoPAgent, bound_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = dpop._proof_key
    monkeypatch.setattr(dpop, "_PROOF_HEADERS", {})
    monkeypatch.setattr(dpop, "_proof_key", lambda header: checked.append("header") or real(header))
    verify(guard, bound_token, agent.proof("GET", URL, bound_token))
    good = agent.proof("GET", URL, bound_token)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    with pytest.raises(ProofInvalid):
        verify(guard, bound_token, forged)
    verify(guard, bound_token, good)
    assert checked == ["header"]
