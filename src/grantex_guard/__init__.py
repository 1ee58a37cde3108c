"""grantex-guard: verify Grantex grant tokens in any Python API.

    from grantex_guard import Guard
    guard = Guard(issuer="https://grantex.dev", audience="https://api.example.com")
    grant = guard.verify(token, scopes=["calendar:read"])

Framework adapters live in `grantex_guard.starlette`, `grantex_guard.fastapi`,
`grantex_guard.django` and `grantex_guard.flask`; test helpers in
`grantex_guard.testing`.
"""

from .errors import (
    DelegationDenied,
    GrantexUnavailable,
    GuardError,
    InsufficientScope,
    ProofInvalid,
    ProofRequired,
    TokenExpired,
    TokenInvalid,
    TokenMissing,
    TokenRevoked,
)
from .grant import Budget, Grant
from .scopes import Requirement, Scope, ScopeSet
from .verifier import Guard

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "DelegationDenied",
    "Grant",
    "GrantexUnavailable",
    "Guard",
    "GuardError",
    "InsufficientScope",
    "ProofInvalid",
    "ProofRequired",
    "Requirement",
    "Scope",
    "ScopeSet",
    "TokenExpired",
    "TokenInvalid",
    "TokenMissing",
    "TokenRevoked",
    "__version__",
]
