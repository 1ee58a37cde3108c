"""Grantex webhooks: signature checks and the framework-neutral `grant.revoked` handler.

    X-Grantex-Timestamp: <unix seconds>
    X-Grantex-Signature-V2: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
    X-Grantex-Signature:    sha256=<hex HMAC-SHA256(secret, raw body)>   (legacy, replayable)

Re-exported by `grantex_guard.revocation`; import it from there.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._stores import StoreUnavailable
from .jose import decode_json_object

if TYPE_CHECKING:
    from .revocation import RevocationStore

__all__ = [
    "MAX_WEBHOOK_BODY",
    "WebhookError",
    "WebhookEvent",
    "check_webhook_secret",
    "handle_webhook",
    "handle_webhook_async",
    "verify_webhook",
    "webhook_headers",
]

logger = logging.getLogger("grantex_guard.revocation")

TIMESTAMP_HEADER = "x-grantex-timestamp"
SIGNATURE_HEADER = "x-grantex-signature-v2"
LEGACY_SIGNATURE_HEADER = "x-grantex-signature"
_PREFIX = "sha256="
# A webhook names only a grant, not its tokens' lifetime: keep the grant listed this long.
DEFAULT_RETENTION = 86_400.0
MAX_WEBHOOK_BODY = 1 << 20  # adapters stop reading a body just past it


class WebhookError(ValueError):
    """A webhook that must not be trusted; `reason` is a short machine-readable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook: `type` like "grant.revoked", `data` as sent."""

    id: str
    type: str
    created_at: str | None
    data: Mapping[str, Any] = field(repr=False)
    timestamp: int | None
    legacy_signature: bool


def check_webhook_secret(secret: str | Sequence[str]) -> list[str]:
    """The secrets to try; ValueError unless a non-empty string or a non-empty list of them.

    Adapters call it when a webhook endpoint is declared, so a missing secret
    fails at start-up rather than on Grantex's first call.
    """
    chosen = [secret] if isinstance(secret, str) else secret
    if not isinstance(chosen, (list, tuple)) or not chosen or any(
        not isinstance(item, str) or not item for item in chosen
    ):
        raise ValueError("the webhook secret must be a non-empty string or a non-empty list of them")
    return list(chosen)


def _secrets(secret: str | Sequence[str]) -> list[bytes]:
    return [item.encode("utf-8") for item in check_webhook_secret(secret)]


def _matches(signature: str | None, message: bytes, secrets: list[bytes]) -> bool:
    if signature is None or not signature.startswith(_PREFIX):
        return False
    given = signature[len(_PREFIX):].strip().lower().encode("ascii", "replace")
    matched = False
    for secret in secrets:  # every secret is tried, so timing does not tell which one matched
        expected = hmac.new(secret, message, hashlib.sha256).hexdigest().encode("ascii")
        matched |= hmac.compare_digest(expected, given)
    return matched


def _timestamp(value: str | None, tolerance: float, now: float) -> int:
    if value is None:
        raise WebhookError("missing_timestamp", "X-Grantex-Timestamp is missing.")
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise WebhookError("bad_timestamp", "X-Grantex-Timestamp is not unix seconds.")
    stamp = int(text)
    if stamp < now - tolerance:
        raise WebhookError("stale", "The webhook timestamp is too old (possible replay).")
    if stamp > now + tolerance:
        raise WebhookError("future", "The webhook timestamp is in the future.")
    return stamp


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: float = 300,
    allow_legacy: bool = False,
    now: float | None = None,
) -> WebhookEvent:
    """Check a webhook's signature and timestamp and parse it; WebhookError otherwise.

    `secret` may list several secrets while one is being rotated. The legacy
    body-only signature is consulted only with `allow_legacy=True` and only
    when no V2 signature was sent.
    """
    secrets = _secrets(secret)
    if not isinstance(body, bytes) or len(body) > MAX_WEBHOOK_BODY:
        raise WebhookError("bad_body", "The webhook body must be bytes of at most 1 MiB.")
    lowered = {name.lower(): value for name, value in headers.items()}
    moment = time.time() if now is None else now
    signature = lowered.get(SIGNATURE_HEADER)
    stamp: int | None = None
    if signature is not None:
        stamp = _timestamp(lowered.get(TIMESTAMP_HEADER), tolerance, moment)
        if not _matches(signature, str(stamp).encode("ascii") + b"." + body, secrets):
            raise WebhookError("bad_signature", "The webhook signature does not match.")
        legacy = False
    elif allow_legacy and LEGACY_SIGNATURE_HEADER in lowered:
        if not _matches(lowered[LEGACY_SIGNATURE_HEADER], body, secrets):
            raise WebhookError("bad_signature", "The webhook signature does not match.")
        legacy = True
    else:
        raise WebhookError("missing_signature", "X-Grantex-Signature-V2 is missing.")
    return _parse_event(body, stamp, legacy)


def _parse_event(body: bytes, stamp: int | None, legacy: bool) -> WebhookEvent:
    try:
        document = decode_json_object(body)
    except ValueError:
        raise WebhookError("bad_body", "The webhook body is not a JSON object.") from None
    event_id, kind, data = document.get("id"), document.get("type"), document.get("data", {})
    created = document.get("createdAt")
    if not isinstance(event_id, str) or not event_id or not isinstance(kind, str) or not kind:
        raise WebhookError("bad_body", "The webhook has no string 'id' and 'type'.")
    if not isinstance(data, dict) or (created is not None and not isinstance(created, str)):
        raise WebhookError("bad_body", "The webhook 'data' must be an object.")
    return WebhookEvent(event_id, kind, created, data, stamp, legacy)


def _revoked_grant(event: WebhookEvent) -> str:
    grant_id = event.data.get("grantId")
    if not isinstance(grant_id, str) or not grant_id:
        raise WebhookError("bad_body", "grant.revoked has no string data.grantId.")
    return grant_id


@dataclass(frozen=True, slots=True)
class _Denial:
    """What a verified `grant.revoked` asks the store to record."""

    grant_id: str
    until: float
    now: float


def _denial(body: bytes, headers: Mapping[str, str], secret: str | Sequence[str], tolerance: float,
            allow_legacy: bool, retention: float, now: float | None) -> _Denial | None:
    """The denial a webhook asks for (None: nothing to record); WebhookError if untrustworthy."""
    event = verify_webhook(body, headers, secret, tolerance=tolerance, allow_legacy=allow_legacy, now=now)
    if event.type != "grant.revoked":
        return None
    moment = time.time() if now is None else now
    denial = _Denial(_revoked_grant(event), moment + retention, moment)
    logger.info("webhook %s revokes grant %s", event.id, denial.grant_id)
    return denial


def _rejected(exc: WebhookError) -> tuple[int, dict[str, Any]]:
    logger.warning("webhook refused: %s", exc)
    return 400, {"error": "invalid_webhook", "reason": exc.reason, "message": str(exc)}


def _received() -> tuple[int, dict[str, Any]]:
    return 200, {"received": True}


def _store_unavailable() -> tuple[int, dict[str, Any]]:
    return 503, {"error": "store_unavailable", "message": "The revocation store is unreachable: retry later."}


def webhook_headers(status: int) -> dict[str, str]:
    """The headers every adapter sends with `handle_webhook`'s answer."""
    return {"Cache-Control": "no-store", **({"Retry-After": "5"} if status == 503 else {})}


