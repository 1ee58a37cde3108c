"""Webhook signatures (V2, legacy, rotation, replay window) and the grant.revoked handler."""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Any

import pytest

from grantex_guard import Guard, TokenRevoked
from grantex_guard.revocation import (
    MemoryRevocationStore,
    RevocationChecker,
    StoreUnavailable,
    WebhookError,
    check_webhook_secret,
    handle_webhook,
    handle_webhook_async,
    route_revocation,
    verify_webhook,
    webhook_headers,
)

from .conftest import API, NOW, FakeClock
from .fake_grantex_api import facts, signed_webhook

SECRET = "whsec_current"
OLD_SECRET = "whsec_previous"
EVENT = {"id": "evt_01", "type": "grant.revoked", "createdAt": "2027-01-15T08:00:00Z",
         "data": {"grantId": "grnt_root", "cascade": True}}


# Each call gives the timestamp; `secret=` and `legacy=True` override per call.
signed = functools.partial(signed_webhook, secret=SECRET)


def test_good_signature_gives_the_event() -> None:
    body, headers = signed(EVENT, NOW)
    event = verify_webhook(body, headers, SECRET, now=NOW)
    assert (event.id, event.type, event.data["grantId"], event.legacy_signature) == (
        "evt_01", "grant.revoked", "grnt_root", False)


def test_header_names_are_case_insensitive() -> None:
    body, headers = signed(EVENT, NOW)
    verify_webhook(body, {name.lower(): value for name, value in headers.items()}, SECRET, now=NOW)


V2, STAMP = "X-Grantex-Signature-V2", "X-Grantex-Timestamp"
REFUSALS = [
    ("bad_signature", lambda body, headers: (body, {**headers, V2: "sha256=" + "0" * 64})),
    ("bad_signature", lambda body, headers: (body + b" ", headers)),
    ("bad_signature", lambda body, headers: (body, {**headers, V2: "md5=abc"})),
    ("missing_signature", lambda body, headers: (body, {STAMP: headers[STAMP]})),
    ("missing_timestamp", lambda body, headers: (body, {V2: headers[V2]})),
    ("bad_timestamp", lambda body, headers: (body, {**headers, STAMP: "soon"})),
]


@pytest.mark.parametrize(("reason", "tamper"), REFUSALS)
def test_bad_webhook_is_refused_with_a_reason(reason: str, tamper: Any) -> None:
    body, headers = tamper(*signed(EVENT, NOW))
    with pytest.raises(WebhookError) as info:
        verify_webhook(body, headers, SECRET, now=NOW)
    assert info.value.reason == reason


@pytest.mark.parametrize(("offset", "reason"), [(-301, "stale"), (301, "future")])
def test_timestamp_outside_the_tolerance_is_refused(offset: int, reason: str) -> None:
    body, headers = signed(EVENT, NOW + offset)
    with pytest.raises(WebhookError) as info:
        verify_webhook(body, headers, SECRET, now=NOW)
    assert info.value.reason == reason


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamp_at_the_tolerance_is_accepted(offset: int) -> None:
    body, headers = signed(EVENT, NOW + offset)
    verify_webhook(body, headers, SECRET, now=NOW)


def test_legacy_signature_is_refused_unless_allowed() -> None:
    body, headers = signed(EVENT, NOW, legacy=True)
    with pytest.raises(WebhookError):
        verify_webhook(body, headers, SECRET, now=NOW)
    assert verify_webhook(body, headers, SECRET, allow_legacy=True, now=NOW).legacy_signature


def test_a_v2_signature_that_fails_is_not_rescued_by_the_legacy_one() -> None:
    body, legacy = signed(EVENT, NOW, legacy=True)
    _, v2 = signed(EVENT, NOW, secret="whsec_attacker")
    with pytest.raises(WebhookError):
        verify_webhook(body, {**legacy, **v2}, SECRET, allow_legacy=True, now=NOW)


@pytest.mark.parametrize("secret", [SECRET, OLD_SECRET])
def test_either_secret_is_accepted_during_rotation(secret: str) -> None:
    body, headers = signed(EVENT, NOW, secret=secret)
    verify_webhook(body, headers, [SECRET, OLD_SECRET], now=NOW)


def test_empty_secret_is_a_programming_error() -> None:
    body, headers = signed(EVENT, NOW)
    with pytest.raises(ValueError, match="secret"):
        verify_webhook(body, headers, [], now=NOW)


@pytest.mark.parametrize("secret", ["", [], [""], ["whsec_a", 3], b"whsec_bytes", 42, {"whsec_a"}])
def test_a_malformed_secret_is_refused_when_the_endpoint_is_declared(secret: Any) -> None:
    with pytest.raises(ValueError, match="non-empty string or a non-empty list"):
        check_webhook_secret(secret)


def test_a_secret_list_is_kept_in_order() -> None:
    assert check_webhook_secret((SECRET, OLD_SECRET)) == [SECRET, OLD_SECRET]


