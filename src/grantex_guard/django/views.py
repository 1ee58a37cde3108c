"""RFC 9728: the protected-resource metadata document, when RESOURCE is configured.

    urlpatterns = [path("", include("grantex_guard.django.urls")), ...]

serves `/.well-known/oauth-protected-resource[/resource path]`.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from ..http import metadata_path, resource_metadata
from .conf import adapter_settings, get_guard

__all__ = ["protected_resource_metadata"]


@require_safe
def protected_resource_metadata(request: HttpRequest) -> JsonResponse:
    config = get_guard().config
    if not config.resource or request.path_info != metadata_path(config.resource):
        raise Http404("No protected-resource metadata here: RESOURCE is not configured.")
    document = resource_metadata(config, adapter_settings().scopes_supported)
    response = JsonResponse(document)
    response["Cache-Control"] = "public, max-age=3600"
    return response
