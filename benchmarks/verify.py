"""Verification speed, measured against baselines in the same run.

    python benchmarks/verify.py [--rounds 7] [--n 2000]

Prints median microseconds per verification for:
  - the floor: one RSA-2048 signature check with `cryptography`
  - PyJWT `jwt.decode` with a known key, and PyJWT `PyJWKClient` + decode
  - Guard.verify on a new token each time (keys cached), on a repeated token, and on a
    new DPoP-bound token with its proof
  - the official `grantex` SDK's `verify_grant_token` (if installed: pip install grantex)
Rounds are interleaved (each round runs every verifier once) and each ratio is the
median of the ratios measured within a round, so a noisy moment hits both sides.
It then prints, for 100 concurrent cold verifications (threads) per verifier, how many
JWKS fetches each one made. The JWKS is served over HTTP on 127.0.0.1.
The machine is shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Replace the script's own directory (benchmarks/http.py would shadow the stdlib's http)
# with src and the repository root (for benchmarks._support).
_ROOT = Path(__file__).resolve().parents[1]
sys.path[0:1] = [str(_ROOT / "src"), str(_ROOT)]

import argparse
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jwt
from benchmarks._support import JwksServer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from grantex_guard import Guard
from grantex_guard.testing import DPoPAgent, LocalIssuer

AUDIENCE = "https://api.example.com"
SCOPES = ["calendar:read", "payments:initiate:max_500"]
FLOOR = "RSA-2048 signature check (cryptography): the floor"
PYJWT = "PyJWT jwt.decode, key known"
NEW = "Guard.verify, new token each time"
REPEATED = "Guard.verify, repeated token (cache hit)"
BOUND = "Guard.verify, new DPoP-bound token + proof"
OFFICIAL = "official grantex SDK verify_grant_token"


@dataclass
class Workload:
    """`run(count)` makes count verifications; `prepare()` (untimed) runs before each round."""

    name: str
    run: Callable[[int], None]
    n: int
    prepare: Callable[[], None] = lambda: None


def sample_us(workload: Workload) -> float:
    """Mean microseconds per call over one round of `workload.n` calls."""
    workload.prepare()
    start = time.perf_counter()
    workload.run(workload.n)
    return (time.perf_counter() - start) / workload.n * 1e6


def measure(workloads: Sequence[Workload], rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds: each round samples every workload once, so a noisy moment
    on the shared machine weighs on all of them alike and per-round ratios stay fair."""
    for workload in workloads:  # warm-up
        workload.prepare()
        workload.run(max(1, workload.n // 10))
    samples: dict[str, list[float]] = {workload.name: [] for workload in workloads}
    for _ in range(rounds):
        for workload in workloads:
            samples[workload.name].append(sample_us(workload))
    return samples


def median_ratio(samples: dict[str, list[float]], numerator: str, denominator: str) -> float:
    return statistics.median(a / b for a, b in zip(samples[numerator], samples[denominator], strict=True))


def cycle(items: Sequence[str]) -> Callable[[], str]:
    state = {"i": 0}

    def next_item() -> str:
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]

    return next_item


def floor_workload(issuer: LocalIssuer, n: int) -> Workload:
    key = issuer.key.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    public = key.public_key()
    message = b"x" * 600
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def run(count: int) -> None:
        for _ in range(count):
            public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())

    return Workload(FLOOR, run, n)


def pyjwt_workload(issuer: LocalIssuer, tokens: Sequence[str], n: int) -> Workload:
    public = issuer.key.private_key.public_key()
    next_token = cycle(tokens)

    def run(count: int) -> None:
        for _ in range(count):
            jwt.decode(next_token(), public, algorithms=["RS256"], audience=AUDIENCE,
                       issuer=issuer.issuer)

    return Workload(PYJWT, run, n)


def pyjwk_client_workload(issuer: LocalIssuer, url: str, tokens: Sequence[str], n: int) -> Workload:
    client = jwt.PyJWKClient(url, cache_keys=True)
    next_token = cycle(tokens)

    def run(count: int) -> None:
        for _ in range(count):
            token = next_token()
            key = client.get_signing_key_from_jwt(token)
            jwt.decode(token, key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=issuer.issuer)

    return Workload("PyJWT PyJWKClient + jwt.decode", run, n)


def guard_workload(name: str, guard: Guard, tokens: Sequence[str], n: int) -> Workload:
    next_token = cycle(tokens)
    required = ["calendar:read"]

    def run(count: int) -> None:
        for _ in range(count):
            guard.verify(next_token(), scopes=required)

    return Workload(name, run, n)


