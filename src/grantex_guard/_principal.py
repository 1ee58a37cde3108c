"""GrantPrincipal: the part of `request.user` that every framework adapter shares."""

from __future__ import annotations

from typing import Literal

from .grant import Grant

__all__ = ["GrantPrincipal"]


class GrantPrincipal:
    """The human an agent acts for, identified by a verified grant.

    Framework adapters add what their auth machinery expects (Starlette's
    `BaseUser`, Django's user protocol) on top of this.
    """

    def __init__(self, grant: Grant) -> None:
        self.grant = grant

    @property
    def principal_id(self) -> str:
        return self.grant.principal_id

    @property
    def agent_did(self) -> str:
        return self.grant.agent_did

    @property
    def is_authenticated(self) -> Literal[True]:
        return True

    def has_scope(self, scope: str, amount: object = None) -> bool:
        """`grant.has(scope, amount)`: what an agent may do is its grant's scopes."""
        return self.grant.has(scope, amount)

    def __str__(self) -> str:
        return self.grant.principal_id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.principal_id!r} via {self.agent_did!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GrantPrincipal) and other.grant.token_id == self.grant.token_id

    def __hash__(self) -> int:
        return hash(self.grant.token_id)
