"""`path("", include("grantex_guard.django.urls"))`: the RFC 9728 metadata and webhook routes."""

from __future__ import annotations

from django.urls import URLPattern, path, re_path

from .views import protected_resource_metadata, webhook

app_name = "grantex_guard"
WEBHOOK_ROUTE = "webhooks/grantex"

urlpatterns: list[URLPattern] = [
    # The document's path is derived from RESOURCE at request time (settings may change).
    re_path(r"^\.well-known/oauth-protected-resource(?:/.*)?$", protected_resource_metadata,
            name="protected-resource-metadata"),
    # Answers 404 until WEBHOOK_SECRET is set; GrantexMiddleware never authenticates it.
    path(WEBHOOK_ROUTE, webhook, name="webhook"),
]
