"""`path("", include("grantex_guard.django.urls"))`: the RFC 9728 metadata route."""

from __future__ import annotations

from django.urls import URLPattern, re_path

from .views import protected_resource_metadata

app_name = "grantex_guard"

urlpatterns: list[URLPattern] = [
    # The document's path is derived from RESOURCE at request time (settings may change).
    re_path(r"^\.well-known/oauth-protected-resource(?:/.*)?$", protected_resource_metadata,
            name="protected-resource-metadata"),
]
