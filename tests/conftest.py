from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from grantex_guard import Guard
from grantex_guard.testing import LocalIssuer

from .redis_server import RedisServer

API = "https://api.example.com"
NOW = 1_800_000_000.0

# The suite is a specification: the same examples every run, so CI never fails by luck.
# `HYPOTHESIS_PROFILE=explore python -m pytest tests/test_properties.py` searches anew
# (and fuzz/ runs open-ended searches).
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


class FakeClock:
    """A clock the test moves by hand: no test sleeps to make time pass."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["RS256", "ES256"])
def alg(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def issuer(clock: FakeClock) -> LocalIssuer:
    return LocalIssuer("RS256", clock=clock)


@pytest.fixture
def guard(issuer: LocalIssuer) -> Guard:
    return issuer.guard(audience=API)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A running, empty Redis (restarted if a test stopped it)."""
    if redis_server.process is None:
        redis_server.start()
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url
