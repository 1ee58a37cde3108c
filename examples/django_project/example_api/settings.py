"""An API protected by grantex-guard.

    GRANTEX_ISSUER     the Grantex auth service to trust (default https://grantex.dev)
    GRANTEX_AUDIENCE   this API's identifier, as tokens name it in `aud`
    GRANTEX_JWKS_URI   optional: where the issuer publishes its keys
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "example_api.urls"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "grantex_guard.django",
]

MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "grantex_guard.django.GrantexMiddleware",
]

DATABASES: dict[str, dict[str, str]] = {}  # grant-authenticated requests never touch it

GRANTEX_GUARD = {
    "ISSUER": os.environ.get("GRANTEX_ISSUER", "https://grantex.dev"),
    "AUDIENCE": os.environ.get("GRANTEX_AUDIENCE", "http://127.0.0.1:8000"),
    "EXEMPT_PATHS": ["/health"],
}
if os.environ.get("GRANTEX_JWKS_URI"):
    GRANTEX_GUARD["JWKS_URI"] = os.environ["GRANTEX_JWKS_URI"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["grantex_guard.django.drf.GrantexAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["grantex_guard.django.drf.HasGrantScopes"],
    "EXCEPTION_HANDLER": "grantex_guard.django.drf.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
