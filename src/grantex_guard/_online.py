"""The Grantex API's online revocation answers: one request, one verdict or failure (sync + async)."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .jose import decode_json_object

if TYPE_CHECKING:
    import httpx

HOSTED_ISSUER, HOSTED_API = "https://grantex.dev", "https://api.grantex.dev"
_FAILURE_HOLD = 2.0  # after a 5xx or a timeout, no call to the service for this long
_MAX_BODY = 65_536


@dataclass(frozen=True, slots=True)
class _Failure:
    """No verdict. `unavailable` obeys fail_open; `configuration` and `unknown` never do."""

    kind: Literal["unavailable", "configuration", "unknown"]
    detail: str
    retry_after: float = 30.0


_Result = str | _Failure


def derive_api_base_url(issuer: str) -> str:
    """The API base for an issuer: the hosted issuer's API lives on api.grantex.dev."""
    base = issuer.rstrip("/")
    return HOSTED_API if base == HOSTED_ISSUER else base


def _retry_after(headers: Mapping[str, str], default: float) -> float:
    for name in ("retry-after", "x-ratelimit-reset"):
        value = headers.get(name, "").strip()
        if value.isascii() and value.isdigit():
            return float(min(int(value), 3600))
    return default


def _shape_error(source: str, what: str) -> _Failure:
    return _Failure("unavailable", f"{source}: unexpected answer ({what})", _FAILURE_HOLD)


def _interpret(source: str, status: int, headers: Mapping[str, str], body: bytes) -> _Result:
    """The verdict (or failure) in one answer of an online source. Pure."""
    if status == 429:
        wait = _retry_after(headers, 60.0)
        return _Failure("unavailable", f"{source}: rate limited for {wait:g} s", wait)
    if status in (401, 403):
        return _Failure("configuration", f"{source}: the service refused the API key (status {status}): "
                        "check api_key", 60.0)
    if status == 404:
        if source == "status":
            return _Failure("configuration", "GET /v1/revocations/status answered 404: this Grantex "
                            "service predates the status endpoint; set revocation_source='grants_verify' "
                            "(gives a reason) or 'tokens_verify' for older services", 60.0)
        return _Failure("configuration", f"{source}: 404, check api_base_url", 60.0)
    if source == "grants_verify" and status == 400:
        return _Failure("configuration", "grants_verify: the service refused a token this guard accepted "
                        "(status 400): check that api_base_url belongs to the token's issuer", 60.0)
    if status != 200:
        return _Failure("unavailable", f"{source}: status {status}", _retry_after(headers, _FAILURE_HOLD))
    try:
        answer = decode_json_object(body)
    except ValueError as exc:
        return _shape_error(source, f"body is not a JSON object: {exc}")
    if source == "status":
        state = answer.get("status")
        if state == "unknown":
            return _Failure("unknown", "status: the service does not know this token's state", 30.0)
        if state == "active" and answer.get("revoked") is False:
            return "active"
        if state in ("revoked", "suspended"):
            return str(state)
        return _shape_error(source, f"status {state!r}, revoked {answer.get('revoked')!r}")
    flag = answer.get("active" if source == "grants_verify" else "valid")
    if flag is True:
        return "active"
    if flag is not False:
        return _shape_error(source, "no boolean verdict")
    reason = answer.get("reason") if source == "grants_verify" else None
    if reason == "wrong_developer":
        return _Failure("configuration", "grants_verify: wrong_developer: the API key belongs to another "
                        "developer than the tokens' (only the owning developer can check them)", 60.0)
    return str(reason) if reason in ("expired", "not_found") else "revoked"


