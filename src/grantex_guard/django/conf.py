"""settings.GRANTEX_GUARD: the adapter's own keys, and the one Guard per process.

    GRANTEX_GUARD = {
        "ISSUER": "https://grantex.dev",
        "AUDIENCE": "https://api.example.com",
        # any other Guard option, upper-case (JWKS_URI, LEEWAY, RESOURCE, ...)
        "REQUIRED": False,          # middleware: every request needs a valid grant
        "EXEMPT_PATHS": ["/health", "/static/"],   # exact, or a prefix ending in "/"
        "SCOPES_SUPPORTED": ["calendar:read"],     # advertised in RFC 9728 metadata
        "WEBHOOK_SECRET": "whsec_...",  # or a list while rotating: enables the webhook view
    }
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from ..http import METADATA_PATH
from ..revocation import check_webhook_secret
from ..verifier import Guard

__all__ = ["ADAPTER_KEYS", "SETTING", "AdapterSettings", "adapter_settings", "get_guard",
           "guard_options", "raw_settings", "reset_guard"]

SETTING = "GRANTEX_GUARD"
ADAPTER_KEYS = frozenset({"REQUIRED", "EXEMPT_PATHS", "SCOPES_SUPPORTED", "WEBHOOK_SECRET"})


@dataclass(frozen=True)
class AdapterSettings:
    """What the Django adapter itself reads from GRANTEX_GUARD (the rest goes to the Guard)."""

    required: bool = False
    exempt_paths: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    webhook_secrets: tuple[str, ...] = ()  # empty: the webhook view answers 404

    def is_exempt(self, path: str) -> bool:
        if path.startswith(METADATA_PATH):  # RFC 9728 metadata is public by definition
            return True
        return any(
            path == entry or (entry.endswith("/") and path.startswith(entry))
            for entry in self.exempt_paths
        )


def raw_settings() -> Mapping[str, Any]:
    """settings.GRANTEX_GUARD, or ImproperlyConfigured (`manage.py check` says so earlier)."""
    value = getattr(settings, SETTING, None)
    if value is None:
        raise ImproperlyConfigured(f"settings.{SETTING} is missing: see `manage.py check`.")
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict, got {type(value).__name__}.")
    return value


def guard_options(value: Mapping[str, Any]) -> dict[str, Any]:
    """The Guard's part of the settings dict: everything but the adapter's keys."""
    return {key: item for key, item in value.items() if key not in ADAPTER_KEYS}


def read_adapter_settings(value: Mapping[str, Any]) -> AdapterSettings:
    """The adapter's keys, validated; ValueError saying which one is wrong."""
    required = value.get("REQUIRED", False)
    if not isinstance(required, bool):
        raise ValueError(f"REQUIRED must be True or False, got {required!r}")
    exempt = _string_list(value, "EXEMPT_PATHS")
    bad_paths = [path for path in exempt if not path.startswith("/")]
    if bad_paths:
        raise ValueError(f"EXEMPT_PATHS entries must be paths starting with '/', got {bad_paths!r}")
    return AdapterSettings(required, exempt, _string_list(value, "SCOPES_SUPPORTED"),
                           _webhook_secrets(value))


def _webhook_secrets(value: Mapping[str, Any]) -> tuple[str, ...]:
    secret = value.get("WEBHOOK_SECRET")
    if secret is None:
        return ()
    try:
        return tuple(check_webhook_secret(secret))
    except ValueError:  # the message never repeats the value: it is a secret
        raise ValueError("WEBHOOK_SECRET must be a non-empty string or a non-empty list of them "
                         f"(several while rotating), got a {type(secret).__name__}") from None


def _string_list(value: Mapping[str, Any], key: str) -> tuple[str, ...]:
    items = value.get(key, ())
    if isinstance(items, str) or not isinstance(items, (list, tuple)) or not all(
        isinstance(item, str) and item for item in items
    ):
        raise ValueError(f"{key} must be a list of non-empty strings, got {items!r}")
    return tuple(items)


class _GuardHolder:
    """Builds the Guard on first use; forgets it when the settings change (tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._guard: Guard | None = None
        self._adapter: AdapterSettings | None = None

    def guard(self) -> Guard:
        guard = self._guard
        if guard is None:
            with self._lock:
                if self._guard is None:
                    self._guard = _build_guard()
                guard = self._guard
        return guard

    def adapter(self) -> AdapterSettings:
        adapter = self._adapter
        if adapter is None:
            try:
                adapter = read_adapter_settings(raw_settings())
            except ValueError as exc:
                raise ImproperlyConfigured(f"settings.{SETTING}: {exc}") from exc
            self._adapter = adapter
        return adapter

    def reset(self) -> None:
        with self._lock:
            old, self._guard, self._adapter = self._guard, None, None
        if old is not None:
            old.close()


def _build_guard() -> Guard:
    try:
        return Guard.from_settings(guard_options(raw_settings()))
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"settings.{SETTING}: {exc}") from exc


_holder = _GuardHolder()


def get_guard() -> Guard:
    """The process's Guard, built from settings.GRANTEX_GUARD on first use. Thread-safe."""
    return _holder.guard()


def adapter_settings() -> AdapterSettings:
    """REQUIRED, EXEMPT_PATHS and SCOPES_SUPPORTED from settings.GRANTEX_GUARD."""
    return _holder.adapter()


def reset_guard() -> None:
    """Forget the Guard and adapter settings; the next request rebuilds them."""
    _holder.reset()


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        reset_guard()
