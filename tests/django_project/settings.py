"""Settings of the Django project the adapter's tests run against.

GRANTEX_GUARD here is a placeholder: the tests override it (override_settings)
with a LocalIssuer whose JWKS is served on 127.0.0.1.
"""

SECRET_KEY = "django-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
ROOT_URLCONF = "tests.django_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "grantex_guard.django",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "grantex_guard.django.GrantexMiddleware",
]

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

GRANTEX_GUARD = {
    "ISSUER": "https://issuer.grantex.test",
    "AUDIENCE": "https://api.example.com",
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["grantex_guard.django.drf.GrantexAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["grantex_guard.django.drf.HasGrantScopes"],
    "EXCEPTION_HANDLER": "grantex_guard.django.drf.exception_handler",
}
