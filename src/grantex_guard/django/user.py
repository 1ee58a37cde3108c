"""GrantUser: `request.user` for a grant-authenticated request, never a database row."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from .._principal import GrantPrincipal

__all__ = ["GrantUser"]


class GrantUser(GrantPrincipal):
    """The principal an agent acts for, as Django's auth machinery expects a user to look.

    Like AnonymousUser it has no primary key, no permissions and no groups and
    cannot be saved; unlike it, it is authenticated. Authorisation is the
    grant's scopes (`user.grant.has(...)`), not Django permissions.
    """

    pk: None = None
    id: None = None
    is_active = True
    is_staff = False
    is_superuser = False

    @property
    def username(self) -> str:
        return self.grant.principal_id

    @property
    def is_anonymous(self) -> Literal[False]:
        return False

    def get_username(self) -> str:
        return self.grant.principal_id

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False

    def has_perms(self, perm_list: Iterable[str], obj: Any = None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def get_user_permissions(self, obj: Any = None) -> set[str]:
        return set()

    def get_group_permissions(self, obj: Any = None) -> set[str]:
        return set()

    def get_all_permissions(self, obj: Any = None) -> set[str]:
        return set()

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("A GrantUser is not stored in the database.")

    def delete(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("A GrantUser is not stored in the database.")
