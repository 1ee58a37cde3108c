"""Compact JWS parsing without trusting anything (pure, no I/O).

PyJWT's `decode()` spends most of its time outside the signature check, so
the hot path parses the three parts itself: strict base64url (no padding,
no foreign characters), one JSON parse per part with duplicate member names
refused, and the payload decoded only after the caller has checked the
signature over `signing_input`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import sys
from collections.abc import Mapping
from typing import Any

from .errors import TokenInvalid

__all__ = [
    "CompactToken",
    "b64url_decode",
    "b64url_encode",
    "decode_json_object",
    "jwk_thumbprint",
    "split_compact",
]

_NOT_URLSAFE = re.compile(rb"[^A-Za-z0-9_-]")
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
if sys.version_info >= (3, 11):  # strict in C; the search above already refused foreign bytes

    def _a2b(data: bytes) -> bytes:
        return binascii.a2b_base64(data, strict_mode=True)

else:
    _a2b = binascii.a2b_base64
# The last character of a canonical encoding leaves its unused low bits at zero; without
# this check 16 (or 4) spellings decode to the same bytes, so one token has many strings.
_CANONICAL_LAST = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}

# RFC 7638 section 3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(data: str | bytes) -> bytes:
    """Decode unpadded base64url; ValueError on padding or any other character."""
    raw = data.encode("ascii") if isinstance(data, str) else data
    if len(raw) % 4 == 1 or _NOT_URLSAFE.search(raw) is not None:
        raise ValueError("not unpadded base64url")
    canonical_last = _CANONICAL_LAST.get(len(raw) % 4)
    if canonical_last is not None and raw[-1] not in canonical_last:
        raise ValueError("not canonical base64url (unused bits set)")
    try:
        return _a2b(raw.translate(_TO_STANDARD) + b"=" * (-len(raw) % 4))
    except binascii.Error:
        raise ValueError("not unpadded base64url") from None


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def decode_json_object(data: bytes) -> dict[str, Any]:
    """Parse a JSON object; ValueError for anything else, duplicates and NaN included."""
    try:
        value = _DECODER.decode(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant)


class CompactToken:
    """The three parts of a compact JWS; header and payload stay encoded until asked."""

    __slots__ = ("header_b64", "payload_b64", "signature", "signing_input")

    def __init__(self, signing_input: bytes, header_b64: bytes, payload_b64: bytes,
                 signature: bytes) -> None:
        self.signing_input = signing_input
        self.header_b64 = header_b64
        self.payload_b64 = payload_b64
        self.signature = signature

    def header(self) -> dict[str, Any]:
        """Decode the JOSE header (untrusted: it only chooses the algorithm and key)."""
        try:
            return decode_json_object(b64url_decode(self.header_b64))
        except ValueError as exc:
            raise TokenInvalid("The grant token is malformed.", detail=f"header: {exc}") from None

    def payload(self) -> dict[str, Any]:
        """Decode the claims: call only after the signature has been verified."""
        try:
            return decode_json_object(b64url_decode(self.payload_b64))
        except ValueError as exc:
            raise TokenInvalid(detail=f"payload is not a base64url JSON object: {exc}") from None


def split_compact(token: object, max_bytes: int) -> CompactToken:
    """Check size and shape and decode the signature; header and payload stay encoded."""
    if not isinstance(token, str):
        raise TokenInvalid(detail=f"token must be a string, got {type(token).__name__}")
    if len(token) > max_bytes:
        raise TokenInvalid(
            "The grant token is too large.",
            detail=f"token is {len(token)} characters, above max_token_bytes={max_bytes}",
        )
    if not token.isascii():
        raise TokenInvalid(detail="token contains non-ASCII characters")
    raw = token.encode("ascii")
    parts = raw.split(b".")
    if len(parts) != 3:
        kind = "an encrypted JWE" if len(parts) == 5 else "not a compact JWS"
        raise TokenInvalid("The grant token is malformed.", detail=f"token has {len(parts)} parts: {kind}")
    header_b64, payload_b64, signature_b64 = parts
    try:
        if not header_b64 or not payload_b64:
            raise ValueError("empty header or payload")
        signature = b64url_decode(signature_b64)
    except ValueError as exc:
        raise TokenInvalid("The grant token is malformed.", detail=str(exc)) from None
    signing_input = raw[: len(header_b64) + 1 + len(payload_b64)]
    return CompactToken(signing_input, header_b64, payload_b64, signature)


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: what `cnf.jkt` holds."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise ValueError(f"cannot take the thumbprint of key type {kty!r}")
    canonical = {}
    for name in members:
        value = jwk.get(name)
        if not isinstance(value, str):
            raise ValueError(f"JWK member {name!r} must be a string")
        canonical[name] = value
    encoded = json.dumps(canonical, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return b64url_encode(hashlib.sha256(encoded).digest())
