"""A Flask API protected by Grantex grant tokens.

Run it against hosted Grantex (or set GRANTEX_ISSUER / GRANTEX_AUDIENCE first):

    flask --app examples.flask_app run

    GET  /                     public
    GET  /calendar             needs calendar:read
    GET  /payments/limit       any valid grant: how much it may pay
    POST /payments             {"amount": "250.00"}: checked against the grant's cap
    GET  /payments/currencies  exempt from the blueprint's protection
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from flask import Blueprint, Flask, g, request

from grantex_guard.flask import GrantexGuard, current_grant

grantex = GrantexGuard()
payments = Blueprint("payments", __name__, url_prefix="/payments")
# Every payments view needs a valid grant; the amount is checked per request, so a
# grant capped at max_500 may pay 300 but not 800.
grantex.protect(payments)


@payments.post("")
def initiate_payment() -> tuple[dict[str, Any], int]:
    body = request.get_json(silent=True) or {}
    try:
        amount = Decimal(str(body["amount"]))
        current_grant.require("payments:initiate", amount=amount)  # 403 above the cap
    except (KeyError, ValueError, ArithmeticError):
        return {"error": "BAD_AMOUNT", "message": "Send {\"amount\": <positive number>}."}, 400
    return {"status": "initiated", "amount": f"{amount}", "principal": current_grant.principal_id}, 201


@payments.get("/limit")
def payment_limit() -> dict[str, Any]:
    limit = current_grant.limit("payments:initiate")
    shown = None if limit is None else "unlimited" if limit.is_infinite() else f"{limit}"
    return {"payments:initiate": shown}


@payments.get("/currencies")
@grantex.exempt
def currencies() -> dict[str, Any]:
    return {"currencies": ["EUR", "USD"]}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["GRANTEX_ISSUER"] = os.environ.get("GRANTEX_ISSUER", "https://grantex.dev")
    if "GRANTEX_AUDIENCE" in os.environ:
        app.config["GRANTEX_AUDIENCE"] = os.environ["GRANTEX_AUDIENCE"]
    app.config.update(config or {})
    grantex.init_app(app)
    app.register_blueprint(payments)

    @app.get("/")
    def index() -> dict[str, Any]:
        return {"service": "grantex-guard Flask example", "authenticated": g.grant is not None}

    @app.get("/calendar")
    @grantex.require_scopes("calendar:read")
    def calendar() -> dict[str, Any]:
        return {"principal": current_grant.principal_id, "agent": current_grant.agent_did,
                "events": []}

    return app
