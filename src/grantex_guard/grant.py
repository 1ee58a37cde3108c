"""Grant: the typed, frozen view of a verified grant token that routes receive."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from typing import Any, Literal

from .scopes import (
    Requirement,
    ScopeSet,
    granted_scopes,
    parse_amount,
    parse_base,
    parse_required,
    requirement,
)

__all__ = ["Budget", "Grant", "TokenFormat"]

TokenFormat = Literal["standard", "dual", "v1"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Spending budget carried by the token: `authorization_details` (0.6) or `bdg` (v1)."""

    amount: Decimal
    currency: str | None = None


@dataclass(frozen=True, eq=False)
class Grant:
    """What a verified grant token says, in one shape for every token generation.

    Field names follow the official SDK's `VerifiedGrant` where they overlap;
    `issued_at`/`expires_at` are aware UTC datetimes here. Tests may build one
    directly (every field is a keyword) to stand in for a verified token.
    """

    token_id: str
    grant_id: str
    principal_id: str
    agent_did: str
    client_id: str | None
    developer_id: str
    scopes: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    issuer: str
    audience: tuple[str, ...]
    parent_agent_did: str | None
    parent_grant_id: str | None
    delegation_depth: int
    delegation_chain: tuple[str, ...]
    key_thumbprint: str | None
    budget: Budget | None
    authorization_details: tuple[Mapping[str, Any], ...]
    token_format: TokenFormat
    legacy_claims_used: tuple[str, ...]
    claims: Mapping[str, Any] = field(repr=False)

    @classmethod
    def _assemble(cls, fields: dict[str, Any]) -> Grant:
        """Build from already-validated fields without one `__setattr__` per field (hot path)."""
        grant = object.__new__(cls)
        grant.__dict__.update(fields)
        return grant

    @cached_property
    def scope_set(self) -> ScopeSet:
        """The granted scopes indexed for requirement checks (built on first use)."""
        return granted_scopes(self.scopes)

    @property
    def is_delegated(self) -> bool:
        return self.delegation_depth > 0

    def has(self, scope: str, amount: object = None) -> bool:
        """Whether the grant covers `scope`, or `scope` for `amount` (scope as `resource:action`)."""
        if amount is None:
            return self.scope_set.satisfies(parse_required(scope))
        return self.scope_set.allows(parse_base(scope), parse_amount(amount))

    def require(self, scope: str, amount: object = None) -> None:
        """Raise InsufficientScope (403) unless `has(scope, amount)`."""
        if amount is None:
            requirement((scope,)).check(self.scope_set)
            return
        base, value = parse_base(scope), parse_amount(amount)
        if not self.scope_set.allows(base, value):
            Requirement.parse([f"{base}:max_{value:f}"]).check(self.scope_set)

    def limit(self, scope: str) -> Decimal | None:
        """Largest amount allowed for `resource:action`: None without it, Infinity when uncapped."""
        return self.scope_set.limit(parse_base(scope))
