"""`path("", include("grantex_guard.django.urls"))`: the RFC 9728 metadata and webhook routes."""

from __future__ import annotations

from django.urls import URLPattern, path, re_path

from .views import protected_resource_metadata, webhook

app_name = "grantex_guard"

urlpatterns: list[URLPattern] = [
    # The document's path is derived from RESOURCE at request time (settings may change).
    re_path(r"^\.well-known/oauth-protected-resource(?:/.*)?$", protected_resource_metadata,
            name="protected-resource-metadata"),
    # Answers 404 until WEBHOOK_SECRET is set; GrantexMiddleware never authenticates it.
    path("webhooks/grantex", webhook, name="webhook"),
]
