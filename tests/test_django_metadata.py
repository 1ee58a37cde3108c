"""RFC 9728 protected-resource metadata at /.well-known/oauth-protected-resource."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

from tests.django_project.served import ServedIssuer

pytest_plugins = ["tests.django_project.fixtures"]
pytestmark = pytest.mark.usefixtures("grantex_settings")


@pytest.mark.parametrize(("resource", "path"), [
    ("https://api.example.com", "/.well-known/oauth-protected-resource"),
    ("https://api.example.com/v1", "/.well-known/oauth-protected-resource/v1"),
])
def test_metadata_is_served_for_the_configured_resource(
        resource: str, path: str, grantex_settings: dict[str, Any],
        served_issuer: ServedIssuer) -> None:
    value = {**grantex_settings, "RESOURCE": resource, "SCOPES_SUPPORTED": ["calendar:read"]}
    with override_settings(GRANTEX_GUARD=value):
        response = Client().get(path)
    assert response.status_code == 200
    document = response.json()
    assert document["resource"] == resource
    assert document["authorization_servers"] == [served_issuer.issuer.issuer]
    assert document["scopes_supported"] == ["calendar:read"]


def test_metadata_is_404_without_a_resource() -> None:
    assert Client().get("/.well-known/oauth-protected-resource").status_code == 404


def test_metadata_is_404_on_another_resource_path(grantex_settings: dict[str, Any]) -> None:
    value = {**grantex_settings, "RESOURCE": "https://api.example.com/v1"}
    with override_settings(GRANTEX_GUARD=value):
        assert Client().get("/.well-known/oauth-protected-resource/v2").status_code == 404


def test_metadata_stays_public_when_grants_are_required(grantex_settings: dict[str, Any]) -> None:
    value = {**grantex_settings, "RESOURCE": "https://api.example.com", "REQUIRED": True}
    with override_settings(GRANTEX_GUARD=value):
        assert Client().get("/.well-known/oauth-protected-resource").status_code == 200


def test_challenges_point_at_the_metadata(grantex_settings: dict[str, Any]) -> None:
    value = {**grantex_settings, "RESOURCE": "https://api.example.com"}
    with override_settings(GRANTEX_GUARD=value):
        response = Client().get("/sync/calendar")
    assert ('resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"'
            in response.headers["WWW-Authenticate"])
