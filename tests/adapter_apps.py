"""Small apps behind the Starlette middleware and the Flask extension, and one way to ask both.

    from tests.adapter_apps import Adapter, flask_test_client, starlette_test_client

`starlette_app(guard, routes)` and `flask_app(guard, routes)` serve one GET route per
path of `routes` ({path: scopes}, default `/calendar` needing `calendar:read`), each
behind the adapter's `require_scopes(*scopes)` and answering `{"principal": ...}`.
`starlette_test_client(...)` (a context manager: the app's lifespan runs) and
`flask_test_client(...)` wrap a test client of each app as an `Adapter`, whose
`get(path, headers)` reads the status, headers and JSON body of both alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from grantex_guard import Guard
from grantex_guard import flask as flask_guard
from grantex_guard import starlette as starlette_guard

Routes = Mapping[str, Sequence[str]]
CALENDAR: Routes = {"/calendar": ["calendar:read"]}


def starlette_app(guard: Guard, routes: Routes = CALENDAR) -> Starlette:
    """`routes` behind GrantexMiddleware, each checked by `require_scopes`."""
    def endpoint(scopes: Sequence[str]) -> Callable[[Request], Awaitable[Response]]:
        @starlette_guard.require_scopes(*scopes)
        async def principal(request: Request) -> Response:
            return JSONResponse({"principal": request.state.grant.principal_id})
        return principal

    return Starlette(routes=[Route(path, endpoint(scopes)) for path, scopes in routes.items()],
                     middleware=[Middleware(starlette_guard.GrantexMiddleware, guard=guard)])


def flask_app(guard: Guard, routes: Routes = CALENDAR) -> Flask:
    """`routes` behind the GrantexGuard extension, each checked by `require_scopes`."""
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    flask_guard.GrantexGuard(app, guard=guard)

    def view(scopes: Sequence[str]) -> Callable[[], dict[str, Any]]:
        @flask_guard.require_scopes(*scopes)
        def principal() -> dict[str, Any]:
            return {"principal": flask_guard.current_grant.principal_id}
        return principal

    for path, scopes in routes.items():
        app.add_url_rule(path, endpoint=path, view_func=view(scopes), methods=["GET"])
    return app


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Any  # case-insensitive, as each framework gives them
    body: Any  # the JSON body
    text: str


@dataclass(frozen=True)
class Adapter:
    """A test client of a Starlette or a Flask app, read the same way."""

    client: TestClient | FlaskClient

    def get(self, path: str, headers: Mapping[str, str]) -> Answer:
        response = self.client.get(path, headers=dict(headers))
        if isinstance(self.client, TestClient):
            return Answer(response.status_code, response.headers, response.json(), response.text)
        return Answer(response.status_code, response.headers, response.get_json(),
                      response.get_data(as_text=True))


@contextmanager
def starlette_test_client(guard: Guard, routes: Routes = CALENDAR) -> Iterator[Adapter]:
    with TestClient(starlette_app(guard, routes), raise_server_exceptions=False) as client:
        yield Adapter(client)


def flask_test_client(guard: Guard, routes: Routes = CALENDAR) -> Adapter:
    return Adapter(flask_app(guard, routes).test_client())
