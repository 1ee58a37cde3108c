"""System checks: `manage.py check` reports a bad GRANTEX_GUARD before the first request.

    grantex_guard.E001  GRANTEX_GUARD is missing
    grantex_guard.E002  GRANTEX_GUARD is not a dict
    grantex_guard.E003  a Guard option is unknown or invalid (the ValueError's text)
    grantex_guard.E004  an adapter key (REQUIRED, EXEMPT_PATHS, SCOPES_SUPPORTED, WEBHOOK_SECRET)
                        is invalid
    grantex_guard.E005  a view's required_scopes / required_scopes_map is malformed
    grantex_guard.W001  no AUDIENCE: tokens bound to an audience will be refused
    grantex_guard.W002  GrantexMiddleware comes before AuthenticationMiddleware
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.urls import URLPattern, URLResolver, get_resolver

from ..config import GuardConfig
from ..verifier import Guard
from .conf import SETTING, guard_options, read_adapter_settings
from .scopes import view_requirements

__all__ = ["check_middleware_order", "check_settings", "check_view_scopes"]

MIDDLEWARE_PATH = "grantex_guard.django.GrantexMiddleware"
_MIDDLEWARE_PATHS = (MIDDLEWARE_PATH, "grantex_guard.django.middleware.GrantexMiddleware")
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
_EXAMPLE = ('GRANTEX_GUARD = {"ISSUER": "https://grantex.dev", '
            '"AUDIENCE": "https://api.example.com"}')


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = getattr(settings, SETTING, None)
    if value is None:
        return [Error(f"settings.{SETTING} is missing.",
                      hint=f"Add e.g. {_EXAMPLE} to your settings.", id="grantex_guard.E001")]
    if not isinstance(value, Mapping):
        return [Error(f"settings.{SETTING} must be a dict, not {type(value).__name__}.",
                      hint=f"Use upper-case Guard options as keys, e.g. {_EXAMPLE}.",
                      id="grantex_guard.E002")]
    messages: list[CheckMessage] = []
    config: GuardConfig | None
    try:
        # The Guard itself, not only its GuardConfig: the revocation options are checked
        # by its parts. Building one does no I/O; it is closed at once.
        with Guard.from_settings(guard_options(value)) as guard:
            config = guard.config
    except (ValueError, TypeError) as exc:
        messages.append(Error(f"settings.{SETTING}: {exc}",
                              hint="Keys are the Guard's options in upper case "
                              "(ISSUER, JWKS_URI, AUDIENCE, LEEWAY, RESOURCE, ...).",
                              id="grantex_guard.E003"))
        config = None
    try:
        read_adapter_settings(value)
    except ValueError as exc:
        messages.append(Error(f"settings.{SETTING}: {exc}",
                              hint='e.g. "REQUIRED": True, "EXEMPT_PATHS": ["/health", "/static/"], '
                              '"WEBHOOK_SECRET": "whsec_..." (or a list while rotating).',
                              id="grantex_guard.E004"))
    if config is not None and not config.audience and config.audience_check == "on":
        messages.append(Warning(
            f"settings.{SETTING} has no AUDIENCE: tokens bound to an audience will be refused.",
            hint='Set "AUDIENCE" to this API\'s identifier (e.g. "https://api.example.com"), '
            'or "AUDIENCE_CHECK": "off" to ignore the aud claim.',
            id="grantex_guard.W001"))
    return messages


def check_middleware_order(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    ours = [index for index, path in enumerate(middleware) if path in _MIDDLEWARE_PATHS]
    if ours and _AUTH_MIDDLEWARE in middleware and ours[0] < middleware.index(_AUTH_MIDDLEWARE):
        return [Warning(
            "GrantexMiddleware comes before AuthenticationMiddleware, which then replaces "
            "the grant's request.user with the session user.",
            hint=f"Move {MIDDLEWARE_PATH!r} after {_AUTH_MIDDLEWARE!r} in MIDDLEWARE.",
            id="grantex_guard.W002")]
    return []


def check_view_scopes(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for route, view_class in _routed_view_classes():
        try:
            view_requirements(view_class)
        except (ValueError, TypeError) as exc:
            messages.append(Error(
                f"{view_class.__module__}.{view_class.__qualname__} (route {route!r}): {exc}",
                hint="Scopes are 'resource:action' or 'resource:action:constraint', e.g. "
                "'payments:initiate:max_500'.",
                id="grantex_guard.E005"))
    return messages


def _routed_view_classes() -> Iterator[tuple[str, type]]:
    try:
        patterns = get_resolver().url_patterns
    except Exception:
        return
    seen: set[type] = set()
    yield from _walk(patterns, "", seen)


def _walk(patterns: Any, prefix: str, seen: set[type]) -> Iterator[tuple[str, type]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), seen)
        elif isinstance(pattern, URLPattern):
            view_class = getattr(pattern.callback, "view_class", None) or getattr(
                pattern.callback, "cls", None)
            if isinstance(view_class, type) and view_class not in seen:
                seen.add(view_class)
                yield prefix + str(pattern.pattern), view_class
