"""A FastAPI API protected by Grantex grant tokens.

Run it against hosted Grantex (or set GRANTEX_ISSUER / GRANTEX_AUDIENCE first):

    GRANTEX_AUDIENCE=https://api.example.com uvicorn examples.fastapi_app:app

    GET  /health            public
    GET  /calendar/events   needs calendar:read
    POST /payments          {"amount": "250.00", "currency": "USD", "payee": "acme"}:
                            checked against the grant's payments:initiate cap
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Security
from pydantic import BaseModel, Field

from grantex_guard import Grant, Guard
from grantex_guard.fastapi import GrantexBearer, install


class PaymentRequest(BaseModel):
    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2)
    currency: str = Field(pattern="^[A-Z]{3}$")
    payee: str = Field(min_length=1, max_length=100)


def create_app(guard: Guard) -> FastAPI:
    grantex = GrantexBearer(guard)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await guard.aclose()

    app = FastAPI(title="Calendar and payments API", lifespan=lifespan)
    install(app, guard)  # GuardError -> 401/403/503 with JSON body and WWW-Authenticate

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/calendar/events")
    async def list_events(
        grant: Annotated[Grant, Security(grantex, scopes=["calendar:read"])],
    ) -> dict[str, Any]:
        return {
            "principal": grant.principal_id,
            "agent": grant.agent_did,
            "events": [{"title": "Stand-up", "start": "2030-01-07T09:00:00Z"}],
        }

    @app.post("/payments", status_code=201)
    async def initiate_payment(
        payment: PaymentRequest, grant: Annotated[Grant, Depends(grantex)]
    ) -> dict[str, Any]:
        # The amount is only known now: a grant capped at max_500 may pay 300, not 800.
        grant.require("payments:initiate", amount=payment.amount)
        return {"status": "initiated", "amount": str(payment.amount),
                "currency": payment.currency, "principal": grant.principal_id}

    return app


def guard_from_environment() -> Guard:
    return Guard(
        issuer=os.environ.get("GRANTEX_ISSUER", "https://grantex.dev"),
        audience=os.environ.get("GRANTEX_AUDIENCE") or None,
    )


app = create_app(guard_from_environment())
