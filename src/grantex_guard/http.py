"""Framework-neutral HTTP edges that every adapter shares.

- `read_credentials`: the token (and DPoP proof) from request headers.
- `error_response`: a GuardError as status, headers and JSON body.
- `resource_metadata`: the RFC 9728 protected-resource document.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from .config import GuardConfig
from .errors import GuardError, ProofInvalid, TokenInvalid, TokenMissing

__all__ = [
    "METADATA_PATH",
    "Credentials",
    "ErrorResponse",
    "error_response",
    "metadata_path",
    "metadata_url",
    "read_credentials",
    "request_url",
    "resource_metadata",
]

METADATA_PATH = "/.well-known/oauth-protected-resource"
_SCHEMES = {"bearer": "Bearer", "dpop": "DPoP"}


class Credentials(NamedTuple):
    """What the client presented: `scheme` is "Bearer" or "DPoP"."""

    scheme: str
    token: str
    dpop_proof: str | None = None

    @property
    def proof(self) -> str | None:
        """The DPoP proof to check: only a token sent with the DPoP scheme carries one.

        A key-bound token sent as `Bearer` therefore fails with DPOP_REQUIRED,
        which tells the client to use the DPoP scheme (RFC 9449 section 7.1).
        """
        return self.dpop_proof if self.scheme == "DPoP" else None


def read_credentials(authorization: str | None, dpop: str | Sequence[str] | None = None) -> Credentials:
    """Parse `Authorization: Bearer|DPoP <token>`; TokenMissing when there is none.

    The scheme is case-insensitive and surrounding whitespace is tolerated.
    Another scheme (Basic, ...) counts as no grant token. `dpop` is the DPoP
    header, or every value of it where the framework can list repeated headers.
    """
    if authorization is None or not authorization.strip():
        raise TokenMissing()
    scheme, _, rest = authorization.strip().partition(" ")
    canonical = _SCHEMES.get(scheme.lower())
    if canonical is None:
        raise TokenMissing(detail=f"Authorization uses the {scheme[:20]!r} scheme, not Bearer or DPoP")
    token = rest.strip()
    if not token:
        raise TokenInvalid("The Authorization header has no token after the scheme.")
    if len(token.split()) != 1:
        raise TokenInvalid("The grant token is malformed.", detail="token contains whitespace")
    return Credentials(canonical, token, _single_proof(dpop))


def _single_proof(dpop: str | Sequence[str] | None) -> str | None:
    """RFC 9449 4.3: at most one DPoP header. Servers join repeated headers with commas,
    which a compact JWS never contains."""
    if not dpop:
        return None
    values = [dpop] if isinstance(dpop, str) else list(dpop)
    if len(values) > 1 or "," in values[0]:
        raise ProofInvalid("Send exactly one DPoP header.", detail="several DPoP headers")
    return values[0].strip() or None


def extracted_credentials(token: str, dpop: str | Sequence[str] | None) -> Credentials:
    """A token read by a custom extractor (a cookie, another header): it has no scheme,
    so a DPoP proof alongside it is what makes it a DPoP presentation."""
    proof = _single_proof(dpop)
    return Credentials("DPoP" if proof else "Bearer", token, proof)


def request_url(url: str, header: Callable[[str], str | None], config: GuardConfig) -> str:
    """The URL the client addressed, which a DPoP proof's `htu` must name.

    Behind a proxy the server sees another scheme and host: `public_base_url`
    replaces them (its path, if any, prefixes the request path), or, only
    with `trust_forwarded_headers=True`, `Forwarded` / `X-Forwarded-Proto` and
    `X-Forwarded-Host` do. Untrusted forwarded headers are ignored: a client
    could otherwise make any URL look like this one.
    """
    parts = urlsplit(url)
    if config.public_base_url:
        base = urlsplit(config.public_base_url)
        path = base.path.rstrip("/") + parts.path
        return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))
    if not config.trust_forwarded_headers:
        return url
    proto, host = _forwarded(header)
    return urlunsplit((proto or parts.scheme, host or parts.netloc, parts.path, parts.query, ""))


def _forwarded(header: Callable[[str], str | None]) -> tuple[str | None, str | None]:
    """(proto, host) from the first hop of `Forwarded`, else the X-Forwarded-* pair."""
    forwarded = header("Forwarded")
    if forwarded:
        first_hop = forwarded.split(",", 1)[0]
        pairs = {
            name.strip().lower(): value.strip().strip('"')
            for name, _, value in (item.partition("=") for item in first_hop.split(";"))
        }
        return pairs.get("proto"), pairs.get("host")
    proto = (header("X-Forwarded-Proto") or "").split(",", 1)[0].strip() or None
    host = (header("X-Forwarded-Host") or "").split(",", 1)[0].strip() or None
    return proto, host


class ErrorResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    body: dict[str, str]

    def json_bytes(self) -> bytes:
        return json.dumps(self.body).encode("utf-8")


def error_response(error: GuardError, config: GuardConfig | None = None) -> ErrorResponse:
    """Status, headers (`WWW-Authenticate` or `Retry-After`) and `{"error", "message"}` body."""
    realm = config.realm if config else "grantex"
    metadata = metadata_url(config.resource) if config and config.resource else None
    headers = error.headers(realm, metadata)
    headers["Cache-Control"] = "no-store"
    return ErrorResponse(error.status, headers, error.to_dict())


def metadata_path(resource: str) -> str:
    """RFC 9728 section 3.1: the well-known path, with the resource's path appended."""
    path = urlsplit(resource).path.rstrip("/")
    return METADATA_PATH + path


def metadata_url(resource: str) -> str:
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{metadata_path(resource)}"


def resource_metadata(config: GuardConfig, scopes_supported: Iterable[str] = ()) -> dict[str, Any]:
    """The RFC 9728 protected-resource metadata document for `config.resource`."""
    if not config.resource:
        raise ValueError("resource= (this API's identifier) must be configured to publish metadata")
    document: dict[str, Any] = {
        "resource": config.resource,
        "authorization_servers": [config.issuer],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["ES256", "RS256"],
    }
    scopes = sorted(set(scopes_supported))
    if scopes:
        document["scopes_supported"] = scopes
    return document
