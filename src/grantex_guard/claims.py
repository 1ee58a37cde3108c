"""Reading both token generations into one Grant (pure; the signature is already checked).

Shapes (wire-formats.md): (A) standard 0.6 claims under `urn:grantex:grant`,
(B) dual: (A) plus v1 aliases that must agree, (C) dual with scopes only in
`scp`, (D) v1 flat claims. Every type rule of a claim lives here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from .errors import TokenInvalid
from .grant import Budget, Grant

__all__ = ["GRANT_CLAIM", "MAX_PROTOCOL_DEPTH", "read_audience", "read_grant", "read_time"]

GRANT_CLAIM = "urn:grantex:grant"
BUDGET_TYPE = "urn:grantex:params:oauth:authorization-details:budget"
MAX_PROTOCOL_DEPTH = 10
_MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can hold

# Every claim we interpret: present with null is invalid, never "absent".
_KNOWN_CLAIMS = (
    "iss", "sub", "aud", "iat", "exp", "nbf", "jti", "client_id", "scope", "cnf", "act",
    "authorization_details", GRANT_CLAIM, "agt", "dev", "scp", "grnt", "parentAgt",
    "parentGrnt", "delegationDepth", "bdg",
)
_V1_ALIASES = ("agt", "dev", "scp", "grnt", "parentAgt", "parentGrnt", "delegationDepth", "bdg")


def _invalid(detail: str) -> TokenInvalid:
    return TokenInvalid("The grant token's claims are invalid.", detail=detail)


def _string(claims: Mapping[str, Any], name: str, where: str = "") -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        problem = "missing" if value is None else f"not a non-empty string ({type(value).__name__})"
        raise _invalid(f"claim {where}{name} is {problem}")
    return value


def _optional_string(claims: Mapping[str, Any], name: str, where: str = "") -> str | None:
    if name not in claims:
        return None
    return _string(claims, name, where)


def _integer(value: object, name: str) -> int:
    if type(value) is not int:
        raise _invalid(f"claim {name} must be an integer, got {type(value).__name__}")
    return value


def _depth(claims: Mapping[str, Any], name: str, where: str = "") -> int:
    if name not in claims:
        return 0
    depth = _integer(claims[name], where + name)
    if not 0 <= depth <= MAX_PROTOCOL_DEPTH:
        raise _invalid(f"claim {where}{name} is {depth}, outside 0..{MAX_PROTOCOL_DEPTH}")
    return depth


def _amount(value: object, name: str) -> Decimal:
    if type(value) not in (int, float):
        raise _invalid(f"claim {name} must be a number, got {type(value).__name__}")
    amount = Decimal(str(value))
    if not amount.is_finite() or amount < 0:
        raise _invalid(f"claim {name} must be a finite amount >= 0")
    return amount


def read_time(claims: Mapping[str, Any], name: str, *, required: bool) -> int | None:
    """An integer NumericDate claim (`iat`, `exp`, `nbf`)."""
    if name not in claims:
        if required:
            raise _invalid(f"claim {name} is missing")
        return None
    value = _integer(claims[name], name)
    if not 0 <= value <= _MAX_NUMERIC_DATE:
        raise _invalid(f"claim {name} is out of range")
    return value


def read_audience(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """`aud` as a tuple: a string or a list of strings; absent -> ()."""
    if "aud" not in claims:
        return ()
    aud = claims["aud"]
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list) and aud and all(isinstance(item, str) for item in aud):
        return tuple(aud)
    raise _invalid("claim aud must be a string or a non-empty list of strings")


def _scope_list(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name)
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise _invalid(f"claim {name} must be a list of non-empty strings")
    return tuple(value)


def _scope_string(claims: Mapping[str, Any]) -> tuple[str, ...]:
    value = claims["scope"]
    if not isinstance(value, str):
        raise _invalid(f"claim scope must be a string, got {type(value).__name__}")
    if not value:
        return ()
    scopes = value.split(" ")
    if not all(scopes):
        raise _invalid("claim scope has empty entries (scopes are separated by single spaces)")
    return tuple(scopes)


def _act_chain(claims: Mapping[str, Any]) -> tuple[str, ...]:
    chain: list[str] = []
    actor: object = claims.get("act")
    while actor is not None:
        if not isinstance(actor, dict):
            raise _invalid("claim act must be an object")
        if len(chain) == MAX_PROTOCOL_DEPTH:
            raise _invalid(f"act chain is deeper than {MAX_PROTOCOL_DEPTH}")
        chain.append(_string(actor, "sub", "act." * (len(chain) + 1)))
        if "act" in actor and actor["act"] is None:
            raise _invalid("claim act.act is null")
        actor = actor.get("act")
    return tuple(chain)


def _key_thumbprint(claims: Mapping[str, Any]) -> str | None:
    if "cnf" not in claims:
        return None
    cnf = claims["cnf"]
    if not isinstance(cnf, dict):
        raise _invalid("claim cnf must be an object")
    return _optional_string(cnf, "jkt", "cnf.")


def _authorization_details(claims: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    if "authorization_details" not in claims:
        return ()
    details = claims["authorization_details"]
    if not isinstance(details, list) or not all(
        isinstance(item, dict) and isinstance(item.get("type"), str) for item in details
    ):
        raise _invalid("claim authorization_details must be a list of objects with a string type")
    return tuple(MappingProxyType(item) for item in details)


def _detail_budget(details: tuple[Mapping[str, Any], ...]) -> Budget | None:
    for item in details:
        if item["type"] == BUDGET_TYPE:
            currency = item.get("currency")
            if currency is not None and not isinstance(currency, str):
                raise _invalid("budget currency must be a string")
            return Budget(_amount(item.get("amount"), "authorization_details.amount"), currency)
    return None


class _Reader:
    """Collects one token's normalised fields; each shape fills it its own way."""

    def __init__(self, claims: Mapping[str, Any]) -> None:
        self.claims = claims
        self.legacy_used: list[str] = []

    def standard(self, legacy_claims: bool) -> dict[str, Any]:
        claims = self.claims
        grant = claims[GRANT_CLAIM]
        if not isinstance(grant, dict):
            raise _invalid(f"claim {GRANT_CLAIM} must be an object")
        for name, value in grant.items():
            if value is None:
                raise _invalid(f"claim {GRANT_CLAIM}.{name} is null")
        where = GRANT_CLAIM + "."
        details = _authorization_details(claims)
        chain = _act_chain(claims)
        fields: dict[str, Any] = {
            "agent_did": _string(grant, "agent_did", where),
            "developer_id": _string(grant, "developer_id", where),
            "grant_id": _optional_string(grant, "grant_id", where),
            "parent_grant_id": _optional_string(grant, "parent_grant_id", where),
            "delegation_depth": _depth(grant, "delegation_depth", where),
            "client_id": _string(claims, "client_id"),
            "delegation_chain": chain,
            "parent_agent_did": chain[0] if chain else None,
            "authorization_details": details,
            "budget": _detail_budget(details),
        }
        if "scope" in claims:
            fields["scopes"] = _scope_string(claims)
        elif legacy_claims and "scp" in claims:
            fields["scopes"] = _scope_list(claims, "scp")
            self.legacy_used.append("scp")
        else:
            raise _invalid("claim scope is missing")
        aliases = [name for name in _V1_ALIASES if name in claims]
        if aliases and not legacy_claims:
            raise _invalid(f"v1 claims {', '.join(aliases)} present while legacy_claims=False")
        for name in aliases:
            _check_alias(name, claims, fields)
        fields["token_format"] = "dual" if aliases else "standard"
        return fields

    def v1(self) -> dict[str, Any]:
        claims = self.claims
        if "agt" not in claims or "scp" not in claims:
            missing = [name for name in ("agt", "scp") if name not in claims]
            raise _invalid(f"not a grant token: no {GRANT_CLAIM} and no v1 {', '.join(missing)}")
        self.legacy_used.extend(name for name in _V1_ALIASES if name in claims)
        parent_agent = _optional_string(claims, "parentAgt")
        return {
            "agent_did": _string(claims, "agt"),
            "developer_id": _string(claims, "dev"),
            "grant_id": _optional_string(claims, "grnt"),
            "parent_grant_id": _optional_string(claims, "parentGrnt"),
            "delegation_depth": _depth(claims, "delegationDepth"),
            "client_id": _optional_string(claims, "client_id"),
            "delegation_chain": (parent_agent,) if parent_agent else (),
            "parent_agent_did": parent_agent,
            "authorization_details": _authorization_details(claims),
            "budget": Budget(_amount(claims["bdg"], "bdg")) if "bdg" in claims else None,
            "scopes": _scope_list(claims, "scp"),
            "token_format": "v1",
        }


