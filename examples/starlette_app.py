"""A Starlette API protected by Grantex grant tokens.

Run it against hosted Grantex (or set GRANTEX_ISSUER / GRANTEX_AUDIENCE first):

    GRANTEX_AUDIENCE=https://api.example.com uvicorn examples.starlette_app:app

    GET  /health            public (excluded from authentication)
    GET  /calendar/events   needs calendar:read
    POST /payments          {"amount": "250.00", "payee": "acme"}: checked against
                            the grant's payments:initiate cap
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal, InvalidOperation

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from grantex_guard import Guard, GuardError
from grantex_guard.starlette import GrantexMiddleware, guard_error_handler, require_scopes


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


@require_scopes("calendar:read")
async def list_events(request: Request) -> Response:
    grant = request.state.grant
    return JSONResponse({
        "principal": grant.principal_id,
        "agent": grant.agent_did,
        "events": [{"title": "Stand-up", "start": "2030-01-07T09:00:00Z"}],
    })


@require_scopes()  # any valid grant; the amount is checked below
async def initiate_payment(request: Request) -> Response:
    grant = request.state.grant
    body = await request.json()
    try:
        amount = Decimal(str(body["amount"]))
        # The amount is only known now: a grant capped at max_500 may pay 300, not 800.
        grant.require("payments:initiate", amount=amount)
    except (KeyError, TypeError, ValueError, InvalidOperation):
        return JSONResponse({"error": "BAD_AMOUNT", "message": 'Send {"amount": "<positive>"}.'},
                            status_code=400)
    return JSONResponse({"status": "initiated", "amount": f"{amount}",
                         "principal": grant.principal_id}, status_code=201)


def create_app(guard: Guard) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await guard.aclose()

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/calendar/events", list_events),
            Route("/payments", initiate_payment, methods=["POST"]),
        ],
        middleware=[
            Middleware(GrantexMiddleware, guard=guard, required=True, exclude_paths=["/health"],
                       scopes_supported=["calendar:read", "payments:initiate"]),
        ],
        # grant.require(...) raises InsufficientScope: answer it as a 403 with a challenge.
        exception_handlers={GuardError: guard_error_handler},
        lifespan=lifespan,
    )


def guard_from_environment() -> Guard:
    return Guard(
        issuer=os.environ.get("GRANTEX_ISSUER", "https://grantex.dev"),
        audience=os.environ.get("GRANTEX_AUDIENCE") or None,
    )


app = create_app(guard_from_environment())