def handle_webhook(
    body: bytes,
    headers: Mapping[str, str],
    *,
    secret: str | Sequence[str],
    store: RevocationStore,
    tolerance: float = 300,
    allow_legacy: bool = False,
    retention: float = DEFAULT_RETENTION,
    now: float | None = None,
) -> tuple[int, dict[str, Any]]:
    """Verify a webhook and record `grant.revoked` in `store`: (status, JSON body) to answer.

    200 `{"received": true}` for a good event (unknown types ignored; a
    repeated event is harmless: recording a revocation twice changes nothing),
    400 for a bad signature, timestamp or body, 503 when the store cannot be
    reached (Grantex retries). Send `webhook_headers(status)` with it.
    """
    try:
        denial = _denial(body, headers, secret, tolerance, allow_legacy, retention, now)
        if denial is not None:
            store.deny(jti=None, grant_id=denial.grant_id, until=denial.until, now=denial.now)
    except WebhookError as exc:
        return _rejected(exc)
    except StoreUnavailable:
        return _store_unavailable()
    return _received()


async def handle_webhook_async(
    body: bytes,
    headers: Mapping[str, str],
    *,
    secret: str | Sequence[str],
    store: RevocationStore,
    tolerance: float = 300,
    allow_legacy: bool = False,
    retention: float = DEFAULT_RETENTION,
    now: float | None = None,
) -> tuple[int, dict[str, Any]]:
    """`handle_webhook` for async endpoints (the store is written without blocking)."""
    try:
        denial = _denial(body, headers, secret, tolerance, allow_legacy, retention, now)
        if denial is not None:
            await store.deny_async(jti=None, grant_id=denial.grant_id, until=denial.until, now=denial.now)
    except WebhookError as exc:
        return _rejected(exc)
    except StoreUnavailable:
        return _store_unavailable()
    return _received()