# What each v1 alias must equal in the standard reading (dual tokens).
_AliasPair = Callable[[Mapping[str, Any], dict[str, Any]], tuple[object, object]]
_ALIAS_VALUE: dict[str, _AliasPair] = {
    "agt": lambda claims, f: (_string(claims, "agt"), f["agent_did"]),
    "dev": lambda claims, f: (_string(claims, "dev"), f["developer_id"]),
    "grnt": lambda claims, f: (_string(claims, "grnt"), f["grant_id"]),
    "parentAgt": lambda claims, f: (_string(claims, "parentAgt"), f["parent_agent_did"]),
    "parentGrnt": lambda claims, f: (_string(claims, "parentGrnt"), f["parent_grant_id"]),
    "delegationDepth": lambda claims, f: (_depth(claims, "delegationDepth"), f["delegation_depth"]),
    "scp": lambda claims, f: (frozenset(_scope_list(claims, "scp")), frozenset(f["scopes"])),
    "bdg": lambda claims, f: (
        _amount(claims["bdg"], "bdg"),
        f["budget"].amount if f["budget"] is not None else None,
    ),
}


def _check_alias(name: str, claims: Mapping[str, Any], fields: dict[str, Any]) -> None:
    alias_value, standard_value = _ALIAS_VALUE[name](claims, fields)
    if alias_value != standard_value:
        raise _invalid(f"v1 alias {name} disagrees with its standard claim")