class _OnlineService:
    """One online source: builds the call, sends it (sync or async), holds off after failures."""

    def __init__(self, base_url: str, api_key: str, source: str, *, clock: Callable[[], float],
                 timeout: float, http_client: httpx.Client | None,
                 async_http_client: httpx.AsyncClient | None) -> None:
        self.source = source
        self.calls = 0
        self._base = base_url
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._clock = clock
        self._timeout = timeout
        self._user_client = http_client
        self._own_client: httpx.Client | None = None
        self._user_async_client = async_http_client
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary())
        self._ssl_context: Any = None
        self._client_lock = threading.Lock()
        self._held: tuple[float, _Failure] | None = None

    def held(self, now: float) -> _Failure | None:
        """While a 429's Retry-After (or a failure's short hold) runs: the failure, without a call."""
        held = self._held
        if held is None or now >= held[0]:
            return None
        return _Failure(held[1].kind, held[1].detail, max(1.0, held[0] - now))

    def _request(self, token: str, token_id: str, grant_id: str) -> tuple[str, str, dict[str, Any]]:
        if self.source == "status":
            return "GET", "/v1/revocations/status", {"params": {"grantId": grant_id, "jti": token_id}}
        path = "/v1/grants/verify" if self.source == "grants_verify" else "/v1/tokens/verify"
        return "POST", path, {"json": {"token": token}}

    def _conclude(self, status: int, headers: Mapping[str, str], body: bytes) -> _Result:
        result = _interpret(self.source, status, headers, body)
        if isinstance(result, _Failure) and result.kind == "unavailable":
            self._held = (self._clock() + result.retry_after, result)
        return result

    def _transport_failure(self, exc: BaseException) -> _Result:
        detail = f"{self.source}: {type(exc).__name__}: {exc}" if str(exc) else f"{self.source}: " \
                 f"{type(exc).__name__}"
        failure = _Failure("unavailable", detail, _FAILURE_HOLD)
        self._held = (self._clock() + _FAILURE_HOLD, failure)
        return failure

    def call(self, token: str, token_id: str, grant_id: str) -> _Result:
        import httpx

        method, path, extra = self._request(token, token_id, grant_id)
        self.calls += 1
        deadline = time.monotonic() + self._timeout
        try:
            with self._client().stream(method, self._base + path, headers=self._headers,
                                       timeout=self._timeout, **extra) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_BODY or time.monotonic() > deadline:
                        raise ValueError("answer too large or too slow")
                return self._conclude(response.status_code, response.headers, bytes(body))
        except (httpx.HTTPError, httpx.StreamError, OSError, ValueError) as exc:
            return self._transport_failure(exc)

    def _client(self) -> httpx.Client:
        if self._user_client is not None:
            return self._user_client
        with self._client_lock:
            if self._own_client is None:
                import httpx

                self._own_client = httpx.Client(follow_redirects=False, timeout=self._timeout)
            return self._own_client

    async def call_async(self, token: str, token_id: str, grant_id: str) -> _Result:
        import httpx

        method, path, extra = self._request(token, token_id, grant_id)
        client = await self._async_client()
        self.calls += 1
        try:
            return await asyncio.wait_for(self._exchange_async(client, method, path, extra), self._timeout)
        except (httpx.HTTPError, httpx.StreamError, OSError, ValueError, asyncio.TimeoutError) as exc:
            return self._transport_failure(exc)

    async def _exchange_async(self, client: httpx.AsyncClient, method: str, path: str,
                              extra: dict[str, Any]) -> _Result:
        async with client.stream(method, self._base + path, headers=self._headers,
                                 timeout=self._timeout, **extra) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_BODY:
                    raise ValueError("answer too large")
            return self._conclude(response.status_code, response.headers, bytes(body))

    async def _async_client(self) -> httpx.AsyncClient:
        if self._user_async_client is not None:
            return self._user_async_client
        import httpx

        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            if self._ssl_context is None:  # loading CA files is blocking I/O: once, off the loop
                self._ssl_context = await asyncio.to_thread(httpx.create_ssl_context)
            client = self._async_clients.get(loop)
            if client is None:
                client = self._async_clients[loop] = httpx.AsyncClient(
                    follow_redirects=False, timeout=self._timeout, verify=self._ssl_context)
        return client

    def close(self) -> None:
        client, self._own_client = self._own_client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
        self.close()
