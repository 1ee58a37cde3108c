"""Load and memory check (a script, not a test): `PYTHONPATH=src python -m benchmarks.load`.

(Run it as a module: run as a file, benchmarks/http.py would shadow the standard `http`.)

1. Cold-cache burst: a real uvicorn server on 127.0.0.1 runs a Starlette app behind
   GrantexMiddleware; its JWKS is served by a separate local HTTP server that counts
   requests. An asyncio httpx client sends N requests (default 10,000, each with its own
   token) from C (default 500) connections at once, on a cold key cache (uvicorn runs in
   its own process). Expected: every answer 200 and exactly one JWKS fetch.
2. Memory: M (default 1,000,000) distinct tokens through Guard.verify: a pool of valid
   ES256 tokens (minting a million is the slow part, so the pool is smaller and reused
   once the token cache has forgotten them), unique forged-signature tokens and unique
   unknown-kid tokens, plus DPoP proofs against a bounded replay store. The tokens are
   built in chunks outside the timed region, so the rate is Guard.verify's alone. Reports
   peak RSS (resource.getrusage) before and after, and the token-cache, header-cache and
   replay-store sizes, which must stay at their bounds.

Options: --requests N --concurrency C --tokens M --valid-pool P --proofs K.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import resource
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from grantex_guard import Guard, GuardError
from grantex_guard.dpop import MemoryReplayStore
from grantex_guard.jose import b64url_encode
from grantex_guard.starlette import GrantexMiddleware, require_scopes
from grantex_guard.testing import DPoPAgent, LocalIssuer
from grantex_guard.verifier import _HEADER_CACHE_SIZE

API = "https://api.example.com"
CONNECTIONS_PER_CLIENT = 50  # one httpx pool of 500 makes the client, not the server, the bottleneck
REPLAY_STORE_BOUND = 10_000
CHUNK = 10_000  # memory phase: tokens built (untimed) per batch, then verified (timed)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- 1. cold-cache burst through uvicorn ------------------------------------------------------


def build_app(guard: Guard) -> Starlette:
    @require_scopes("calendar:read")
    async def calendar(request: Request) -> Response:
        return JSONResponse({"principal": request.state.grant.principal_id})

    return Starlette(routes=[Route("/calendar", calendar)],
                     middleware=[Middleware(GrantexMiddleware, guard=guard)])


def app_from_env() -> Starlette:
    """The app uvicorn serves (`--factory`): trusts the issuer named in the environment."""
    guard = Guard(issuer=os.environ["GRANTEX_LOAD_ISSUER"],
                  jwks_uri=os.environ["GRANTEX_LOAD_JWKS_URI"], audience=API)
    return build_app(guard)


class UvicornProcess:
    """uvicorn in its own process (no GIL shared with the client), on a free local port."""

    def __init__(self, issuer: str, jwks_uri: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.command = [sys.executable, "-m", "uvicorn", "benchmarks.load:app_from_env",
                        "--factory", "--host", "127.0.0.1", "--port", str(self.port),
                        "--log-level", "warning", "--no-access-log", "--backlog", "4096",
                        "--lifespan", "off"]
        self.env = {**os.environ, "GRANTEX_LOAD_ISSUER": issuer, "GRANTEX_LOAD_JWKS_URI": jwks_uri,
                    "PYTHONPATH": os.pathsep.join(filter(None, ["src", ".", os.environ.get(
                        "PYTHONPATH")]))}
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> UvicornProcess:
        self.process = subprocess.Popen(self.command, env=self.env)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


def client_sizes(concurrency: int) -> list[int]:
    """`concurrency` connections split over as few clients of at most 50 as it takes, evenly:
    75 -> [38, 37]; the sizes always add up to `concurrency`."""
    clients = -(-concurrency // CONNECTIONS_PER_CLIENT)
    share, extra = divmod(concurrency, clients)
    return [share + (index < extra) for index in range(clients)]


async def drive(url: str, tokens: list[str], concurrency: int) -> Counter[int | str]:
    """Send every token from exactly `concurrency` connections, each kept busy.

    One worker per connection takes the next token as soon as its previous answer is in;
    a client of n connections gets exactly n workers, so none waits in httpx's pool queue.
    """
    statuses: Counter[int | str] = Counter()
    pending = iter(tokens)  # shared: each worker takes the next unsent token

    async def worker(client: httpx.AsyncClient) -> None:
        for token in pending:
            try:
                response = await client.get(url, headers={"Authorization": f"Bearer {token}"})
                statuses[response.status_code] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1

    sizes = client_sizes(concurrency)
    clients = [httpx.AsyncClient(limits=httpx.Limits(max_connections=size,
                                                     max_keepalive_connections=size), timeout=120)
               for size in sizes]
    try:
        await asyncio.gather(*(worker(client) for client, size in zip(clients, sizes, strict=True)
                               for _ in range(size)))
    finally:
        for client in clients:
            await client.aclose()
    return statuses


def burst(requests: int, concurrency: int) -> bool:
    issuer = LocalIssuer("ES256")
    started = time.perf_counter()
    tokens = [issuer.mint(["calendar:read"], audience=API) for _ in range(requests)]
    print(f"[burst] minted {requests} distinct ES256 tokens in {time.perf_counter() - started:.1f} s")
    with issuer.serve() as jwks_url, UvicornProcess(issuer.issuer, jwks_url) as server:
        url = f"http://127.0.0.1:{server.port}/calendar"
        started = time.perf_counter()
        statuses = asyncio.run(drive(url, tokens, concurrency))
        elapsed = time.perf_counter() - started
    ok = statuses == Counter({200: requests}) and issuer.jwks_hits == 1
    sizes = client_sizes(concurrency)
    print(f"[burst] {requests} requests, {concurrency} connections ({'+'.join(map(str, sizes))} "
          f"over {len(sizes)} clients), cold cache: "
          f"{elapsed:.1f} s ({requests / elapsed:.0f} req/s), statuses {dict(statuses)}, "
          f"JWKS fetches {issuer.jwks_hits} -> {'OK' if ok else 'FAIL'}")
    return ok


# -- 2. memory under a million distinct tokens ---------------------------------------------------


def forged(header: str) -> str:
    """Well-formed but never valid: a fresh payload and a 64-byte signature that is noise."""
    payload = b64url_encode(b'{"jti":"' + secrets.token_hex(24).encode() + b'"}')
    return f"{header}.{payload}.{b64url_encode(secrets.token_bytes(64))}"


def token_stream(total: int, pool: list[str]) -> Iterator[str]:
    """`total` tokens, in turn: a valid one from `pool`, two forged signatures under the real
    header (they reach the signature check) and one with a unique unknown kid (refused at
    the key lookup, and a new header each time)."""
    real_header = pool[0].split(".")[0]
    for index in range(total):
        kind = index % 4
        if kind == 0:
            yield pool[(index // 4) % len(pool)]
        elif kind in (1, 2):
            yield forged(real_header)
        else:
            yield forged(b64url_encode(f'{{"alg":"ES256","kid":"k{index}","typ":"at+jwt"}}'.encode()))


def memory(total: int, valid_pool: int, proofs: int) -> bool:
    issuer = LocalIssuer("ES256")
    store = MemoryReplayStore(clock=issuer.clock, max_entries=REPLAY_STORE_BOUND)
    guard = issuer.guard(audience=API, replay_store=store)
    guard.warm_up()
    started = time.perf_counter()
    pool = [issuer.mint(["calendar:read"], audience=API) for _ in range(valid_pool)]
    print(f"[memory] minted a pool of {valid_pool} valid ES256 tokens in "
          f"{time.perf_counter() - started:.1f} s")
    rss_before, peak_before = current_rss_mib(), peak_rss_mib()
    outcomes: Counter[str] = Counter()
    verifying = 0.0  # seconds inside the timed loops: Guard.verify only, not building tokens
    stream = token_stream(total, pool)
    while chunk := list(itertools.islice(stream, CHUNK)):  # at most CHUNK tokens held at once
        results: list[str] = []
        started = time.perf_counter()
        for token in chunk:
            try:
                guard.verify(token, scopes=["calendar:read"])
                results.append("200")
            except GuardError as error:
                results.append(error.code)
        verifying += time.perf_counter() - started
        outcomes.update(results)
    agent = DPoPAgent(clock=issuer.clock)
    bound_token = issuer.mint(["calendar:read"], audience=API, bound_to=agent.thumbprint)
    for _ in range(proofs):
        guard.verify(bound_token, dpop=agent.proof("GET", API + "/calendar", bound_token),
                     method="GET", url=API + "/calendar")
    token_cache = guard._cache
    sizes = {
        "token cache": (len(token_cache) if token_cache is not None else 0,
                        guard.config.token_cache_size),
        "header cache": (len(guard._headers), _HEADER_CACHE_SIZE),
        "replay store": (len(store), REPLAY_STORE_BOUND),
    }
    rss_after, peak_after = current_rss_mib(), peak_rss_mib()
    rate = total / verifying if verifying else 0.0
    print(f"[memory] {total} distinct tokens through Guard.verify: {verifying:.1f} s verifying "
          f"({rate:.0f}/s; building the tokens not timed): {dict(outcomes)}")
    print(f"[memory] then {proofs} DPoP-proven requests")
    print(f"[memory] RSS {rss_before:.0f} MiB -> {rss_after:.0f} MiB; peak RSS "
          f"{peak_before:.0f} MiB -> {peak_after:.0f} MiB")
    ok = all(size <= bound for size, bound in sizes.values())
    for name, (size, bound) in sizes.items():
        print(f"[memory] {name}: {size} entries (bound {bound})")
    print(f"[memory] caches bounded -> {'OK' if ok else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--valid-pool", type=int, default=20_000)
    parser.add_argument("--proofs", type=int, default=30_000)
    parser.add_argument("--skip-burst", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.valid_pool < 1:
        parser.error("--concurrency and --valid-pool must be at least 1")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    ok = True
    if not args.skip_burst:
        ok = burst(args.requests, args.concurrency) and ok
    if not args.skip_memory:
        ok = memory(args.tokens, args.valid_pool, args.proofs) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
