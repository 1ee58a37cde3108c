"""Verification speed, measured against baselines in the same run.

    python benchmarks/verify.py [--rounds 7] [--n 2000]

Prints median microseconds per verification (median over rounds) for:
  - the floor: one RSA-2048 signature check with `cryptography`
  - PyJWT `jwt.decode` with a known key, and PyJWT `PyJWKClient` + decode
  - Guard.verify on a new token each time (keys cached) and on a repeated token
  - the official `grantex` SDK's `verify_grant_token` (if installed: pip install grantex)
and, for 100 concurrent cold verifications (threads) per verifier, how many
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
from typing import Any

import jwt
from benchmarks._support import JwksServer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from grantex_guard import Guard
from grantex_guard.testing import DPoPAgent, LocalIssuer

AUDIENCE = "https://api.example.com"
SCOPES = ["calendar:read", "payments:initiate:max_500"]


def per_call_us(run: Callable[[int], None], n: int, rounds: int) -> float:
    """Median over rounds of the mean microseconds per call in a round of n calls."""
    run(max(1, n // 10))  # warm-up
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(n)
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def cycle(items: Sequence[str]) -> Callable[[], str]:
    state = {"i": 0}

    def next_item() -> str:
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]

    return next_item


def bench_floor(issuer: LocalIssuer, n: int, rounds: int) -> float:
    key = issuer.key.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    public = key.public_key()
    message = b"x" * 600
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def run(count: int) -> None:
        for _ in range(count):
            public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())

    return per_call_us(run, n, rounds)


def bench_pyjwt(issuer: LocalIssuer, tokens: Sequence[str], n: int, rounds: int) -> float:
    public = issuer.key.private_key.public_key()
    next_token = cycle(tokens)

    def run(count: int) -> None:
        for _ in range(count):
            jwt.decode(next_token(), public, algorithms=["RS256"], audience=AUDIENCE,
                       issuer=issuer.issuer)

    return per_call_us(run, n, rounds)


def bench_pyjwk_client(issuer: LocalIssuer, url: str, tokens: Sequence[str], n: int,
                       rounds: int) -> float:
    client = jwt.PyJWKClient(url, cache_keys=True)
    next_token = cycle(tokens)

    def run(count: int) -> None:
        for _ in range(count):
            token = next_token()
            key = client.get_signing_key_from_jwt(token)
            jwt.decode(token, key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=issuer.issuer)

    return per_call_us(run, n, rounds)


def bench_guard(guard: Guard, tokens: Sequence[str], n: int, rounds: int) -> float:
    next_token = cycle(tokens)
    required = ["calendar:read"]

    def run(count: int) -> None:
        for _ in range(count):
            guard.verify(next_token(), scopes=required)

    return per_call_us(run, n, rounds)


def bench_dpop(issuer: LocalIssuer, guard: Guard, n: int, rounds: int) -> float:
    """New bound tokens, each with a fresh proof: two signature checks per verification."""
    agent = DPoPAgent()
    url = "https://api.example.com/calendar"
    requests = []
    for _ in range(n):
        token = issuer.mint(SCOPES, audience=AUDIENCE, bound_to=agent.thumbprint)
        requests.append((token, agent.proof("GET", url, token)))
    position = {"i": 0}

    def run(count: int) -> None:
        for _ in range(count):
            position["i"] = (position["i"] + 1) % len(requests)
            token, proof = requests[position["i"]]
            guard.verify(token, scopes=["calendar:read"], dpop=proof, method="GET", url=url)

    # A proof is single-use: rebuild the pool's proofs between rounds instead of replaying them.
    def fresh_round(count: int) -> None:
        for index, (token, _) in enumerate(requests):
            requests[index] = (token, agent.proof("GET", url, token))
        run(count)

    return per_call_us_with_setup(fresh_round, run, n, rounds)


def per_call_us_with_setup(setup_and_run: Callable[[int], None], run: Callable[[int], None], n: int,
                           rounds: int) -> float:
    """Like per_call_us, timing only `run` after an untimed refresh of single-use inputs."""
    samples = []
    for _ in range(rounds):
        setup_and_run(0)
        start = time.perf_counter()
        run(n)
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def official_sdk() -> Any | None:
    try:
        import grantex
    except ImportError:
        return None
    return grantex


def bench_official(sdk: Any, issuer: LocalIssuer, url: str, tokens: Sequence[str], n: int,
                   rounds: int) -> float:
    options = sdk.VerifyGrantTokenOptions(jwks_uri=url, audience=AUDIENCE, issuer=issuer.issuer,
                                          required_scopes=["calendar:read"])
    next_token = cycle(tokens)

    def run(count: int) -> None:
        for _ in range(count):
            sdk.verify_grant_token(next_token(), options)

    return per_call_us(run, n, rounds)


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
    v1_issuer = issuer  # the official SDK reads the same standard tokens
    sdk = official_sdk()
    rows: list[tuple[str, float]] = []
    with JwksServer(issuer.jwks()) as server:
        url = server.url
        rows.append(("RSA-2048 signature check (cryptography): the floor",
                     bench_floor(issuer, args.n, args.rounds)))
        rows.append(("PyJWT jwt.decode, key known", bench_pyjwt(issuer, tokens, args.n, args.rounds)))
        rows.append(("PyJWT PyJWKClient + jwt.decode",
                     bench_pyjwk_client(issuer, url, tokens, args.n, args.rounds)))
        guard = Guard(issuer=issuer.issuer, jwks_uri=url, audience=AUDIENCE,
                      token_cache_size=args.n // 4)
        rows.append(("Guard.verify, new token each time",
                     bench_guard(guard, tokens, args.n, args.rounds)))
        rows.append(("Guard.verify, repeated token (cache hit)",
                     bench_guard(guard, tokens[:1], args.n, args.rounds)))
        rows.append(("Guard.verify, new DPoP-bound token + proof",
                     bench_dpop(issuer, guard, args.n, args.rounds)))
        if sdk is not None:
            rows.append(("official grantex SDK verify_grant_token",
                         bench_official(sdk, v1_issuer, url, tokens, args.n // 4, args.rounds)))

    floor = rows[0][1]
    python = sys.version.split()[0]
    print(f"\nmedian of {args.rounds} rounds x {args.n} verifications, Python {python}\n")
    print("| verifier | µs / verification | x floor |")
    print("|---|---:|---:|")
    for name, micros in rows:
        print(f"| {name} | {micros:.1f} | {micros / floor:.2f} |")
    by_name = dict(rows)
    new_token = by_name["Guard.verify, new token each time"]
    print()
    print(f"Guard new token vs jwt.decode: {by_name['PyJWT jwt.decode, key known'] / new_token:.2f}x faster")
    if sdk is not None:
        official = by_name["official grantex SDK verify_grant_token"]
        print(f"Guard new token vs official SDK: {official / new_token:.2f}x faster")
    repeated = by_name["Guard.verify, repeated token (cache hit)"]
    print(f"Guard repeated token: {repeated / floor:.2f}x the floor")
    bound = by_name["Guard.verify, new DPoP-bound token + proof"]
    print(f"Guard new bound token + DPoP proof vs new bearer token: {bound / new_token:.2f}x")

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
