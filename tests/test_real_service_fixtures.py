"""Tokens captured from a real Grantex service, verified at their recorded time.

The captures live in ../shared/fixtures (beside this checkout, when it is there)
and are copied into tests/fixtures so a checkout anywhere else runs them too.
Each case runs once, from the shared captures when they are there (else from the
copy), and the copy must then equal them byte for byte. The JWKS the service
published is served over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from grantex_guard import Guard, GuardError

from .jwks_server import JWKSServer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
IN_TREE = Path(__file__).resolve().parent / "fixtures"
CAPTURES_ROOT = SHARED if SHARED.is_dir() else IN_TREE


def _captures() -> dict[str, dict[str, Any]]:
    """Every tokens.json under CAPTURES_ROOT, by capture (its folder's name)."""
    return {path.parent.name: json.loads(path.read_text())
            for path in sorted(CAPTURES_ROOT.glob("*/tokens.json"))}


def _files(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by its path relative to `root`."""
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


CAPTURES = _captures()
CASES = [(name, case) for name, capture in CAPTURES.items() for case in capture["cases"]]


@pytest.fixture(scope="module")
def jwks_urls() -> Iterator[dict[str, str]]:
    servers = {name: JWKSServer(capture["jwks"]) for name, capture in CAPTURES.items()}
    for server in servers.values():
        server.headers["Content-Type"] = "application/json; charset=utf-8"
        server.start()
    try:
        yield {name: server.url for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()


def test_the_captures_are_found_wherever_the_checkout_is() -> None:
    assert (IN_TREE / "real-service-v1" / "tokens.json").is_file()  # runs with no ../shared
    assert "real-service-v1" in CAPTURES
    assert len(CASES) >= 10


def test_the_in_tree_copy_equals_the_shared_captures() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"no shared captures at {SHARED} (a checkout without ../shared): "
                    "the in-tree copy is what runs, with nothing to compare it to")
    shared, in_tree = _files(SHARED), _files(IN_TREE)
    assert "real-service-v1/tokens.json" in shared
    assert sorted(in_tree) == sorted(shared)  # the same files...
    changed = [name for name in shared if in_tree[name] != shared[name]]
    assert changed == []  # ...byte for byte: copy ../shared/fixtures into tests/fixtures again


@pytest.mark.parametrize(("capture", "case"), CASES, ids=[f"{name}/{case['name']}" for name, case in CASES])
def test_captured_token(capture: str, case: dict[str, Any], jwks_urls: dict[str, str]) -> None:
    guard = Guard(
        issuer=CAPTURES[capture]["issuer"],
        jwks_uri=jwks_urls[capture],
        audience=case.get("audience"),
        max_delegation_depth=case.get("max_delegation_depth", 3),
        clock=lambda: float(case["verify_at"]),
    )
    if case["expect"] == "valid":
        grant = guard.verify(case["token"])
        assert grant.token_format == "v1"
        assert grant.principal_id == "user_alice"
    else:
        with pytest.raises(GuardError) as caught:
            guard.verify(case["token"])
        assert caught.value.code == case["expect"]


def test_captured_scopes_enforce_the_payment_cap(jwks_urls: dict[str, str]) -> None:
    capture = CAPTURES["real-service-v1"]
    root = next(case for case in capture["cases"] if case["name"] == "root")
    guard = Guard(issuer=capture["issuer"], jwks_uri=jwks_urls["real-service-v1"],
                  clock=lambda: root["verify_at"])

    grant = guard.verify(root["token"], scopes=["payments:initiate:max_500"])

    assert grant.limit("payments:initiate") == 500
    assert grant.has("payments:initiate", amount=499)
    assert not grant.has("payments:initiate", amount="500.01")
