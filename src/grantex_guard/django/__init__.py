"""grantex-guard for Django: settings, middleware, view decorators, system checks.

    INSTALLED_APPS = [..., "grantex_guard.django"]
    MIDDLEWARE = [..., "grantex_guard.django.GrantexMiddleware"]
    GRANTEX_GUARD = {"ISSUER": "https://grantex.dev", "AUDIENCE": "https://api.example.com"}

Django REST framework classes are in `grantex_guard.django.drf`.
"""

from .authenticate import request_grant
from .conf import get_guard, reset_guard
from .decorators import require_grant, require_scopes
from .middleware import GrantexMiddleware
from .user import GrantUser

__all__ = [
    "GrantUser",
    "GrantexMiddleware",
    "get_guard",
    "request_grant",
    "require_grant",
    "require_scopes",
    "reset_guard",
]
