"""What revocation checks cost a verification, and how many online calls many workers make.

    python benchmarks/revocation.py [--rounds 7] [--n 20000]

Prints a markdown table of median microseconds per Guard.verify (a repeated,
cached token, the common case) with revocation off, with the online check
(status source, warm answer cache) and with the revocation feed (SSE, fresh);
and, for 10,000 verifications of 100 distinct tokens within one TTL by two
Guards (workers) sharing a real redis-server, the number of online calls the
fake Grantex API received (target: 100). Everything runs on 127.0.0.1.
The machine is shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Replace the script's own directory (sys.path[0]): a module there could shadow the stdlib.
sys.path[0:1] = [str(ROOT / "src"), str(ROOT)]

from tests.fake_grantex_api import API_KEY, FakeGrantexAPI, wait_until
from tests.redis_server import RedisServer

from grantex_guard import Guard
from grantex_guard.revocation import RedisRevocationStore
from grantex_guard.testing import LocalIssuer

AUDIENCE = "https://api.example.com"
SCOPES = ["calendar:read", "payments:initiate:max_500"]


def per_call_us(actions: list[Callable[[], None]], n: int, rounds: int) -> list[float]:
    """Median µs per call of each action; the actions take turns in every round to share the noise."""
    samples: list[list[float]] = [[] for _ in actions]
    for _ in range(rounds):
        for index, action in enumerate(actions):
            began = time.perf_counter()
            for _ in range(n):
                action()
            samples[index].append((time.perf_counter() - began) / n * 1e6)
    return [statistics.median(values) for values in samples]


def verifying(guard: Guard, token: str) -> Callable[[], None]:
    guard.verify(token)  # warm the token cache and the revocation answer

    def verify() -> None:
        guard.verify(token)

    return verify


def calls_for_two_workers(api: FakeGrantexAPI, issuer: LocalIssuer, jwks_url: str, redis_url: str) -> int:
    """Online calls made by two Guards (workers) sharing Redis for 10,000 verifications of 100 tokens."""
    api.calls.clear()
    prefix = f"bench:{time.time()}:"
    workers = [Guard(issuer=issuer.issuer, jwks_uri=jwks_url, audience=AUDIENCE, api_key=API_KEY,
                     api_base_url=api.url, revocation_check="always", http_timeout=2,
                     revocation_store=RedisRevocationStore(redis_url, prefix=prefix))
               for _ in range(2)]
    tokens = [issuer.mint(SCOPES, audience=AUDIENCE) for _ in range(100)]

    def run(worker: Guard, offset: int) -> None:
        for index in range(2_500):
            worker.verify(tokens[(index + offset) % 100])

    threads = [threading.Thread(target=run, args=(worker, offset)) for worker in workers
               for offset in (0, 37)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return api.calls["status"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=20_000)
    options = parser.parse_args()
    issuer = LocalIssuer("RS256")
    token = issuer.mint(SCOPES, audience=AUDIENCE)
    with FakeGrantexAPI() as api, RedisServer() as redis_server, issuer.serve() as jwks_url:
        api.feed.heartbeat = 1.0  # as the service does
        common = {"issuer": issuer.issuer, "jwks_uri": jwks_url, "audience": AUDIENCE}
        off = Guard(**common)
        online = Guard(**common, api_key=API_KEY, api_base_url=api.url, revocation_check="always")
        feed = Guard(**common, api_key=API_KEY, api_base_url=api.url, revocation_source="feed",
                     revocation_check="always")
        feed.warm_up()
        state = feed.revocation.feed.state  # type: ignore[union-attr]
        wait_until(lambda: state.fresh(time.time(), 5))
        cases = [("revocation off", off), ("online check, warm cache", online), ("revocation feed", feed)]
        actions = [verifying(guard, token) for _, guard in cases]
        per_call_us(actions, options.n // 4, 1)  # warm-up
        timings = per_call_us(actions, options.n, options.rounds)
        rows = [(name, micros) for (name, _), micros in zip(cases, timings, strict=True)]
        feed.close()
        calls = calls_for_two_workers(api, issuer, jwks_url, redis_server.url)
    baseline = rows[0][1]
    print("| Guard.verify, cached token | µs | ratio to off |")
    print("|---|---:|---:|")
    for name, micros in rows:
        print(f"| {name} | {micros:.2f} | {micros / baseline:.2f}x |")
    print()
    print("| 2 workers sharing Redis, 100 tokens, 10,000 verifications in one TTL | online calls |")
    print("|---|---:|")
    print(f"| status endpoint | {calls} |")


if __name__ == "__main__":
    main()
