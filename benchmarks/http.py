"""HTTP benchmark: the same FastAPI route without auth, with grantex-guard, with the
official grantex-fastapi and with a hand-written PyJWT PyJWKClient dependency.

    python benchmarks/http.py [--seconds 2] [--repeat 3] [--connections 16]

One uvicorn server on 127.0.0.1 serves every variant (one route each); the JWKS
is served over HTTP on 127.0.0.1 and every verifier trusts it. Load comes from
`wrk` (one thread, N connections, bounded by time, and by the number of tokens
when each request needs a new one) when it is installed, and in-process from N
asyncio workers through httpx.ASGITransport (bounded by count and time).
Prints a markdown table of medians over the repetitions and ratios to no-auth.
"""


from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py: drop its directory from the path so that
# `import http.server` (here and in httpx) finds the standard library.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
sys.path[0:0] = [str(_HERE.parent / "src"), str(_HERE.parent)]  # grantex_guard, benchmarks._support

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import uvicorn
from benchmarks._support import JwksServer
from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.security import SecurityScopes
from grantex_fastapi import GrantexAuth, GrantexFastAPIError, grantex_exception_handler

from grantex_guard import Grant, Guard
from grantex_guard._demo import uvicorn_server
from grantex_guard.fastapi import GrantexBearer, install
from grantex_guard.testing import LocalIssuer

API = "https://api.example.com"
SCOPES = ["calendar:read", "payments:initiate:max_500"]

WRK_SCRIPT = r"""
local tokens = {}
local index = 0
local cycle = os.getenv("BENCH_CYCLE") == "1"
init = function(args)
  for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
end
request = function()
  if #tokens == 0 then return wrk.format("GET") end
  index = index + 1
  if index > #tokens then index = cycle and 1 or #tokens end
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. tokens[index]})
end
response = function(status, headers, body)
  if not cycle and index >= #tokens and #tokens > 0 then wrk.thread:stop() end
end
"""


# -- the JWKS, the issuer and the app ------------------------------------------------


@contextmanager
def jwks_server() -> Iterator[tuple[LocalIssuer, str]]:
    """A LocalIssuer whose issuer is the JWKS server's origin (what grantex-fastapi derives)."""
    with JwksServer() as server:
        issuer = LocalIssuer("RS256", issuer=server.origin)
        server.body = issuer.jwks()
        yield issuer, server.url


def pyjwt_dependency(jwks_url: str, issuer: str) -> Callable[[Request], dict[str, Any]]:
    """What a team writes by hand: PyJWKClient (cached keys) + jwt.decode, a sync dependency."""
    client = jwt.PyJWKClient(jwks_url, cache_keys=True)

    def verified_claims(request: Request) -> dict[str, Any]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "missing token")
        try:
            key = client.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["RS256", "ES256"],
                                                audience=API, issuer=issuer)
        except jwt.PyJWTError as exc:
            raise HTTPException(401, "invalid token") from exc
        if "calendar:read" not in str(claims.get("scope", "")).split():
            raise HTTPException(403, "insufficient scope")
        return claims

    return verified_claims


def create_app(issuer: LocalIssuer, jwks_url: str) -> FastAPI:
    app = FastAPI()
    guard = Guard(issuer=issuer.issuer, jwks_uri=jwks_url, audience=API)
    grantex = GrantexBearer(guard)
    install(app, guard)
    official = GrantexAuth(jwks_uri=jwks_url, audience=API)
    app.add_exception_handler(GrantexFastAPIError, grantex_exception_handler)  # type: ignore[arg-type]
    guard_grant = Security(grantex, scopes=["calendar:read"])
    official_grant = Depends(official.scopes("calendar:read"))
    pyjwt_claims = Depends(pyjwt_dependency(jwks_url, issuer.issuer))

    async def no_check(security_scopes: SecurityScopes, request: Request) -> str:
        return request.headers.get("authorization", "")[:0] + "user_test"

    # What FastAPI's dependency machinery alone costs a route with a Security dependency.
    no_check_principal = Security(no_check, scopes=["calendar:read"])

    @app.get("/noauth")
    async def noauth() -> dict[str, Any]:
        return {"principal": "user_test"}

    @app.get("/dependency")
    async def dependency_only(principal: str = no_check_principal) -> dict[str, Any]:
        return {"principal": principal}

    @app.get("/guard")
    async def guarded(grant: Grant = guard_grant) -> dict[str, Any]:
        return {"principal": grant.principal_id}

    @app.get("/official")
    async def official_route(grant: Any = official_grant) -> dict[str, Any]:
        return {"principal": grant.principal_id}

    @app.get("/pyjwt")
    async def pyjwt_route(claims: dict[str, Any] = pyjwt_claims) -> dict[str, Any]:
        return {"principal": claims["sub"]}

    return app


# -- load generators -------------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}  # wrk switches to minutes


def _ms(text: str) -> float:
    """A wrk duration in ms; NaN for what wrk prints when it has no sample (e.g. "-nanus")."""
    found = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if found is None:
        print(f"wrk printed an unreadable latency {text!r}", file=sys.stderr)
        return float("nan")
    number, unit = found.groups()
    return float(number) * _UNITS[unit]