def _refuse_nulls(claims: Mapping[str, Any]) -> None:
    if None not in claims.values():
        return
    for name in _KNOWN_CLAIMS:
        if name in claims and claims[name] is None:
            raise _invalid(f"claim {name} is null")


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


def read_grant(claims: dict[str, Any], *, legacy_claims: bool, issued_at: int,
               expires_at: int, audience: tuple[str, ...]) -> Grant:
    """Normalise a verified payload of any shape into a Grant, or raise TokenInvalid."""
    _refuse_nulls(claims)
    reader = _Reader(claims)
    if GRANT_CLAIM in claims:
        fields = reader.standard(legacy_claims)
    elif legacy_claims:
        fields = reader.v1()
    else:
        raise _invalid(f"claim {GRANT_CLAIM} is missing (legacy_claims=False accepts standard tokens only)")
    token_id = _string(claims, "jti")
    depth, parent_grant = fields["delegation_depth"], fields["parent_grant_id"]
    if depth > 0 and parent_grant is None:
        raise _invalid(f"delegated token (depth {depth}) names no parent grant")
    if depth == 0 and parent_grant is not None:
        raise _invalid("token names a parent grant but has delegation depth 0")
    fields.update(
        token_id=token_id,
        grant_id=fields["grant_id"] or token_id,
        principal_id=_string(claims, "sub"),
        issued_at=_utc(issued_at),
        expires_at=_utc(expires_at),
        issuer=_string(claims, "iss"),
        audience=audience,
        key_thumbprint=_key_thumbprint(claims),
        legacy_claims_used=tuple(reader.legacy_used),
        claims=MappingProxyType(claims),
    )
    return Grant._assemble(fields)