def dpop_workload(issuer: LocalIssuer, guard: Guard, n: int) -> Workload:
    """New bound tokens, each with a fresh proof: two signature checks per verification."""
    agent = DPoPAgent()
    url = "https://api.example.com/calendar"
    tokens = [issuer.mint(SCOPES, audience=AUDIENCE, bound_to=agent.thumbprint) for _ in range(n)]
    requests: list[tuple[str, str]] = []
    position = {"i": 0}

    def prepare() -> None:  # a proof is single-use: sign new ones for each round
        requests[:] = [(token, agent.proof("GET", url, token)) for token in tokens]

    def run(count: int) -> None:
        for _ in range(count):
            position["i"] = (position["i"] + 1) % len(requests)
            token, proof = requests[position["i"]]
            guard.verify(token, scopes=["calendar:read"], dpop=proof, method="GET", url=url)

    return Workload(BOUND, run, n, prepare)


def official_sdk() -> Any | None:
    try:
        import grantex
    except ImportError:
        return None
    return grantex


def official_workload(sdk: Any, issuer: LocalIssuer, url: str, tokens: Sequence[str], n: int) -> Workload:
    options = sdk.VerifyGrantTokenOptions(jwks_uri=url, audience=AUDIENCE, issuer=issuer.issuer,
                                          required_scopes=["calendar:read"])
    next_token = cycle(tokens)

    def run(count: int) -> None:
        for _ in range(count):
            sdk.verify_grant_token(next_token(), options)

    return Workload(OFFICIAL, run, n)


def cold_burst_fetches(verify: Callable[[str], object], server: JwksServer, token: str,
                       workers: int = 100) -> int:
    """Fetches made when `workers` threads verify at once on a cold cache."""
    server.hits = 0
    barrier = threading.Barrier(workers)

    def one(_: int) -> None:
        barrier.wait()
        verify(token)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(workers)))
    return server.hits


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=2000, help="verifications per round")
    args = parser.parse_args(argv)

    issuer = LocalIssuer("RS256")
    tokens = [issuer.mint(SCOPES, audience=AUDIENCE) for _ in range(args.n)]
    sdk = official_sdk()
    with JwksServer(issuer.jwks()) as server:
        url = server.url
        guard = Guard(issuer=issuer.issuer, jwks_uri=url, audience=AUDIENCE,
                      token_cache_size=args.n // 4)
        workloads = [
            floor_workload(issuer, args.n),
            pyjwt_workload(issuer, tokens, args.n),
            pyjwk_client_workload(issuer, url, tokens, args.n),
            guard_workload(NEW, guard, tokens, args.n),
            guard_workload(REPEATED, guard, tokens[:1], args.n),
            dpop_workload(issuer, guard, args.n),
        ]
        if sdk is not None:  # the official SDK reads the same standard tokens
            workloads.append(official_workload(sdk, issuer, url, tokens, args.n // 4))
        samples = measure(workloads, args.rounds)

    python = sys.version.split()[0]
    print(f"\nmedians of {args.rounds} interleaved rounds x {args.n} verifications, Python {python}; "
          "ratios are medians of per-round ratios\n")
    print("| verifier | µs / verification | x floor |")
    print("|---|---:|---:|")
    for workload in workloads:
        micros = statistics.median(samples[workload.name])
        print(f"| {workload.name} | {micros:.1f} | {median_ratio(samples, workload.name, FLOOR):.2f} |")
    print()
    print(f"Guard new token vs jwt.decode: {median_ratio(samples, PYJWT, NEW):.2f}x faster")
    if sdk is not None:
        print(f"Guard new token vs official SDK: {median_ratio(samples, OFFICIAL, NEW):.2f}x faster")
    print(f"Guard new token: {median_ratio(samples, NEW, FLOOR):.2f}x the floor")
    print(f"Guard repeated token: {median_ratio(samples, REPEATED, FLOOR):.2f}x the floor")
    print(f"Guard new bound token + DPoP proof vs new bearer token: {median_ratio(samples, BOUND, NEW):.2f}x")

    print("\nJWKS fetches for 100 concurrent cold verifications (threads, JWKS answers in 50 ms):\n")
    print("| verifier | fetches |")
    print("|---|---:|")
    token = tokens[0]
    with JwksServer(issuer.jwks(), delay=0.05) as slow:
        url = slow.url
        cold_guard = Guard(issuer=issuer.issuer, jwks_uri=url, audience=AUDIENCE)
        print(f"| grantex-guard | {cold_burst_fetches(cold_guard.verify, slow, token)} |")
        client = jwt.PyJWKClient(url, cache_keys=True)

        def pyjwk(t: str) -> object:
            return jwt.decode(t, client.get_signing_key_from_jwt(t).key, algorithms=["RS256"],
                              audience=AUDIENCE, issuer=issuer.issuer)

        print(f"| PyJWT PyJWKClient | {cold_burst_fetches(pyjwk, slow, token)} |")
        if sdk is not None:
            from grantex._verify import clear_jwks_cache

            clear_jwks_cache()
            options = sdk.VerifyGrantTokenOptions(jwks_uri=url, audience=AUDIENCE, issuer=issuer.issuer)
            fetches = cold_burst_fetches(lambda t: sdk.verify_grant_token(t, options), slow, token)
            print(f"| official grantex SDK | {fetches} |")


if __name__ == "__main__":
    main()
