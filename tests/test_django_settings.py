"""settings.GRANTEX_GUARD -> one Guard per process, rebuilt when the settings change."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from grantex_guard.django import get_guard, reset_guard

pytest_plugins = ["tests.django_project.fixtures"]
pytestmark = pytest.mark.usefixtures("grantex_settings")


def test_get_guard_builds_one_guard_from_settings(grantex_settings: dict[str, Any]) -> None:
    guard = get_guard()
    assert guard is get_guard()
    assert guard.config.jwks_uri == grantex_settings["JWKS_URI"]
    assert guard.config.audience == ("https://api.example.com",)


def test_changed_settings_rebuild_the_guard(grantex_settings: dict[str, Any]) -> None:
    before = get_guard()
    with override_settings(GRANTEX_GUARD={**grantex_settings, "LEEWAY": 5}):
        during = get_guard()
    assert during is not before
    assert during.config.leeway == 5
    assert get_guard().config.leeway == 30


def test_adapter_keys_are_not_passed_to_the_guard(grantex_settings: dict[str, Any]) -> None:
    value = {**grantex_settings, "REQUIRED": True, "EXEMPT_PATHS": ["/health"],
             "SCOPES_SUPPORTED": ["calendar:read"]}
    with override_settings(GRANTEX_GUARD=value):
        assert get_guard().config.issuer == grantex_settings["ISSUER"]


def test_concurrent_first_use_builds_a_single_guard() -> None:
    reset_guard()
    start = threading.Barrier(8)
    seen: list[int] = []

    def use() -> None:
        start.wait()
        seen.append(id(get_guard()))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1


@pytest.mark.parametrize(("value", "text"), [
    (None, "is missing"), ("https://grantex.dev", "must be a dict"),
    ({"ISSUER": "https://grantex.dev", "NOPE": 1}, "unknown grantex-guard setting")])
def test_bad_settings_raise_improperly_configured(value: Any, text: str) -> None:
    with override_settings(GRANTEX_GUARD=value), pytest.raises(ImproperlyConfigured, match=text):
        get_guard()
