"""Every error grantex-guard raises, rooted at one class.

    GuardError                     .code, .status, .message, .detail
    ├── TokenMissing               401  TOKEN_MISSING       Bearer realm=...
    ├── TokenInvalid               401  TOKEN_INVALID       error="invalid_token"
    │   ├── TokenExpired           401  TOKEN_EXPIRED       error="invalid_token"
    │   └── TokenRevoked           401  TOKEN_REVOKED       error="invalid_token"
    ├── ProofRequired              401  DPOP_REQUIRED       DPoP error="invalid_dpop_proof"
    ├── ProofInvalid               401  DPOP_INVALID        DPoP error="invalid_dpop_proof"
    ├── InsufficientScope          403  SCOPE_INSUFFICIENT  error="insufficient_scope"
    ├── DelegationDenied           403  DELEGATION_DENIED   error="insufficient_scope"
    └── GrantexUnavailable         503  GRANTEX_UNAVAILABLE (no challenge; Retry-After)

`message` is public: short, says what to fix, safe to send to the caller.
`detail` is for the operator (logs, `inspect`): expected vs got, which claim.
Neither ever contains the token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

__all__ = [
    "DelegationDenied",
    "GrantexUnavailable",
    "GuardError",
    "InsufficientScope",
    "ProofInvalid",
    "ProofRequired",
    "TokenExpired",
    "TokenInvalid",
    "TokenMissing",
    "TokenRevoked",
    "render_challenge",
]

DEFAULT_REALM = "grantex"
DPOP_ALGORITHMS = ("ES256", "RS256")

# RFC 6750 section 3: error_description and scope allow %x20-21 / %x23-5B / %x5D-7E only.
_UNQUOTABLE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')


def _quoted(value: str) -> str:
    return '"' + _UNQUOTABLE.sub("?", value) + '"'


def render_challenge(scheme: str, params: Sequence[tuple[str, str]]) -> str:
    """`Bearer realm="x", error="y"`: one auth-scheme with quoted parameters."""
    if not params:
        return scheme
    return scheme + " " + ", ".join(f"{name}={_quoted(value)}" for name, value in params)


class GuardError(Exception):
    """Base of every error raised while authenticating or authorising a request."""

    code: ClassVar[str] = "GUARD_ERROR"
    status: ClassVar[int] = 401
    challenge_error: ClassVar[str | None] = "invalid_token"
    default_message: ClassVar[str] = "The grant token was rejected."

    def __init__(self, message: str | None = None, *, detail: str | None = None) -> None:
        self.message = message or self.default_message
        self.detail = detail or self.message
        super().__init__(self.message)

    def __str__(self) -> str:
        if self.detail != self.message:
            return f"{self.message} ({self.detail})"
        return self.message

    def to_dict(self) -> dict[str, str]:
        """The JSON error body: `{"error": CODE, "message": TEXT}`."""
        return {"error": self.code, "message": self.message}

    def challenge_params(self) -> list[tuple[str, str]]:
        if self.challenge_error is None:
            return []
        return [("error", self.challenge_error), ("error_description", self.message)]

    def challenges(
        self, realm: str = DEFAULT_REALM, resource_metadata: str | None = None
    ) -> list[str]:
        """Each `WWW-Authenticate` challenge for this error (none for a 503)."""
        params = [("realm", realm), *self.challenge_params()]
        if resource_metadata:
            params.append(("resource_metadata", resource_metadata))
        return [render_challenge("Bearer", params)]

    def headers(
        self, realm: str = DEFAULT_REALM, resource_metadata: str | None = None
    ) -> dict[str, str]:
        """Response headers: `WWW-Authenticate` (challenges joined) or `Retry-After`."""
        challenges = self.challenges(realm, resource_metadata)
        return {"WWW-Authenticate": ", ".join(challenges)} if challenges else {}

    @property
    def www_authenticate(self) -> str | None:
        """The RFC 6750 challenge with the default realm, or None (503)."""
        return self.headers().get("WWW-Authenticate")


class TokenMissing(GuardError):
    code = "TOKEN_MISSING"
    challenge_error = None
    default_message = "A grant token is required: send 'Authorization: Bearer <token>'."


class TokenInvalid(GuardError):
    code = "TOKEN_INVALID"
    default_message = "The grant token is invalid."


class TokenExpired(TokenInvalid):
    code = "TOKEN_EXPIRED"
    default_message = "The grant token has expired: obtain a new one."


class TokenRevoked(TokenInvalid):
    code = "TOKEN_REVOKED"
    default_message = "The grant behind this token has been revoked."


class _ProofError(GuardError):
    challenge_error = "invalid_dpop_proof"

    def challenges(
        self, realm: str = DEFAULT_REALM, resource_metadata: str | None = None
    ) -> list[str]:
        dpop = [("algs", " ".join(DPOP_ALGORITHMS)), *self.challenge_params()]
        bearer = [("realm", realm)]
        if resource_metadata:
            bearer.append(("resource_metadata", resource_metadata))
        return [render_challenge("DPoP", dpop), render_challenge("Bearer", bearer)]


class ProofRequired(_ProofError):
    code = "DPOP_REQUIRED"
    default_message = "This token is bound to a key: send it as 'Authorization: DPoP' with a DPoP proof."


class ProofInvalid(_ProofError):
    code = "DPOP_INVALID"
    default_message = "The DPoP proof is invalid."


class InsufficientScope(GuardError):
    code = "SCOPE_INSUFFICIENT"
    status = 403
    challenge_error = "insufficient_scope"
    default_message = "The grant does not cover this operation."

    def __init__(
        self,
        message: str | None = None,
        *,
        detail: str | None = None,
        required_scopes: Sequence[str] = (),
    ) -> None:
        super().__init__(message, detail=detail)
        self.required_scopes = tuple(required_scopes)

    def challenge_params(self) -> list[tuple[str, str]]:
        params = super().challenge_params()
        if self.required_scopes:
            params.append(("scope", " ".join(self.required_scopes)))
        return params


class DelegationDenied(GuardError):
    code = "DELEGATION_DENIED"
    status = 403
    challenge_error = "insufficient_scope"
    default_message = "The token's delegation chain is deeper than this API allows."


class GrantexUnavailable(GuardError):
    code = "GRANTEX_UNAVAILABLE"
    status = 503
    challenge_error = None
    default_message = "Grant tokens cannot be checked right now: retry later."

    def __init__(
        self, message: str | None = None, *, detail: str | None = None, retry_after: int = 30
    ) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = max(1, int(retry_after))

    def challenges(
        self, realm: str = DEFAULT_REALM, resource_metadata: str | None = None
    ) -> list[str]:
        return []

    def headers(
        self, realm: str = DEFAULT_REALM, resource_metadata: str | None = None
    ) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
