"""What revocation checks cost a verification, and how many online calls many workers make.

    python benchmarks/revocation.py [--rounds 7] [--n 20000]

Prints a markdown table of median microseconds per verification (a repeated,
cached token, the common case) for:
  - Guard.verify alone (revocation off)
  - Guard.verify + RevocationChecker.check, online source, warm result cache (memory store)
  - Guard.verify + RevocationChecker.check, fed by the revocation feed (SSE, fresh)
and, for 10,000 checks of 100 distinct tokens within one TTL by two checkers
sharing a real redis-server (two threads each), the number of online calls
the fake Grantex API received (target: 100). Everything runs on 127.0.0.1.
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

from tests.fake_grantex_api import API_KEY, FakeGrantexAPI, wait_until  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

from grantex_guard import Guard  # noqa: E402
from grantex_guard.revocation import RedisRevocationStore, RevocationChecker  # noqa: E402
from grantex_guard.testing import LocalIssuer  # noqa: E402

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


def verifying_with(guard: Guard, token: str, checker: RevocationChecker | None) -> Callable[[], None]:
    first = guard.verify(token)
    # The integrated Guard passes the int `exp` it already holds, not a datetime conversion.
    expires_at = first.expires_at.timestamp()
    if checker is None:
        return lambda: guard.verify(token) and None

    def verify_and_check() -> None:
        grant = guard.verify(token)
        checker.check(token=token, token_id=grant.token_id, grant_id=grant.grant_id,
                      parent_grant_id=grant.parent_grant_id, expires_at=expires_at,
                      required=checker.needs_check(grant.scopes))

    verify_and_check()  # warm the result cache
    return verify_and_check


def calls_for_two_workers(api: FakeGrantexAPI, guard: Guard, issuer: LocalIssuer, redis_url: str) -> int:
    api.calls.clear()
    workers = [RevocationChecker(issuer=issuer.issuer, api_key=API_KEY, api_base_url=api.url,
                                 store=RedisRevocationStore(redis_url, prefix=f"bench:{time.time()}:"),
                                 mode="always", timeout=2) for _ in range(2)]
    for checker in workers[1:]:
        checker.store = workers[0].store
    tokens = []
    for _ in range(100):
        token = issuer.mint(SCOPES, audience=AUDIENCE)
        grant = guard.verify(token)
        tokens.append({"token": token, "token_id": grant.token_id, "grant_id": grant.grant_id,
                       "parent_grant_id": None, "expires_at": grant.expires_at.timestamp()})

    def run(checker: RevocationChecker, offset: int) -> None:
        for index in range(2_500):
            checker.check(**tokens[(index + offset) % 100])

    threads = [threading.Thread(target=run, args=(checker, offset)) for checker in workers
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
    guard = issuer.guard(audience=AUDIENCE)
    token = issuer.mint(SCOPES, audience=AUDIENCE)
    with FakeGrantexAPI() as api, RedisServer() as redis_server:
        api.feed.heartbeat = 1.0  # as the service does
        online = RevocationChecker(issuer=issuer.issuer, api_key=API_KEY, api_base_url=api.url, mode="always")
        feed = RevocationChecker(issuer=issuer.issuer, api_key=API_KEY, api_base_url=api.url,
                                 source="feed", mode="always")
        feed.start()
        assert feed.feed is not None
        state = feed.feed.state
        wait_until(lambda: state.fresh(time.time(), 5))
        cases: list[tuple[str, RevocationChecker | None]] = [
            ("revocation off", None), ("online check, warm cache", online), ("revocation feed", feed)]
        actions = [verifying_with(guard, token, checker) for _, checker in cases]
        per_call_us(actions, options.n // 4, 1)  # warm-up
        timings = per_call_us(actions, options.n, options.rounds)
        rows = [(name, micros) for (name, _), micros in zip(cases, timings, strict=True)]
        feed.close()
        calls = calls_for_two_workers(api, guard, issuer, redis_server.url)
    baseline = rows[0][1]
    print("| verification (cached token) | µs | ratio to off |")
    print("|---|---:|---:|")
    for name, micros in rows:
        print(f"| {name} | {micros:.2f} | {micros / baseline:.2f}x |")
    print()
    print("| 2 checkers sharing Redis, 100 tokens, 10,000 checks in one TTL | online calls |")
    print("|---|---:|")
    print(f"| status endpoint | {calls} |")


if __name__ == "__main__":
    main()
