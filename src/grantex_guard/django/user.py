"""GrantUser: `request.user` for a grant-authenticated request, never a database row."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from ..grant import Grant

__all__ = ["GrantUser"]


class GrantUser:
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

    def __init__(self, grant: Grant) -> None:
        self.grant = grant

    @property
    def principal_id(self) -> str:
        return self.grant.principal_id

    @property
    def agent_did(self) -> str:
        return self.grant.agent_did

    @property
    def username(self) -> str:
        return self.grant.principal_id

    @property
    def is_authenticated(self) -> Literal[True]:
        return True

    @property
    def is_anonymous(self) -> Literal[False]:
        return False

    def get_username(self) -> str:
        return self.grant.principal_id

    def has_scope(self, scope: str, amount: object = None) -> bool:
        """`grant.has(scope, amount)`: what an agent may do is its grant's scopes."""
        return self.grant.has(scope, amount)

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

    def __str__(self) -> str:
        return self.grant.principal_id

    def __repr__(self) -> str:
        return f"<GrantUser {self.grant.principal_id!r} via {self.grant.agent_did!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GrantUser) and other.grant.token_id == self.grant.token_id

    def __hash__(self) -> int:
        return hash(self.grant.token_id)
