"""System checks: a bad GRANTEX_GUARD is reported by `manage.py check`, with a hint."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import override_settings
from django.urls import path

pytest_plugins = ["tests.django_project.fixtures"]
pytestmark = pytest.mark.usefixtures("grantex_settings")

VALID = {"ISSUER": "https://grantex.dev", "AUDIENCE": "https://api.example.com"}
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
OURS = "grantex_guard.django.GrantexMiddleware"


def _ours(**overrides: Any) -> list[Any]:
    with override_settings(**overrides):
        return [m for m in run_checks() if m.id and m.id.startswith("grantex_guard.")]


@pytest.mark.parametrize(("value", "expected_id", "text"), [
    ([("ISSUER", "https://grantex.dev")], "grantex_guard.E002", "must be a dict"),
    ({**VALID, "LEWAY": 5}, "grantex_guard.E003", "did you mean 'LEEWAY'"),
    ({**VALID, "LEEWAY": 3000}, "grantex_guard.E003", "leeway must be between"),
    ({"AUDIENCE": "https://api.example.com"}, "grantex_guard.E003", "pass issuer="),
    ({**VALID, "AUDIENCE": 5}, "grantex_guard.E003", "settings.GRANTEX_GUARD"),
    ({**VALID, "REQUIRED": "yes"}, "grantex_guard.E004", "REQUIRED must be True or False"),
    ({**VALID, "EXEMPT_PATHS": "/health"}, "grantex_guard.E004", "EXEMPT_PATHS must be a list"),
    ({**VALID, "EXEMPT_PATHS": ["health"]}, "grantex_guard.E004", "starting with '/'"),
    ({"ISSUER": "https://grantex.dev"}, "grantex_guard.W001", "no AUDIENCE"),
    ({**VALID, "API_KEY": "gx_k", "REVOCATION_CACHE_TTL": 1000}, "grantex_guard.E003", "caps revocation"),
    ({**VALID, "API_KEY": "gx_k", "REVOCATION_SOURCE": "bogus"}, "grantex_guard.E003", "revocation_source"),
    ({**VALID, "REVOCATION_CHECK": "always"}, "grantex_guard.E003", "needs api_key"),
    ({**VALID, "API_KEY": ""}, "grantex_guard.E003", "api_key must be"),
    ({**VALID, "API_KEY": "gx_k", "HIGH_STAKES_SCOPES": "a:b"}, "grantex_guard.E003", "high_stakes_scopes"),
])
def test_malformed_settings_are_reported(value: Any, expected_id: str, text: str) -> None:
    messages = _ours(GRANTEX_GUARD=value)
    assert [m.id for m in messages] == [expected_id]
    assert text in messages[0].msg
    assert messages[0].hint


def test_missing_settings_are_reported(settings: Any) -> None:
    del settings.GRANTEX_GUARD
    messages = [m for m in run_checks() if m.id == "grantex_guard.E001"]
    assert len(messages) == 1
    assert messages[0].hint


def test_audience_check_off_silences_the_audience_warning() -> None:
    assert _ours(GRANTEX_GUARD={"ISSUER": "https://grantex.dev", "AUDIENCE_CHECK": "off"}) == []


def test_middleware_before_authentication_middleware_is_reported() -> None:
    messages = _ours(MIDDLEWARE=[OURS, AUTH])
    assert [m.id for m in messages] == ["grantex_guard.W002"]


class _BadScopesView:
    required_scopes = ("calendar:read:max_",)

    @classmethod
    def as_view(cls) -> Any:
        def view(request: Any) -> None:
            return None
        view.view_class = cls  # type: ignore[attr-defined]
        return view


urlpatterns = [path("bad", _BadScopesView.as_view())]


def test_malformed_view_scopes_are_reported() -> None:
    messages = _ours(ROOT_URLCONF=__name__)
    assert [m.id for m in messages] == ["grantex_guard.E005"]
    assert "_BadScopesView" in messages[0].msg


def test_the_test_project_passes_manage_py_check() -> None:
    out = StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()
