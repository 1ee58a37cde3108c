"""request.user for a grant: a GrantUser, built without touching the database."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from grantex_guard.django import GrantUser, get_guard
from tests.django_project.served import API, ServedIssuer
from tests.matrix import GRANTED

pytest_plugins = ["tests.django_project.fixtures"]
pytestmark = pytest.mark.usefixtures("grantex_settings")


@pytest.mark.django_db
@pytest.mark.usefixtures("middleware_mode")
def test_grant_user_needs_no_database_query(served_issuer: ServedIssuer,
                                            django_assert_num_queries: Any) -> None:
    token = served_issuer.issuer.mint(GRANTED, audience=API)
    with django_assert_num_queries(0):
        response = Client().get("/sync/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.json() == {
        "is_authenticated": True, "is_anonymous": False, "principal_id": "user_test",
        "agent_did": "did:grantex:ag_LOCALAGENT", "pk": None, "is_staff": False,
        "is_superuser": False, "has_perm": False, "type": "GrantUser",
    }


def test_grant_user_exposes_the_grant(served_issuer: ServedIssuer) -> None:
    grant = get_guard().verify(served_issuer.issuer.mint(GRANTED, audience=API))
    user = GrantUser(grant)
    assert user.grant is grant
    assert (user.id, user.get_username(), str(user)) == (None, "user_test", "user_test")
    assert user.has_scope("payments:initiate", amount=500)
    assert not user.has_scope("payments:initiate", amount=501)
    assert user.get_all_permissions() == set()
    with pytest.raises(NotImplementedError):
        user.save()
