"""Scope parsing and matching (pure: no I/O, no framework).

A scope is `resource:action[:constraint]`, split on ':' at most twice, so a
constraint may itself contain ':' (it then only matches exactly). The one
standard constraint is `max_N` ("up to N"), with the strict grammar
`max_[0-9]+(.[0-9]+)?` in ASCII digits.

Matching (DESIGN.md, "Scope semantics"):

    granted          required         satisfied when
    r:a              r:a              always
    r:a              r:a:max_N        always
    r:a:max_M        r:a:max_N        M >= N
    r:a:max_M        r:a              never (the route does not know the amount)
    r:a:<other>      r:a:<other>      identical strings only

Required scopes are written by the API's developer and must be well-formed
(`parse_required` raises ValueError otherwise). Granted scopes come from a
verified token: any non-empty string is kept, and an ill-formed one only
matches an identical string (so in practice nothing).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from .errors import InsufficientScope

__all__ = [
    "Requirement",
    "Scope",
    "ScopeSet",
    "granted_scopes",
    "parse_amount",
    "parse_base",
    "parse_required",
    "requirement",
]

_LIMIT_PREFIX = "max_"
# Checked with fullmatch BEFORE Decimal(), which also accepts exponents, NaN,
# Infinity, signs, underscores, surrounding spaces and non-ASCII digits.
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
_INFINITY = Decimal("Infinity")
# Whitespace, separators, control and invisible format characters (U+200B, U+FEFF...).
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})
_ASCII_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True, slots=True)
class Scope:
    """One parsed scope string. `limit` is set only for a well-formed `max_N` constraint."""

    text: str
    resource: str
    action: str
    constraint: str | None
    limit: Decimal | None

    @property
    def base(self) -> str:
        """`resource:action`, without the constraint."""
        return f"{self.resource}:{self.action}"

    def __str__(self) -> str:
        return self.text


def _parse_limit(constraint: str) -> Decimal | None:
    """The N of a well-formed `max_N` constraint, else None."""
    if not constraint.startswith(_LIMIT_PREFIX):
        return None
    number = constraint[len(_LIMIT_PREFIX) :]
    if _NUMBER.fullmatch(number) is None:
        return None
    return Decimal(number)


def _has_forbidden_character(text: str) -> bool:
    if text.isascii():
        return _ASCII_FORBIDDEN.search(text) is not None
    return any(ch.isspace() or unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in text)


def _checked_parts(text: object, what: str) -> list[str]:
    """The ':'-split of a developer-written scope, or ValueError naming it."""
    if not isinstance(text, str):
        raise ValueError(f"Invalid {what} {text!r}: expected a string like 'calendar:read'.")
    if not text:
        raise ValueError(f"Invalid {what} '': it is empty.")
    if _has_forbidden_character(text):
        raise ValueError(
            f"Invalid {what} {text!r}: whitespace and control characters are not allowed."
        )
    if any(not segment for segment in text.split(":")):
        raise ValueError(f"Invalid {what} {text!r}: it has an empty segment.")
    parts = text.split(":", 2)
    if len(parts) < 2:
        raise ValueError(
            f"Invalid {what} {text!r}: expected 'resource:action' or 'resource:action:constraint'."
        )
    return parts


def parse_required(text: str) -> Scope:
    """Parse a scope a route requires; ValueError (naming the string) when malformed."""
    parts = _checked_parts(text, "scope")
    resource, action = parts[0], parts[1]
    constraint = parts[2] if len(parts) == 3 else None
    limit = None
    if constraint is not None and constraint.startswith(_LIMIT_PREFIX):
        limit = _parse_limit(constraint)
        if limit is None:
            raise ValueError(
                f"Invalid scope {text!r}: a limit is 'max_' followed by digits with an "
                "optional fraction, e.g. 'max_500' or 'max_10.50'."
            )
    return Scope(text, resource, action, constraint, limit)


def parse_base(text: str) -> str:
    """Validate a bare `resource:action` (no constraint) and return it."""
    parts = _checked_parts(text, "scope base")
    if len(parts) != 2:
        raise ValueError(
            f"Invalid scope base {text!r}: expected 'resource:action' without a constraint."
        )
    return text


def _invalid_amount(amount: object, reason: str) -> ValueError:
    try:
        shown = repr(amount)
    except ValueError:  # e.g. an int beyond sys.get_int_max_str_digits()
        shown = f"<{type(amount).__name__}>"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ValueError(f"Invalid amount {shown}: {reason}.")


_AMOUNT_EXPECTED = "expected a non-negative number (int, Decimal, float or a string like '10.50')"


def parse_amount(amount: object) -> Decimal:
    """An amount as a non-negative finite Decimal; ValueError for anything else.

    Accepts int (not bool), Decimal, a str matching `[0-9]+(.[0-9]+)?` and
    float (through `repr`, i.e. its shortest round-tripping string).
    """
    value: Decimal
    if isinstance(amount, bool):
        raise _invalid_amount(amount, _AMOUNT_EXPECTED + ", not a bool")
    if isinstance(amount, int):
        value = Decimal(int(amount))
    elif isinstance(amount, Decimal):
        if not amount.is_finite():
            raise _invalid_amount(amount, "it must be finite")
        value = Decimal(amount)
    elif isinstance(amount, float):
        plain = float(amount)
        if not math.isfinite(plain):
            raise _invalid_amount(amount, "it must be finite")
        value = Decimal(repr(plain))
    elif isinstance(amount, str):
        if _NUMBER.fullmatch(amount) is None:
            raise _invalid_amount(amount, _AMOUNT_EXPECTED)
        value = Decimal(amount)
    else:
        raise _invalid_amount(amount, _AMOUNT_EXPECTED)
    if value.is_signed():
        if not value.is_zero():
            raise _invalid_amount(amount, "it must not be negative")
        value = value.copy_abs()
    return value


class ScopeSet:
    """Granted scopes indexed once: exact strings, unconstrained bases, best max_ limit per base."""

    __slots__ = ("_caps", "_exact", "_unconstrained", "granted")

    granted: tuple[str, ...]

    def __init__(self, granted: Iterable[str]) -> None:
        if isinstance(granted, str):
            raise TypeError("ScopeSet takes an iterable of scope strings, not a string.")
        kept: dict[str, None] = {}
        for item in granted:
            if not isinstance(item, str):
                raise TypeError(f"Granted scopes must be strings, got {type(item).__name__}.")
            if item:
                kept[item] = None
        self.granted = tuple(kept)
        self._exact = frozenset(self.granted)
        unconstrained: set[str] = set()
        # base -> (best limit, the granted text carrying it); first of equal limits wins.
        caps: dict[str, tuple[Decimal, str]] = {}
        for text in self.granted:
            parts = text.split(":", 2)
            if len(parts) < 2 or not parts[0] or not parts[1]:
                continue
            base = f"{parts[0]}:{parts[1]}"
            if len(parts) == 2:
                unconstrained.add(base)
                continue
            limit = _parse_limit(parts[2])
            if limit is not None and (base not in caps or limit > caps[base][0]):
                caps[base] = (limit, text)
        self._unconstrained = frozenset(unconstrained)
        self._caps = caps

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and text in self._exact

    def __iter__(self) -> Iterator[str]:
        return iter(self.granted)

    def __len__(self) -> int:
        return len(self.granted)

    def __repr__(self) -> str:
        return f"ScopeSet({list(self.granted)!r})"

    def satisfies(self, required: Scope) -> bool:
        """Whether the granted scopes cover one required scope (O(1))."""
        if required.text in self._exact:
            return True
        if required.constraint is not None and required.limit is None:
            return False  # any other constraint matches exactly
        if required.base in self._unconstrained:
            return True
        if required.limit is None:
            return False  # a capped grant never satisfies "any amount"
        cap = self._caps.get(required.base)
        return cap is not None and cap[0] >= required.limit

    def limit(self, base: str) -> Decimal | None:
        """The largest amount allowed for `resource:action`: None when not granted,
        Decimal('Infinity') when granted without a limit, else the best `max_M`."""
        base = parse_base(base)
        if base in self._unconstrained:
            return _INFINITY
        cap = self._caps.get(base)
        return None if cap is None else cap[0]

    def allows(self, base: str, amount: Decimal | int | float | str) -> bool:
        """Whether `resource:action` is granted for `amount` (validated by parse_amount)."""
        value = parse_amount(amount)
        allowed = self.limit(base)
        return allowed is not None and allowed >= value

    def explain(self, required: Scope) -> str:
        """The public reason `required` is not satisfied (only scope strings, never a token)."""
        if self.satisfies(required):
            return f"Scope '{required.text}' is granted."
        capped = self._capped_reason(required)
        if capped is not None:
            return capped
        if required.constraint is not None and required.base in self._unconstrained:
            return (
                f"Missing scope '{required.text}': the grant holds '{required.base}', but a "
                "constraint other than max_N must match exactly."
            )
        return f"Missing scope '{required.text}'."

    def _capped_reason(self, required: Scope) -> str | None:
        """Why an unsatisfied `r:a` or `r:a:max_N` fails against a capped grant, if it is one."""
        if required.constraint is not None and required.limit is None:
            return None
        cap = self._caps.get(required.base)
        if cap is None or self.satisfies(required):
            return None
        base, cap_text = required.base, cap[1]
        cap_number = cap_text.split(":", 2)[2][len(_LIMIT_PREFIX) :]
        if required.constraint is None:
            return (
                f"The grant caps {base} at {cap_number}; this route requires it without a "
                f"limit. Check the amount with grant.require('{base}', amount=...) or "
                f"require '{base}:max_N'."
            )
        wanted = required.constraint[len(_LIMIT_PREFIX) :]
        return f"The grant allows {base} up to {cap_number} ({cap_text}), not {wanted}."


def _dedupe(scopes: Iterable[Scope]) -> tuple[Scope, ...]:
    return tuple(dict.fromkeys(scopes))  # equal texts parse to equal Scopes


def _reject_bare_string(value: object, name: str) -> None:
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"{name}: pass a list of scopes, not a string (e.g. [{value!r}], not {value!r})."
        )


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a route requires: every scope of `all_of` and, if given, one of `any_of`."""

    all_of: tuple[Scope, ...] = ()
    any_of: tuple[Scope, ...] = ()

    @classmethod
    def parse(cls, all_of: Iterable[str] = (), any_of: Iterable[str] = ()) -> Requirement:
        """Parse scope strings; ValueError on any malformed one, TypeError for a bare str."""
        _reject_bare_string(all_of, "all_of")
        _reject_bare_string(any_of, "any_of")
        return cls(
            all_of=_dedupe(parse_required(text) for text in all_of),
            any_of=_dedupe(parse_required(text) for text in any_of),
        )

    def __bool__(self) -> bool:
        return bool(self.all_of or self.any_of)

    @property
    def scope_texts(self) -> tuple[str, ...]:
        """all_of then any_of (without repeats), for the WWW-Authenticate `scope=` parameter."""
        return tuple(dict.fromkeys(scope.text for scope in (*self.all_of, *self.any_of)))

    def check(self, granted: ScopeSet) -> None:
        """Return when `granted` meets the requirement, else raise InsufficientScope."""
        failing = [scope for scope in self.all_of if not granted.satisfies(scope)]
        any_met = not self.any_of or any(granted.satisfies(scope) for scope in self.any_of)
        if not failing and any_met:
            return
        if failing:
            message = granted.explain(failing[0])
        else:
            message = "Requires one of: " + ", ".join(s.text for s in self.any_of) + "."
            hint = next(
                (h for h in map(granted._capped_reason, self.any_of) if h is not None), None
            )
            if hint is not None:
                message += " " + hint
        problems = [f"{scope.text} ({granted.explain(scope)})" for scope in failing]
        if not any_met:
            problems.append("none of " + ", ".join(s.text for s in self.any_of))
        # Granted strings come from the token: repr() keeps control characters out of logs.
        shown = ", ".join(repr(text) for text in granted.granted) or "(none)"
        detail = f"Unsatisfied: {'; '.join(problems)}. Granted: {shown}."
        raise InsufficientScope(message, detail=detail, required_scopes=self.scope_texts)


@functools.lru_cache(maxsize=1024)
def granted_scopes(granted: tuple[str, ...]) -> ScopeSet:
    """The ScopeSet of a grant's scopes, shared by every token carrying the same ones.

    Tokens of one grant repeat its scopes, so indexing them once per distinct
    tuple (bounded: 1024) takes the index off the new-token path. A ScopeSet is
    never changed after it is built.
    """
    return ScopeSet(granted)


@functools.lru_cache(maxsize=1024)
def _cached_requirement(all_of: tuple[str, ...], any_of: tuple[str, ...]) -> Requirement:
    return Requirement.parse(all_of, any_of)


def requirement(all_of: Iterable[str] = (), any_of: Iterable[str] = ()) -> Requirement:
    """Requirement.parse behind a bounded cache (1024 entries), for per-call scope lists.

    Lists are accepted and converted to tuples for the cache key.
    """
    _reject_bare_string(all_of, "all_of")
    _reject_bare_string(any_of, "any_of")
    key_all, key_any = tuple(all_of), tuple(any_of)
    try:
        hash((key_all, key_any))
    except TypeError:  # unhashable items are not strings: let parse() say so
        return Requirement.parse(key_all, key_any)
    return _cached_requirement(key_all, key_any)
