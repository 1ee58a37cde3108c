"""Failing networks, through Guard.verify / verify_async and the Starlette middleware.

The JWKS host is real (tests/jwks_server.py on 127.0.0.1, or a socket nobody listens
on); time is a FakeClock so cooldowns and TTLs pass without sleeping. Each test asserts
what the API answers (200, 401, or 503 with Retry-After) and how many requests went out.
tests/test_jwks.py covers the key cache alone; these go through the whole pipeline.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from grantex_guard import GrantexUnavailable, Guard, GuardError
from grantex_guard.dpop import RedisReplayStore
from grantex_guard.testing import DPoPAgent, LocalIssuer, SigningKey

from .adapter_apps import starlette_app
from .conftest import FakeClock
from .jwks_server import JWKS_PATH, JWKSServer, closed_port_url, jwks
from .matrix import check_unavailable
from .redis_server import RedisServer

API = "https://api.example.com"
COOLDOWN = 30.0
TTL = 600.0
MAX_STALE = 3600.0


@pytest.fixture
def issuer(clock: FakeClock) -> LocalIssuer:
    return LocalIssuer("ES256", clock=clock)  # ES256: cheap keys, so every test gets its own


@pytest.fixture
def server(issuer: LocalIssuer) -> Iterator[JWKSServer]:
    with JWKSServer(issuer.jwks()) as running:
        yield running


def guard_for(issuer: LocalIssuer, url: str, **options: Any) -> Guard:
    options = {"jwks_refresh_cooldown": COOLDOWN, "jwks_ttl": TTL, "jwks_max_stale": MAX_STALE,
               "http_timeout": 1.0, **options}
    return Guard(issuer=issuer.issuer, jwks_uri=url, audience=API, clock=issuer.clock, **options)


def token(issuer: LocalIssuer, **options: Any) -> str:
    return issuer.mint(["calendar:read"], audience=API, **options)


def checked_status(failure: GuardError | None) -> int:
    """The status `failure` answers (200 for none); every 503 must carry a Retry-After."""
    if failure is None:
        return 200
    if failure.status == 503:
        assert isinstance(failure, GrantexUnavailable)
        retry_after = failure.headers("grantex")["Retry-After"]
        assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    return failure.status


def failure_of(guard: Guard, token_text: str) -> GuardError | None:
    try:
        guard.verify(token_text, scopes=["calendar:read"])
    except GuardError as error:
        return error
    return None


async def failure_of_async(guard: Guard, token_text: str) -> GuardError | None:
    try:
        await guard.verify_async(token_text, scopes=["calendar:read"])
    except GuardError as error:
        return error
    return None


def status_of(guard: Guard, token_text: str) -> int:
    return checked_status(failure_of(guard, token_text))


async def status_of_async(guard: Guard, token_text: str) -> int:
    return checked_status(await failure_of_async(guard, token_text))


@contextmanager
def jwks_on(url: str, body: dict[str, Any]) -> Iterator[JWKSServer]:
    """Serve `body` on the port of `url` (a host coming back up), one connection a request."""
    port = httpx.URL(url).port
    assert port is not None
    with JWKSServer(body, port=port, keep_alive=False) as host:
        yield host


# -- the host is down --------------------------------------------------------------------


def test_host_down_at_start_is_503_then_recovers_after_the_cooldown(issuer: LocalIssuer,
                                                                    clock: FakeClock) -> None:
    url = closed_port_url()
    guard = guard_for(issuer, url)

    assert status_of(guard, token(issuer)) == 503
    assert status_of(guard, token(issuer)) == 503
    assert guard.keys.fetch_count == 1  # the second request did not retry inside the cooldown

    with jwks_on(url, issuer.jwks()) as host:
        assert status_of(guard, token(issuer)) == 503  # still cooling down: no request yet
        assert host.paths == []
        clock.advance(COOLDOWN + 1)
        assert status_of(guard, token(issuer)) == 200
        assert status_of(guard, token(issuer)) == 200
        assert host.paths == [JWKS_PATH]
    assert guard.keys.fetch_count == 2


def test_host_down_at_start_through_the_middleware(issuer: LocalIssuer, clock: FakeClock) -> None:
    url = closed_port_url()
    guard = guard_for(issuer, url, http_timeout=0.5)
    with TestClient(starlette_app(guard)) as client:
        headers = {"Authorization": f"Bearer {token(issuer)}"}
        for _ in range(3):
            response = client.get("/calendar", headers=headers)
            check_unavailable(response.status_code, response.headers, response.json())
        assert guard.keys.fetch_count == 1
        with jwks_on(url, issuer.jwks()) as host:
            clock.advance(COOLDOWN + 1)
            assert client.get("/calendar", headers=headers).status_code == 200
            assert len(host.paths) == 1


def test_host_down_midway_serves_stale_keys_then_503(issuer: LocalIssuer, clock: FakeClock) -> None:
    url = closed_port_url()
    guard = guard_for(issuer, url)
    with jwks_on(url, issuer.jwks()):  # no kept-alive connection outlives the host
        assert status_of(guard, token(issuer)) == 200

    clock.advance(TTL + 1)  # keys expired: one refresh attempt, it fails, stale keys serve
    assert [status_of(guard, token(issuer)) for _ in range(5)] == [200] * 5
    assert guard.keys.fetch_count == 2
    clock.advance(COOLDOWN + 1)  # the next attempt after the cooldown, still failing
    assert status_of(guard, token(issuer)) == 200
    assert guard.keys.fetch_count == 3

    clock.advance(MAX_STALE)  # beyond ttl + max_stale: no longer trusted
    assert [status_of(guard, token(issuer)) for _ in range(3)] == [503] * 3
    assert guard.keys.fetch_count == 4


async def test_host_down_midway_on_the_async_path(issuer: LocalIssuer, clock: FakeClock) -> None:
    url = closed_port_url()
    guard = guard_for(issuer, url)
    with jwks_on(url, issuer.jwks()):
        assert await status_of_async(guard, token(issuer)) == 200
    clock.advance(TTL + 1)
    results = await asyncio.gather(*(status_of_async(guard, token(issuer)) for _ in range(50)))
    assert set(results) == {200}
    assert guard.keys.fetch_count == 2
    clock.advance(TTL + MAX_STALE)
    assert await status_of_async(guard, token(issuer)) == 503


# -- the host is slow --------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["delay", "drip"])
@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_slow_host_costs_one_timeout_then_fails_fast(issuer: LocalIssuer, server: JWKSServer,
                                                       fault: str, path: str) -> None:
    if fault == "delay":
        server.delay = 5.0  # answers after the deadline
    else:
        server.drip = 0.05  # answers in time, then sends one byte every 50 ms (slowloris)
    guard = guard_for(issuer, server.url, http_timeout=0.4)

    def run() -> int:
        if path == "sync":
            return status_of(guard, token(issuer))
        return asyncio.run(status_of_async(guard, token(issuer)))

    started = time.monotonic()
    assert run() == 503
    assert time.monotonic() - started < 2.5  # one deadline for the whole fetch
    assert run() == 503  # inside the cooldown: answered without a second request
    assert server.hits == 1


# -- the host answers nonsense -----------------------------------------------------------

def answer(body: Any = None, status: int = 200, **headers: str) -> Callable[[JWKSServer], None]:
    """Make the server answer `body` (unchanged when None) with `status` and extra headers."""
    def apply(server: JWKSServer) -> None:
        if body is not None:
            server.body = body(server) if callable(body) else body
        server.status = status
        server.headers.update({name.replace("_", "-"): value for name, value in headers.items()})
    return apply


MAX_KEYS = 128  # the JWKS cache's default max_keys
MAX_BYTES = 65536  # ... and max_bytes


def too_many_keys(server: JWKSServer) -> dict[str, Any]:
    """max_keys + 1 distinct keys, well under max_bytes, so the key count is what trips."""
    key = server.body["keys"][0]
    return jwks(*[{**key, "kid": f"key-{index}"} for index in range(MAX_KEYS + 1)])


# Each broken answer, and the reason the fetch failed that the 503's detail must give.
BROKEN_ANSWERS: dict[str, tuple[Callable[[JWKSServer], None], str]] = {
    "HTML error page": (answer(b"<html><body>502 Bad Gateway</body></html>",
                               Content_Type="text/html"), "Content-Type text/html, not JSON"),
    "HTML labelled JSON": (answer(b"<html>oops</html>"), "body is not a JSON object"),
    "garbage bytes": (answer(bytes(range(256)) * 4), "body is not a JSON object"),
    "empty body": (answer(b""), "body is not a JSON object"),
    "JSON null": (answer(b"null"), "body is not a JSON object"),
    "JSON array": (answer([{"kty": "EC"}]), "body is not a JSON object"),
    "keys not a list": (answer({"keys": {"kty": "EC"}}),
                        'malformed JWKS: "keys" is a dict, not a list'),
    "keys empty": (answer({"keys": []}), "malformed JWKS: no usable RS256/ES256 key among 0 entries"),
    "only unusable keys": (answer({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
                           "malformed JWKS: no usable RS256/ES256 key among 1 entries"),
    "duplicate keys member": (answer(b'{"keys": [], "keys": []}'),
                              "body is not a JSON object (duplicate member name)"),
    "huge body (1 MB)": (answer({"keys": [], "pad": "x" * (1 << 20)}),
                         f"body larger than {MAX_BYTES} bytes"),
    "more keys than allowed": (answer(too_many_keys),
                               f"malformed JWKS: {MAX_KEYS + 1} keys, more than max_keys={MAX_KEYS}"),
    "gzip bomb": (answer(gzip.compress(b" " * (8 << 20)), Content_Encoding="gzip"),
                  "Content-Encoding gzip refused"),
    "status 500": (answer(status=500), "status 500"),
    "status 404": (answer(status=404), "status 404"),
    "status 429": (answer(status=429), "status 429"),
    "status 204": (answer(status=204), "status 204"),
}


@pytest.mark.parametrize("name", BROKEN_ANSWERS)
def test_a_broken_answer_is_a_503_and_one_request(issuer: LocalIssuer, clock: FakeClock,
                                                  server: JWKSServer, name: str) -> None:
    breakage, reason = BROKEN_ANSWERS[name]
    breakage(server)
    if name == "more keys than allowed":
        assert len(server.body_bytes()) < MAX_BYTES  # the count trips, not the size
    guard = guard_for(issuer, server.url)
    failures = [failure_of(guard, token(issuer)) for _ in range(3)]
    assert [checked_status(failure) for failure in failures] == [503] * 3
    assert server.hits == 1
    clock.advance(COOLDOWN + 1)
    failures.append(failure_of(guard, token(issuer)))
    assert checked_status(failures[-1]) == 503
    assert server.hits == 2
    for failure in failures:  # the detail says why, inside the cooldown and after it
        assert failure is not None and f"last fetch failed: {reason}" in failure.detail, failure


def test_a_redirect_is_not_followed(issuer: LocalIssuer, server: JWKSServer) -> None:
    attacker_key = SigningKey("ES256")
    with JWKSServer(jwks(attacker_key.public_jwk)) as attacker:
        server.redirect = attacker.url
        guard = guard_for(issuer, server.url)
        forged = issuer.mint(["calendar:read"], audience=API, signing_key=attacker_key)
        assert status_of(guard, forged) == 503
        assert (server.hits, attacker.hits) == (1, 0)


def test_a_broken_answer_after_good_keys_keeps_the_good_keys(issuer: LocalIssuer,
                                                            clock: FakeClock,
                                                            server: JWKSServer) -> None:
    guard = guard_for(issuer, server.url)
    assert status_of(guard, token(issuer)) == 200
    server.body = b"<html>maintenance</html>"
    clock.advance(TTL + 1)
    assert status_of(guard, token(issuer)) == 200  # stale-if-error
    assert server.hits == 2


def test_a_flapping_host_is_fetched_once_per_expiry_or_cooldown(issuer: LocalIssuer,
                                                                clock: FakeClock,
                                                                server: JWKSServer) -> None:
    guard = guard_for(issuer, server.url)
    observed = []
    for status in [500, 200, 500, 500, 200, 500, 200]:
        server.status = status
        observed.append([status_of(guard, token(issuer)) for _ in range(3)])
        clock.advance(TTL + 1 if status == 200 else COOLDOWN + 1)
    assert observed == [[503] * 3] + [[200] * 3] * 6  # never again 503 once keys were seen
    assert server.hits == 7


# -- rotation and floods ------------------------------------------------------------------


async def test_rotation_without_overlap_mid_traffic(issuer: LocalIssuer, clock: FakeClock,
                                                    server: JWKSServer) -> None:
    guard = guard_for(issuer, server.url)
    old_tokens = [token(issuer) for _ in range(20)]
    assert set(await asyncio.gather(*(status_of_async(guard, t) for t in old_tokens))) == {200}

    issuer.rotate_key()
    server.body = issuer.jwks()  # the old key is gone at once
    new_tokens = [token(issuer) for _ in range(100)]
    # Inside the cooldown of the first fetch, an unknown kid cannot trigger a refetch yet.
    assert await status_of_async(guard, new_tokens[0]) == 401
    clock.advance(COOLDOWN + 1)
    during = await asyncio.gather(*(status_of_async(guard, t) for t in new_tokens))
    assert during == [200] * 100
    after = await asyncio.gather(*(status_of_async(guard, t) for t in old_tokens))
    assert after == [401] * 20  # tokens cached under the removed key are evicted with it
    assert server.hits == 2  # one refetch for 100 concurrent requests with the new kid


def test_a_kid_flood_is_bounded_by_the_cooldown(issuer: LocalIssuer, clock: FakeClock,
                                                server: JWKSServer) -> None:
    guard = guard_for(issuer, server.url)
    assert status_of(guard, token(issuer)) == 200
    for index in range(2000):
        assert status_of(guard, token(issuer, kid=f"flood-{index}")) == 401
        clock.advance(0.05)  # 2000 requests over 100 s
    assert server.hits == 4  # the first fetch, then one per 30 s cooldown: at 30, 60 and 90 s


def test_a_kid_flood_through_the_middleware_is_bounded_too(issuer: LocalIssuer, clock: FakeClock,
                                                           server: JWKSServer) -> None:
    guard = guard_for(issuer, server.url)
    with TestClient(starlette_app(guard)) as client:
        statuses = {client.get("/calendar", headers={
            "Authorization": f"Bearer {token(issuer, kid=f'flood-{index}')}"}).status_code
            for index in range(200)}
    assert statuses == {401}
    assert server.hits == 1  # the first request fetched; the cooldown covers the rest


async def test_a_cold_start_under_concurrency_fetches_once(issuer: LocalIssuer,
                                                           server: JWKSServer) -> None:
    server.delay = 0.3  # every request arrives while the fetch is in flight
    guard = guard_for(issuer, server.url)
    tokens = [token(issuer) for _ in range(300)]
    results = await asyncio.gather(*(status_of_async(guard, t) for t in tokens))
    assert set(results) == {200}
    assert server.hits == 1


def test_a_cold_start_under_thread_concurrency_fetches_once(issuer: LocalIssuer,
                                                            server: JWKSServer) -> None:
    server.delay = 0.3
    guard = guard_for(issuer, server.url)
    tokens = [token(issuer) for _ in range(32)]
    results: list[int] = []
    threads = [threading.Thread(target=lambda t=t: results.append(status_of(guard, t)))
               for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 32
    assert server.hits == 1


# -- the DPoP replay store goes away -------------------------------------------------------


def test_redis_going_away_fails_closed_then_recovers(issuer: LocalIssuer, clock: FakeClock,
                                                     redis_server: RedisServer,
                                                     redis_url: str) -> None:
    agent = DPoPAgent(clock=clock)
    guard = issuer.guard(audience=API, replay_store=RedisReplayStore(redis_url))
    url = "http://testserver/calendar"
    bound = token(issuer, bound_to=agent.thumbprint)
    with TestClient(starlette_app(guard)) as client:
        def call() -> Any:
            return client.get("/calendar", headers=agent.headers(bound, "GET", url))

        assert call().status_code == 200
        redis_server.stop()
        try:
            for _ in range(2):
                response = call()
                check_unavailable(response.status_code, response.headers, response.json())
            with pytest.raises(GrantexUnavailable):  # the sync path fails closed too
                guard.verify(bound, dpop=agent.proof("GET", url, bound), method="GET", url=url)
        finally:
            redis_server.start()
        assert call().status_code == 200
        assert guard.verify(bound, dpop=agent.proof("GET", url, bound), method="GET", url=url)
