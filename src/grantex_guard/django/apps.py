from __future__ import annotations

from django.apps import AppConfig
from django.core import checks

from .checks import check_middleware_order, check_settings, check_view_scopes


class GrantexGuardConfig(AppConfig):
    name = "grantex_guard.django"
    label = "grantex_guard"
    verbose_name = "Grantex guard"

    def ready(self) -> None:
        checks.register(check_settings, "grantex_guard")
        checks.register(check_middleware_order, "grantex_guard")
        checks.register(check_view_scopes, checks.Tags.urls, "grantex_guard")
