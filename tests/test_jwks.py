"""The JWKS key cache against a real local HTTP server, with a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from grantex_guard.errors import GrantexUnavailable, TokenInvalid
from grantex_guard.jwks import KeyCache, KeySet, VerificationKey

from .conftest import NOW, FakeClock
from .jwks_server import (
    JWKSServer,
    closed_port_url,
    ec_key,
    ed25519_key,
    jwks,
    public_jwk,
    rsa_key,
)


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def ec_private() -> ec.EllipticCurvePrivateKey:
    return ec_key()


@pytest.fixture
def server(
    rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey
) -> Iterator[JWKSServer]:
    body = jwks(public_jwk(rsa_private, kid="k-rsa"), public_jwk(ec_private, kid="k-ec"))
    with JWKSServer(body) as running:
        yield running


MakeCache = Callable[..., KeyCache]


@pytest.fixture
def make_cache(server: JWKSServer, clock: FakeClock) -> Iterator[MakeCache]:
    caches: list[KeyCache] = []

    def make(url: str | None = None, **options: Any) -> KeyCache:
        cache = KeyCache(url or server.url, clock=clock, **options)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.close()


def sign_rs256(private: rsa.RSAPrivateKey, data: bytes) -> bytes:
    return private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def sign_es256(private: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


async def lookup(cache: KeyCache, driver: str) -> VerificationKey:
    """`get_key("k-rsa", "RS256")` through the sync or the async driver."""
    if driver == "sync":
        return cache.get_key("k-rsa", "RS256")
    return await cache.get_key_async("k-rsa", "RS256")


async def warm_up(cache: KeyCache, driver: str) -> None:
    if driver == "sync":
        cache.warm_up()
    else:
        await cache.warm_up_async()


def parse(*entries: dict[str, Any], max_keys: int = 128) -> KeySet:
    return KeySet.parse(jwks(*entries), source="test", max_keys=max_keys)


# -- TTL, rotation, cooldown -----------------------------------------------------------


def test_nothing_is_fetched_in_init(server: JWKSServer, make_cache: MakeCache) -> None:
    cache = make_cache()
    assert server.hits == 0
    assert cache.fetch_count == 0
    assert cache.keys is None


def test_keys_are_reused_until_ttl_then_refetched_once(
    server: JWKSServer, make_cache: MakeCache, clock: FakeClock
) -> None:
    cache = make_cache(ttl=600)
    first = cache.get_key("k-rsa", "RS256")
    clock.advance(599)
    assert cache.get_key("k-rsa", "RS256") is first
    assert cache.get_key("k-ec", "ES256").alg == "ES256"
    assert server.hits == 1
    clock.advance(1)
    cache.get_key("k-rsa", "RS256")
    cache.get_key("k-rsa", "RS256")
    assert server.hits == 2


def test_fetch_sends_identity_encoding_and_json_accept(
    server: JWKSServer, make_cache: MakeCache
) -> None:
    make_cache().get_key("k-rsa", "RS256")
    _path, headers = server.requests[0]
    lowered = {name.lower(): value for name, value in headers.items()}
    assert lowered["accept-encoding"] == "identity"
    assert lowered["accept"] == "application/json"


def test_rotated_kid_triggers_exactly_one_refetch_then_is_found(
    server: JWKSServer, make_cache: MakeCache, clock: FakeClock, rsa_private: rsa.RSAPrivateKey
) -> None:
    cache = make_cache(refresh_cooldown=30)
    cache.warm_up()
    new_private = rsa_key()
    server.body = jwks(public_jwk(new_private, kid="k-new"))
    clock.advance(30)
    key = cache.get_key("k-new", "RS256")
    assert server.hits == 2
    assert key.verify(b"data", sign_rs256(new_private, b"data"))
    assert cache.get_key("k-new", "RS256") is key
    assert server.hits == 2


def test_unknown_kid_within_cooldown_is_token_invalid_without_fetching(
    server: JWKSServer, make_cache: MakeCache, clock: FakeClock
) -> None:
    cache = make_cache(refresh_cooldown=30)
    cache.warm_up()
    clock.advance(29)
    with pytest.raises(TokenInvalid) as caught:
        cache.get_key("k-unknown", "RS256")
    assert "k-unknown" in caught.value.detail
    assert server.url in caught.value.detail
    assert server.hits == 1


def test_flood_of_random_kids_costs_at_most_one_fetch_per_cooldown(
    server: JWKSServer, make_cache: MakeCache, clock: FakeClock
) -> None:
    cache = make_cache(refresh_cooldown=30)
    cache.warm_up()
    for _ in range(1000):
        clock.advance(0.1)  # 100 s in all
        with pytest.raises(TokenInvalid):
            cache.get_key(uuid.uuid4().hex, "RS256")
    assert server.hits == 4  # the warm-up, then one fetch per 30 s cooldown: at 30, 60 and 90 s


def test_100_threads_cold_make_one_fetch(server: JWKSServer, make_cache: MakeCache) -> None:
    server.delay = 0.2
    cache = make_cache()
    barrier = threading.Barrier(100)

    def lookup() -> VerificationKey:
        barrier.wait()
        return cache.get_key("k-rsa", "RS256")

    with ThreadPoolExecutor(max_workers=100) as pool:
        keys = list(pool.map(lambda _: lookup(), range(100)))
    assert server.hits == 1
    assert len({id(key) for key in keys}) == 1


async def test_100_tasks_cold_make_one_fetch(server: JWKSServer, make_cache: MakeCache) -> None:
    server.delay = 0.2
    cache = make_cache()
    keys = await asyncio.gather(*(cache.get_key_async("k-ec", "ES256") for _ in range(100)))
    assert server.hits == 1
    assert len({id(key) for key in keys}) == 1


def test_async_lookups_work_from_several_event_loops(
    server: JWKSServer, make_cache: MakeCache, clock: FakeClock
) -> None:
    cache = make_cache(ttl=600)
    first = asyncio.run(cache.get_key_async("k-rsa", "RS256"))
    clock.advance(600)
    second = asyncio.run(cache.get_key_async("k-rsa", "RS256"))
    assert first.thumbprint == second.thumbprint
    assert server.hits == 2


# -- failures: unavailable, stale-if-error -------------------------------------------


def test_server_down_at_start_is_unavailable_and_not_retried_within_cooldown(
    make_cache: MakeCache, clock: FakeClock
) -> None:
    url = closed_port_url()
    cache = make_cache(url, refresh_cooldown=30)
    with pytest.raises(GrantexUnavailable) as caught:
        cache.get_key("k-rsa", "RS256")
    assert caught.value.retry_after == 30
    assert url in caught.value.detail
    assert caught.value.status == 503
    clock.advance(10)
    with pytest.raises(GrantexUnavailable) as again:
        cache.get_key("k-rsa", "RS256")
    assert again.value.retry_after == 20
    assert cache.fetch_count == 1
    clock.advance(20)
    with pytest.raises(GrantexUnavailable):
        cache.get_key("k-rsa", "RS256")
    assert cache.fetch_count == 2


def test_stale_keys_serve_while_refresh_fails_until_max_stale(
    server: JWKSServer, make_cache: MakeCache, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(ttl=600, refresh_cooldown=30, max_stale=3600)
    key = cache.get_key("k-rsa", "RS256")
    server.status = 500
    caplog.set_level(logging.WARNING, logger="grantex_guard")

    clock.advance(600)
    assert cache.get_key("k-rsa", "RS256") is key
    assert cache.fetch_count == 2
    clock.advance(29)
    assert cache.get_key("k-rsa", "RS256") is key
    assert cache.fetch_count == 2
    clock.advance(1)
    assert cache.get_key("k-ec", "ES256").alg == "ES256"
    assert cache.fetch_count == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("status 500" in w and "serving keys fetched" in w for w in warnings)

    clock.now = NOW + 600 + 3600
    with pytest.raises(GrantexUnavailable) as caught:
        cache.get_key("k-rsa", "RS256")
    assert "max_stale" in caught.value.detail
    assert "status 500" in caught.value.detail


def test_unknown_kid_is_unavailable_while_refresh_fails(
    server: JWKSServer, make_cache: MakeCache, clock: FakeClock
) -> None:
    cache = make_cache(ttl=600, refresh_cooldown=30)
    cache.warm_up()
    server.status = 503
    clock.advance(30)
    for _ in range(2):  # the failed refetch, then again within its cooldown
        with pytest.raises(GrantexUnavailable):
            cache.get_key("k-rotated", "RS256")
    clock.advance(600)
    with pytest.raises(GrantexUnavailable):
        cache.get_key("k-rotated", "RS256")
    assert cache.get_key("k-rsa", "RS256").alg == "RS256"  # stale, still served


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_slow_server_is_cut_off_at_timeout(
    server: JWKSServer, make_cache: MakeCache, driver: str
) -> None:
    server.delay = 1.0
    cache = make_cache(timeout=0.3)
    started = time.monotonic()
    with pytest.raises(GrantexUnavailable) as caught:
        await lookup(cache, driver)
    assert time.monotonic() - started < 0.8  # the 0.3 s timeout, and a margin
    assert "timed out after 0.3 s" in caught.value.detail


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_dripping_server_is_cut_off_at_deadline(
    server: JWKSServer, make_cache: MakeCache, driver: str
) -> None:
    server.drip = 0.02  # a few hundred bytes: seconds in all
    cache = make_cache(timeout=0.3)
    started = time.monotonic()
    with pytest.raises(GrantexUnavailable) as caught:
        await lookup(cache, driver)
    assert time.monotonic() - started < 0.8  # the 0.3 s timeout, and a margin
    assert "timed out after 0.3 s" in caught.value.detail


@pytest.fixture
async def ready_clients() -> AsyncIterator[dict[str, Any]]:
    """HTTP clients built ahead, so that a timed lookup times the fetch, not building one."""
    with httpx.Client() as client:
        async with httpx.AsyncClient() as async_client:
            yield {"http_client": client, "async_http_client": async_client}


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_headers_just_in_time_then_a_body_dripped_just_in_time_cost_one_timeout(
    server: JWKSServer, make_cache: MakeCache, ready_clients: dict[str, Any], driver: str
) -> None:
    """Every read keeps within `timeout`; the fetch as a whole still gets only `timeout`."""
    server.delay = 1.5  # the headers come well inside the read timeout...
    server.drip = 1.5  # ...then each byte of body does too
    cache = make_cache(timeout=2.0, **ready_clients)
    started = time.monotonic()
    with pytest.raises(GrantexUnavailable) as caught:
        await lookup(cache, driver)
    # Giving up at the first chunk after the deadline would mean waiting for the second
    # byte of body: delay + drip = 3.0 s at the least. One deadline: 2.0 s (the margin is
    # for a loaded machine; no single read comes near the 2 s read timeout).
    assert time.monotonic() - started < 2.6
    assert "timed out after 2 s" in caught.value.detail


@contextlib.contextmanager
def host_dripping_its_headers(interval: float) -> Iterator[str]:
    """A JWKS URL whose host sends the status line and headers one byte per `interval`."""
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"
              b'{"keys": []}')
    hang_up = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        with contextlib.suppress(OSError), listener.accept()[0] as connection:
            connection.recv(65536)
            for byte in answer:
                if hang_up.wait(interval):
                    return
                connection.sendall(bytes([byte]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/.well-known/jwks.json"
    finally:
        hang_up.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_headers_dripped_byte_by_byte_are_cut_off_at_the_deadline(
    make_cache: MakeCache, ready_clients: dict[str, Any], driver: str
) -> None:
    """No chunk of body ever arrives to check the time against: the deadline still holds."""
    with host_dripping_its_headers(interval=0.2) as url:  # ~80 bytes: 16 s of headers
        cache = make_cache(url, timeout=0.3, **ready_clients)
        started = time.monotonic()
        with pytest.raises(GrantexUnavailable) as caught:
            await lookup(cache, driver)
        assert time.monotonic() - started < 0.9  # twice the 0.3 s timeout at most, and a margin
    assert "timed out after 0.3 s" in caught.value.detail


def _redirect(server: JWKSServer) -> None:
    server.redirect = server.base_url + "/moved.json"  # a valid JWKS there


BAD_RESPONSES: list[tuple[str, Callable[[JWKSServer], None], str]] = [
    ("redirect", _redirect, "redirect refused (status 302 to http://"),
    ("status 500", lambda s: setattr(s, "status", 500), "status 500"),
    ("status 404", lambda s: setattr(s, "status", 404), "status 404"),
    ("oversized", lambda s: setattr(s, "body", {"keys": [], "pad": "x" * 70_000}),
     "body larger than 65536 bytes"),
    ("html", lambda s: s.headers.update({"Content-Type": "text/html"}), "Content-Type text/html"),
    ("no content type", lambda s: s.headers.pop("Content-Type"), "Content-Type missing"),
    ("gzip", lambda s: s.headers.update({"Content-Encoding": "gzip"}), "Content-Encoding gzip"),
    ("not json", lambda s: setattr(s, "body", b"<html>hi</html>"), "not a JSON object"),
    ("json array", lambda s: setattr(s, "body", [1, 2]), "not a JSON object"),
    ("no keys", lambda s: setattr(s, "body", {"kids": []}), 'no "keys" member'),
    ("keys not a list", lambda s: setattr(s, "body", {"keys": {"kty": "RSA"}}),
     '"keys" is a dict, not a list'),
    ("entry not an object", lambda s: setattr(s, "body", {"keys": ["k1"]}),
     "keys[0] is a str, not an object"),
    ("no usable key", lambda s: setattr(s, "body", jwks(public_jwk(ed25519_key(), kid="ed"))),
     "no usable RS256/ES256 key"),
    ("too many keys", lambda s: setattr(s, "body", {"keys": [{}] * 129}),
     "129 keys, more than max_keys=128"),
]


@pytest.mark.parametrize(("case", "break_server", "reason"), BAD_RESPONSES,
                         ids=[case for case, _, _ in BAD_RESPONSES])
@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_bad_response_is_unavailable_with_detail(
    server: JWKSServer, make_cache: MakeCache, driver: str, case: str,
    break_server: Callable[[JWKSServer], None], reason: str,
) -> None:
    break_server(server)
    cache = make_cache()
    with pytest.raises(GrantexUnavailable) as caught:
        await lookup(cache, driver)
    error = caught.value
    assert reason in error.detail
    assert server.url in error.detail
    assert error.message == GrantexUnavailable.default_message
    assert server.hits == 1  # redirects are never followed
    assert cache.keys is None


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/jwk-set+json", "application/json; charset=utf-8",
     "Application/JSON", "application/vnd.example+json"],
)
def test_json_media_types_are_accepted(
    server: JWKSServer, make_cache: MakeCache, content_type: str
) -> None:
    server.headers["Content-Type"] = content_type
    assert make_cache().get_key("k-ec", "ES256").alg == "ES256"


def test_body_exactly_at_max_bytes_is_accepted(server: JWKSServer, make_cache: MakeCache) -> None:
    size = len(server.body_bytes())
    assert make_cache(max_bytes=size).get_key("k-rsa", "RS256")
    with pytest.raises(GrantexUnavailable):
        make_cache(max_bytes=size - 1).get_key("k-rsa", "RS256")


# -- warm-up and clients ---------------------------------------------------------------


def test_warm_up_fetches_once(server: JWKSServer, make_cache: MakeCache) -> None:
    cache = make_cache()
    cache.warm_up()
    cache.get_key("k-rsa", "RS256")
    cache.get_key("k-ec", "ES256")
    assert server.hits == 1


async def test_warm_up_async_fetches_once(server: JWKSServer, make_cache: MakeCache) -> None:
    cache = make_cache()
    await cache.warm_up_async()
    await cache.get_key_async("k-rsa", "RS256")
    assert server.hits == 1


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_warm_up_failure_is_unavailable(make_cache: MakeCache, driver: str) -> None:
    url = closed_port_url()
    cache = make_cache(url)
    with pytest.raises(GrantexUnavailable) as caught:
        await warm_up(cache, driver)
    assert url in caught.value.detail
    assert cache.fetch_count == 1


def test_user_sync_client_is_used_and_not_closed(server: JWKSServer, make_cache: MakeCache) -> None:
    sent: list[httpx.Request] = []
    with httpx.Client(event_hooks={"request": [sent.append]}) as client:
        cache = make_cache(http_client=client)
        cache.get_key("k-rsa", "RS256")
        cache.close()
        assert not client.is_closed
        assert [str(request.url) for request in sent] == [server.url]


async def test_user_async_client_is_used_and_not_closed(
    server: JWKSServer, make_cache: MakeCache
) -> None:
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        cache = make_cache(async_http_client=client)
        await cache.get_key_async("k-rsa", "RS256")
        await cache.aclose()
        assert not client.is_closed
        assert [str(request.url) for request in sent] == [server.url]


def test_cache_works_again_after_close(
    server: JWKSServer, make_cache: MakeCache, clock: FakeClock
) -> None:
    cache = make_cache()
    cache.get_key("k-rsa", "RS256")
    cache.close()
    clock.advance(600)
    cache.get_key("k-rsa", "RS256")
    assert server.hits == 2


# -- key epoch -------------------------------------------------------------------------


def test_key_epoch_bumps_when_a_key_disappears_not_when_one_is_added(
    server: JWKSServer, make_cache: MakeCache, clock: FakeClock,
    rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    cache = make_cache(ttl=600, refresh_cooldown=30)
    cache.warm_up()
    assert cache.key_epoch == 0
    added = ec_key()
    old_rsa = public_jwk(rsa_private, kid="k-rsa")
    server.body = jwks(old_rsa, public_jwk(ec_private, kid="k-ec"), public_jwk(added, kid="k-add"))
    clock.advance(30)
    cache.get_key("k-add", "ES256")
    assert cache.key_epoch == 0
    server.body = jwks(old_rsa, public_jwk(added, kid="k-add"))
    clock.advance(600)
    cache.get_key("k-rsa", "RS256")
    assert cache.fetch_count == 3
    assert cache.key_epoch == 1
    with pytest.raises(TokenInvalid):
        cache.get_key("k-ec", "ES256")


def test_key_epoch_unchanged_when_an_alias_is_renamed(
    server: JWKSServer, make_cache: MakeCache, clock: FakeClock, rsa_private: rsa.RSAPrivateKey
) -> None:
    cache = make_cache(ttl=600)
    cache.warm_up()
    server.body = jwks(public_jwk(rsa_private, kid="grantex-2026-12"))
    clock.advance(600)
    cache.get_key("grantex-2026-12", "RS256")
    assert cache.key_epoch == 1  # the EC key went away
    server.body = jwks(public_jwk(rsa_private, kid="grantex-2027-01"))
    clock.advance(600)
    cache.get_key("grantex-2027-01", "RS256")
    assert cache.key_epoch == 1  # same key under a new id


# -- KeySet.parse ----------------------------------------------------------------------


def test_mixed_key_types_parse_and_each_usable_kid_is_found(
    rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    other_ec = ec_key()
    aliases = ["grantex-rs256-abc", "grantex-2026-11", "grantex-2026-10"]
    keys = parse(
        public_jwk(ed25519_key(), kid="ed"),
        public_jwk(ec_private, kid="grantex-es256-xyz"),
        *(public_jwk(rsa_private, kid=kid) for kid in aliases),
        public_jwk(ec_key(ec.SECP384R1()), kid="p384", alg="ES384"),
        public_jwk(other_ec, kid="commerce-passport-1"),
    )
    assert len(keys) == 5
    rsa_keys = {keys.find(kid, "RS256") for kid in aliases}
    assert None not in rsa_keys
    assert len({key.thumbprint for key in rsa_keys if key}) == 1
    assert keys.find("grantex-es256-xyz", "ES256") is not None
    assert keys.find("commerce-passport-1", "ES256") is not None
    assert keys.find("ed", "EdDSA") is None
    assert keys.find("p384", "ES256") is None
    sole_rsa = keys.find(None, "RS256")
    assert sole_rsa is not None
    named = keys.find("grantex-2026-11", "RS256")
    assert named is not None
    assert sole_rsa.thumbprint == named.thumbprint
    assert keys.find(None, "ES256") is None  # two distinct EC keys
    assert len(keys.thumbprints) == 3


def test_find_without_kid_takes_the_only_key_even_without_kids(
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    keys = parse(public_jwk(ec_private, kid=None, alg=None, use=None))
    key = keys.find(None, "ES256")
    assert key is not None
    assert key.kid is None
    assert keys.find(None, "RS256") is None


@pytest.mark.parametrize(("kid", "alg"), [("k-rsa", "ES256"), ("k-ec", "RS256"),
                                          ("k-rsa", "PS256"), ("K-RSA", "RS256")])
def test_lookup_never_returns_another_key(
    rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey, kid: str, alg: str
) -> None:
    keys = parse(public_jwk(rsa_private, kid="k-rsa"), public_jwk(ec_private, kid="k-ec"))
    assert keys.find(kid, alg) is None


@pytest.mark.parametrize(
    ("overrides", "why"),
    [({"use": "enc"}, "encryption key"), ({"alg": "RS512"}, "other alg"),
     ({"alg": "PS256"}, "PSS alg"), ({"kid": 7}, "non-string kid"),
     ({"n": "!!!"}, "bad base64"), ({"n": 5}, "n not a string"), ({"e": "AA"}, "e = 0")],
)
def test_unusable_rsa_entries_are_skipped_without_failing(
    rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey,
    overrides: dict[str, Any], why: str,
) -> None:
    bad = {**public_jwk(rsa_private, kid="bad"), **overrides}
    keys = parse(bad, public_jwk(ec_private, kid="k-ec"))
    assert len(keys) == 1, why
    assert keys.find("bad", "RS256") is None


@pytest.mark.parametrize(
    "overrides",
    [{"crv": "P-384"}, {"alg": "ES384"}, {"x": "AAAA"}, {"y": "A" * 43}, {"use": "enc"}],
)
def test_unusable_ec_entries_are_skipped_without_failing(
    rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey,
    overrides: dict[str, Any],
) -> None:
    bad = {**public_jwk(ec_private, kid="bad"), **overrides}
    keys = parse(bad, public_jwk(rsa_private, kid="k-rsa"))
    assert keys.find("bad", "ES256") is None
    assert keys.find("k-rsa", "RS256") is not None


def test_private_members_never_produce_a_private_key(
    rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    leaked_rsa = {**jwt.algorithms.RSAAlgorithm.to_jwk(rsa_private, as_dict=True), "kid": "r"}
    leaked_ec = {**jwt.algorithms.ECAlgorithm.to_jwk(ec_private, as_dict=True), "kid": "e"}
    assert "d" in leaked_rsa
    assert "d" in leaked_ec
    keys = parse(leaked_rsa, leaked_ec)
    rsa_entry, ec_entry = keys.find("r", "RS256"), keys.find("e", "ES256")
    assert isinstance(rsa_entry, VerificationKey)
    assert isinstance(ec_entry, VerificationKey)
    assert isinstance(rsa_entry.key, rsa.RSAPublicKey)
    assert isinstance(ec_entry.key, ec.EllipticCurvePublicKey)
    assert not isinstance(rsa_entry.key, rsa.RSAPrivateKey)
    assert not isinstance(ec_entry.key, ec.EllipticCurvePrivateKey)
    assert "private key members" in caplog.text


def test_small_rsa_key_is_skipped_with_a_warning(
    ec_private: ec.EllipticCurvePrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    keys = parse(public_jwk(rsa_key(1024), kid="small"), public_jwk(ec_private, kid="k-ec"))
    assert keys.find("small", "RS256") is None
    assert "1024 bits" in caplog.text


def test_kid_claimed_by_two_different_keys_is_dropped(
    rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    keys = parse(
        public_jwk(rsa_private, kid="same"),
        public_jwk(rsa_key(), kid="same"),
        public_jwk(rsa_private, kid="dup"),
        public_jwk(rsa_private, kid="dup"),
        public_jwk(ec_private, kid="same"),
    )
    assert keys.find("same", "RS256") is None
    assert keys.find("same", "ES256") is not None  # another alg, another entry
    assert keys.find("dup", "RS256") is not None  # the same key twice is no ambiguity
    assert keys.find(None, "RS256") is None  # two distinct RSA keys are published


def test_jwks_whose_only_kid_is_ambiguous_has_no_usable_key(
    rsa_private: rsa.RSAPrivateKey,
) -> None:
    with pytest.raises(ValueError, match="no usable"):
        parse(public_jwk(rsa_private, kid="same"), public_jwk(rsa_key(), kid="same"))


@pytest.mark.parametrize(
    ("document", "reason"),
    [(["keys"], "not a JSON object"), ({}, 'no "keys" member'),
     ({"keys": None}, "not a list"), ({"keys": [None]}, "keys[0]"),
     ({"keys": []}, "no usable"), ({"keys": [{}, {}, {}]}, "3 keys, more than max_keys=2")],
)
def test_malformed_documents_raise_value_error(document: object, reason: str) -> None:
    with pytest.raises(ValueError, match="^.*" + reason.replace("[", r"\[").replace("]", r"\]")):
        KeySet.parse(document, source="test", max_keys=2)


# -- VerificationKey.verify ------------------------------------------------------------


def test_rs256_verify_accepts_a_real_signature_and_refuses_tampering(
    rsa_private: rsa.RSAPrivateKey,
) -> None:
    key = parse(public_jwk(rsa_private, kid="k")).find("k", "RS256")
    assert key is not None
    signature = sign_rs256(rsa_private, b"header.payload")
    assert key.verify(b"header.payload", signature)
    assert not key.verify(b"header.payloaD", signature)
    assert not key.verify(b"header.payload", signature[:-1])
    assert not key.verify(b"header.payload", b"")


def test_es256_verify_accepts_a_real_signature_and_refuses_tampering(
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    key = parse(public_jwk(ec_private, kid="k")).find("k", "ES256")
    assert key is not None
    signature = sign_es256(ec_private, b"header.payload")
    der = ec_private.sign(b"header.payload", ec.ECDSA(hashes.SHA256()))
    assert key.verify(b"header.payload", signature)
    assert not key.verify(b"header.payloaD", signature)
    assert not key.verify(b"header.payload", signature[:63])
    assert not key.verify(b"header.payload", signature + b"\x00")
    assert not key.verify(b"header.payload", der)  # DER is not the JWS encoding
    assert not key.verify(b"header.payload", b"\xff" * 64)  # r, s above the group order


def test_user_clients_with_a_mock_transport_work(
    make_cache: MakeCache, rsa_private: rsa.RSAPrivateKey
) -> None:
    """In-memory responses (already read) are served like streamed ones."""
    document = jwks(public_jwk(rsa_private, kid="k-mock"))
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=document))
    with httpx.Client(transport=transport) as client:
        cache = make_cache("https://issuer.test/jwks", http_client=client)
        assert cache.get_key("k-mock", "RS256").kid == "k-mock"


async def test_user_async_clients_with_a_mock_transport_work(
    make_cache: MakeCache, rsa_private: rsa.RSAPrivateKey
) -> None:
    document = jwks(public_jwk(rsa_private, kid="k-mock"))
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=document))
    async with httpx.AsyncClient(transport=transport) as client:
        cache = make_cache("https://issuer.test/jwks", async_http_client=client)
        assert (await cache.get_key_async("k-mock", "RS256")).kid == "k-mock"
