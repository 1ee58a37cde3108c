"""The adapter's own endpoints, routed by `grantex_guard.django.urls`.

    urlpatterns = [path("", include("grantex_guard.django.urls")), ...]

- `/.well-known/oauth-protected-resource[/resource path]`: RFC 9728 metadata,
  when RESOURCE is configured;
- `/webhooks/grantex`: Grantex webhooks (`grant.revoked` goes into the guard's
  revocation store), when WEBHOOK_SECRET is configured.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from ..http import metadata_path, resource_metadata
from ..revocation import handle_webhook, webhook_headers
from .conf import adapter_settings, get_guard

__all__ = ["protected_resource_metadata", "webhook"]


@require_safe
def protected_resource_metadata(request: HttpRequest) -> JsonResponse:
    config = get_guard().config
    if not config.resource or request.path_info != metadata_path(config.resource):
        raise Http404("No protected-resource metadata here: RESOURCE is not configured.")
    document = resource_metadata(config, adapter_settings().scopes_supported)
    response = JsonResponse(document)
    response["Cache-Control"] = "public, max-age=3600"
    return response


@csrf_exempt  # a server-to-server call, authenticated by its HMAC signature
@require_POST
def webhook(request: HttpRequest) -> JsonResponse:
    """Grantex webhooks: 200 `{"received": true}`, 400 for a bad signature, timestamp or body,
    503 when the revocation store is unreachable (Grantex retries)."""
    secrets = adapter_settings().webhook_secrets
    if not secrets:
        raise Http404("No Grantex webhook here: WEBHOOK_SECRET is not configured.")
    # request.body: the raw bytes the signature covers, never parsed before it is checked.
    guard = get_guard()
    status, answer = handle_webhook(request.body, request.headers, secret=secrets,
                                    store=guard.revocation.store, now=guard.config.now())
    return JsonResponse(answer, status=status, headers=webhook_headers(status))