def run_wrk(url: str, tokens: list[str], cycle: bool, seconds: int, connections: int,
            workdir: Path) -> Result:
    token_file = workdir / "tokens.txt"
    token_file.write_text("\n".join(tokens) + ("\n" if tokens else ""))
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "BENCH_TOKENS": str(token_file), "BENCH_CYCLE": "1" if cycle else "0"}
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    found = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    rps = float(found.group(1)) if found else 0.0
    p50 = _ms(re.search(r"50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Result(rps, p50, p99, int(errors.group(1)) if errors else 0)


async def run_in_process(app: FastAPI, path: str, tokens: list[str], cycle: bool,
                         seconds: float, workers: int, max_requests: int) -> Result:
    transport = httpx.ASGITransport(app=app)
    latencies: list[float] = []
    errors = 0
    budget = min(max_requests, len(tokens)) if tokens and not cycle else max_requests
    issued = 0
    deadline = time.perf_counter() + seconds

    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        async def worker() -> None:
            nonlocal issued, errors
            while issued < budget and time.perf_counter() < deadline:
                index = issued
                issued += 1
                headers = ({"Authorization": f"Bearer {tokens[index % len(tokens)]}"}
                           if tokens else {})
                sent = time.perf_counter()
                response = await client.get(path, headers=headers)
                latencies.append(time.perf_counter() - sent)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Result(len(latencies) / elapsed, latencies[len(latencies) // 2] * 1000,
                  latencies[int(len(latencies) * 0.99)] * 1000, errors)


# -- the run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    path: str
    token: str  # "none", "repeated", "new"


VARIANTS = [
    Variant("no auth", "/noauth", "none"),
    Variant("Security dependency that checks nothing", "/dependency", "repeated"),
    Variant("grantex-guard, repeated token", "/guard", "repeated"),
    Variant("grantex-guard, new token per request", "/guard", "new"),
    Variant("grantex-fastapi 0.1.7 (official)", "/official", "repeated"),
    Variant("PyJWT PyJWKClient, hand-written", "/pyjwt", "repeated"),
]


def median_result(results: list[Result]) -> Result:
    return Result(
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
    )


def table(title: str, results: dict[str, Result]) -> str:
    base = results[VARIANTS[0].name]
    lines = [
        f"### {title}",
        "",
        "| variant | req/s | vs no-auth | added µs/req | p50 ms | p99 ms | p99 vs no-auth "
        "| non-200 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        lines.append(
            f"| {name} | {result.rps:,.0f} | {result.rps / base.rps:.0%} "
            f"| {1e6 / result.rps - 1e6 / base.rps:,.0f} | {result.p50_ms:.2f} "
            f"| {result.p99_ms:.2f} | {result.p99_ms / base.p99_ms:.2f}x | {result.errors} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=2, help="per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--in-process-requests", type=int, default=1500)
    options = parser.parse_args()

    with jwks_server() as (issuer, jwks_url), tempfile.TemporaryDirectory() as tmp:
        app = create_app(issuer, jwks_url)
        repeated = [issuer.mint(SCOPES, audience=API)]
        fresh_needed = options.repeat * (int(options.seconds * 4000) +
                                         options.in_process_requests)
        print(f"minting {fresh_needed} tokens...", file=sys.stderr)
        fresh = [issuer.mint(SCOPES, audience=API) for _ in range(fresh_needed)]

        def tokens_for(variant: Variant, count: int) -> tuple[list[str], bool]:
            if variant.token == "none":
                return [], True
            if variant.token == "repeated":
                return repeated, True
            taken = fresh[:count]
            del fresh[:count]
            return taken, False

        over_http: dict[str, list[Result]] = {v.name: [] for v in VARIANTS}
        in_process: dict[str, list[Result]] = {v.name: [] for v in VARIANTS}
        use_wrk = shutil.which("wrk") is not None
        with uvicorn_server(app, access_log=False) as base_url:
            for variant in VARIANTS:  # warm every path: keys fetched, code paths hot
                httpx.get(base_url + variant.path,
                          headers={"Authorization": f"Bearer {repeated[0]}"})
            for repetition in range(options.repeat):
                for variant in VARIANTS:
                    if use_wrk:
                        tokens, cycle = tokens_for(variant, int(options.seconds * 4000))
                        over_http[variant.name].append(run_wrk(
                            base_url + variant.path, tokens, cycle, options.seconds,
                            options.connections, Path(tmp)))
                    tokens, cycle = tokens_for(variant, options.in_process_requests)
                    in_process[variant.name].append(asyncio.run(run_in_process(
                        app, variant.path, tokens, cycle, options.seconds,
                        options.connections, options.in_process_requests)))
                print(f"repetition {repetition + 1}/{options.repeat} done", file=sys.stderr)

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, uvicorn {uvicorn.__version__}"
          f" (h11), {options.connections} connections, median of {options.repeat} runs\n")
    if use_wrk:
        print(table(f"uvicorn on 127.0.0.1, wrk, {options.seconds:g} s per run",
                    {name: median_result(r) for name, r in over_http.items()}))
        print()
    print(table(f"in-process (httpx.ASGITransport), {options.in_process_requests} requests "
                "per run", {name: median_result(r) for name, r in in_process.items()}))


if __name__ == "__main__":
    main()
