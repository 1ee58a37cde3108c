"""`grantex-guard demo`: an example API on 127.0.0.1, a local issuer, and curl commands to try.

Everything runs in this process: the issuer's JWKS is served in-process, the
API is Starlette on uvicorn, and no Grantex account or network is needed.
`uvicorn_server(app)` (uvicorn in a thread on 127.0.0.1) also serves the apps of
tests/test_asgi_server.py and benchmarks/http.py.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
from collections.abc import Iterator
from typing import Any

from .errors import GuardError
from .testing import LocalIssuer
from .verifier import Guard

AUDIENCE = "https://demo.grantex-guard.local"
GRANTED = ["calendar:read", "payments:initiate:max_500"]


def build_app(guard: Guard) -> object:
    """The demo API: GET /calendar needs calendar:read; POST /payments checks the amount."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from .starlette import GrantexMiddleware, guard_error_handler, require_scopes

    @require_scopes("calendar:read")
    async def calendar(request: Request) -> Response:
        grant = request.state.grant
        return JSONResponse({"principal": grant.principal_id, "agent": grant.agent_did,
                             "events": ["Stand-up 09:00", "Review 14:00"]})

    @require_scopes()  # any valid grant: the amount decides, below
    async def payments(request: Request) -> Response:
        amount = (await request.json()).get("amount")
        try:
            request.state.grant.require("payments:initiate", amount=amount)
        except ValueError:
            return JSONResponse({"error": "BAD_AMOUNT", "message": "amount must be a positive number"},
                                status_code=400)
        return JSONResponse({"status": "initiated", "amount": str(amount)}, status_code=201)

    return Starlette(
        routes=[Route("/calendar", calendar), Route("/payments", payments, methods=["POST"])],
        middleware=[Middleware(GrantexMiddleware, guard=guard, required=True)],
        exception_handlers={GuardError: guard_error_handler},
    )


def _delegated(issuer: LocalIssuer, depth: int) -> str:
    token = issuer.mint(GRANTED, audience=AUDIENCE, agent="did:grantex:ag_ROOT")
    for hop in range(depth):
        token = issuer.mint(GRANTED, audience=AUDIENCE, delegated_from=token,
                            agent=f"did:grantex:ag_HOP{hop + 1}")
    return token


def example_requests(issuer: LocalIssuer, base: str) -> list[tuple[str, int, list[str]]]:
    """(what it shows, expected status, curl argv) for each demonstrated outcome."""
    def curl(token: str, path: str, amount: int | None = None) -> list[str]:
        command = ["curl", "-s", "-i", "-H", f"Authorization: Bearer {token}"]
        if amount is not None:
            command += ["-H", "Content-Type: application/json", "-d", f'{{"amount": {amount}}}']
        return [*command, base + path]

    valid = issuer.mint(GRANTED, audience=AUDIENCE)
    expired = issuer.mint(GRANTED, audience=AUDIENCE, issued_at=time.time() - 7200, expires_in=3600)
    no_calendar = issuer.mint(["email:send"], audience=AUDIENCE)
    return [
        ("200: a valid grant with calendar:read", 200, curl(valid, "/calendar")),
        ("201: a payment of 300 within the grant's max_500", 201, curl(valid, "/payments", 300)),
        ("401 TOKEN_EXPIRED: the token expired an hour ago", 401, curl(expired, "/calendar")),
        ("403 SCOPE_INSUFFICIENT: the grant lacks calendar:read", 403, curl(no_calendar, "/calendar")),
        ("403 SCOPE_INSUFFICIENT: 800 is over the grant's max_500", 403, curl(valid, "/payments", 800)),
        ("403 DELEGATION_DENIED: delegated 4 times, the limit is 3", 403,
         curl(_delegated(issuer, 4), "/calendar")),
    ]


@contextlib.contextmanager
def uvicorn_server(app: Any, port: int = 0, **config: Any) -> Iterator[str]:
    """Serve the ASGI `app` with uvicorn on 127.0.0.1 in a daemon thread; yields the base URL.

    `port` 0 takes a free port; `config` goes to `uvicorn.Config` (log level "warning" and
    lifespan "off" unless given). Raises RuntimeError when uvicorn does not start (a port
    already taken) within 10 s; on exit the server stops and the thread is joined.
    """
    import uvicorn

    options: dict[str, Any] = {"log_level": "warning", "lifespan": "off", **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_demo(port: int = 8765, duration: float | None = None) -> int:
    issuer = LocalIssuer()
    guard = issuer.guard(audience=AUDIENCE)
    with contextlib.ExitStack() as stack:
        try:
            base = stack.enter_context(uvicorn_server(build_app(guard), port=port))
        except RuntimeError:
            return 1
        print(f"grantex-guard demo API on {base} (audience {AUDIENCE}), tokens from a local issuer.\n")
        for title, _, command in example_requests(issuer, base):
            print(f"# {title}\n{shlex.join(command)}\n")
        print("Press Ctrl-C to stop." if duration is None else f"Stopping in {duration:g} s.",
              flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait(duration)
    return 0