def test_grant_revoked_cascades_to_child_tokens(clock: FakeClock, issuer: Any, guard: Guard) -> None:
    store = MemoryRevocationStore()
    checker = RevocationChecker(issuer=issuer.issuer, api_key=None, clock=clock, store=store)
    parent = issuer.mint(["payments:initiate"], audience=API)
    child = facts(guard, issuer.mint(["payments:initiate"], audience=API, delegated_from=parent))
    event = {**EVENT, "data": {"grantId": guard.verify(parent).grant_id, "cascade": True}}
    assert handle_webhook(*signed(event, clock()), secret=SECRET, store=store, now=clock()) == (
        200, {"received": True})
    with pytest.raises(TokenRevoked):
        checker.check(**child, required=False)
    with pytest.raises(TokenRevoked):
        checker.check(**facts(guard, parent), required=False)


def test_replayed_event_is_harmless() -> None:
    store = MemoryRevocationStore()
    body, headers = signed(EVENT, NOW)
    first = handle_webhook(body, headers, secret=SECRET, store=store, now=NOW)
    again = handle_webhook(body, headers, secret=SECRET, store=store, now=NOW + 1)
    assert first == again == (200, {"received": True})
    assert len(store._grants) == 1


def test_unknown_event_type_is_acknowledged_and_ignored() -> None:
    store = MemoryRevocationStore()
    event = {"id": "evt_2", "type": "grant.created", "data": {"grantId": "grnt_new"}}
    assert handle_webhook(*signed(event, NOW), secret=SECRET, store=store, now=NOW)[0] == 200
    assert store.lookup("tok", "grnt_new", None, NOW) is None


@pytest.mark.parametrize("event", [
    {"type": "grant.revoked", "data": {"grantId": "g"}},
    {"id": "evt_3", "type": "grant.revoked", "data": {}},
    {"id": "evt_4", "type": "grant.revoked", "data": "grnt"},
])
def test_malformed_event_is_a_400(event: dict[str, Any]) -> None:
    status, body = handle_webhook(*signed(event, NOW), secret=SECRET, store=MemoryRevocationStore(), now=NOW)
    assert (status, body["reason"]) == (400, "bad_body")


def test_non_json_body_is_a_400() -> None:
    stamp = str(int(NOW))
    raw = b"not json"
    digest = hmac.new(SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    headers = {"X-Grantex-Timestamp": stamp, "X-Grantex-Signature-V2": f"sha256={digest}"}
    assert handle_webhook(raw, headers, secret=SECRET, store=MemoryRevocationStore(), now=NOW)[0] == 400


def test_bad_signature_is_a_400_and_records_nothing() -> None:
    store = MemoryRevocationStore()
    body, headers = signed(EVENT, NOW, secret="whsec_attacker")
    status, answer = handle_webhook(body, headers, secret=SECRET, store=store, now=NOW)
    assert (status, answer["reason"]) == (400, "bad_signature")
    assert store.lookup("tok", "grnt_root", None, NOW) is None


async def test_async_handler_records_the_revocation() -> None:
    store = MemoryRevocationStore()
    assert (await handle_webhook_async(*signed(EVENT, NOW), secret=SECRET, store=store, now=NOW))[0] == 200
    assert store.lookup("tok", "grnt_other", "grnt_root", NOW) == "revoked"


class UnreachableStore(MemoryRevocationStore):
    def deny(self, **kwargs: Any) -> None:
        raise StoreUnavailable("redis is down")

    async def deny_async(self, **kwargs: Any) -> None:
        raise StoreUnavailable("redis is down")


def test_an_unreachable_store_is_a_503_so_grantex_retries() -> None:
    status, answer = handle_webhook(*signed(EVENT, NOW), secret=SECRET, store=UnreachableStore(), now=NOW)
    assert (status, answer["error"]) == (503, "store_unavailable")
    assert webhook_headers(status) == {"Cache-Control": "no-store", "Retry-After": "5"}


async def test_an_unreachable_store_is_a_503_on_the_async_path() -> None:
    store = UnreachableStore()
    status, _ = await handle_webhook_async(*signed(EVENT, NOW), secret=SECRET, store=store, now=NOW)
    assert status == 503


def test_an_event_that_records_nothing_never_touches_the_store() -> None:
    event = {"id": "evt_5", "type": "grant.created", "data": {}}
    assert handle_webhook(*signed(event, NOW), secret=SECRET, store=UnreachableStore(), now=NOW)[0] == 200


@pytest.mark.parametrize("status", [200, 400])
def test_answers_other_than_503_carry_no_retry_after(status: int) -> None:
    assert webhook_headers(status) == {"Cache-Control": "no-store"}


@pytest.mark.parametrize(("setting", "error"), [(False, ValueError), ("yes", TypeError), (1, TypeError)])
def test_a_route_may_not_loosen_or_mistype_its_revocation_setting(setting: Any, error: type) -> None:
    with pytest.raises(error, match="revocation"):
        route_revocation(setting)


def test_a_route_forcing_revocation_needs_a_guard_that_can_check() -> None:
    with_key = Guard(issuer="https://grantex.dev", api_key="gx_test")
    without_key = Guard(issuer="https://grantex.dev")
    assert route_revocation(True, with_key) is True
    with pytest.raises(ValueError, match="api_key"):
        route_revocation(True, without_key)
