"""Property tests (hypothesis) over the whole pipeline and over scopes.py.

Pipeline: whatever the token (random text, random JSON signed by the real key, random
mutations of a valid token), Guard.verify either returns a Grant or raises a GuardError
with status 401 or 403: never another exception. Scopes: parse_required raises nothing
but ValueError, and matching is monotone (more or larger grants never satisfy less).
ES256 keeps signing cheap; the JWKS is served in-process, so no example touches a socket.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from grantex_guard import Grant, Guard, GuardError
from grantex_guard.scopes import Scope, ScopeSet, parse_amount, parse_required
from grantex_guard.testing import LocalIssuer, unverified_claims

from .conftest import FakeClock
from .vocabulary import B64URL, CLAIM_NAMES

API = "https://api.example.com"
CLIENT_STATUSES = {401, 403}

pipeline_settings = settings(max_examples=200, deadline=None)  # fixtures are module-scoped


@pytest.fixture(scope="module")
def issuer() -> LocalIssuer:
    return LocalIssuer("ES256", clock=FakeClock())


@pytest.fixture(scope="module")
def guard(issuer: LocalIssuer) -> Guard:
    guard = issuer.guard(audience=API)
    guard.warm_up()
    return guard


def outcome(guard: Guard, token: Any, scopes: list[str] | None = None) -> Grant | GuardError:
    """The Grant, or the GuardError; any other exception fails the property."""
    result: Grant | GuardError
    try:
        result = guard.verify(token, scopes=scopes or [])
    except GuardError as error:
        result = error
    if isinstance(result, GuardError):
        assert result.status in CLIENT_STATUSES, (result.code, result.detail)
        assert result.code
        assert result.message
    return result


# -- the pipeline --------------------------------------------------------------------------

# JSON has no NaN or infinities (the reader refuses them: tests/test_hostile_tokens.py).
json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4),
                           max_leaves=12)


@pipeline_settings
@given(token=st.text(max_size=600))
def test_random_text_is_refused_with_a_401(guard: Guard, token: str) -> None:
    result = outcome(guard, token)
    assert isinstance(result, GuardError) and result.status == 401


@pipeline_settings
@given(data=st.binary(max_size=600))
def test_random_bytes_as_a_token_are_refused_with_a_401(guard: Guard, data: bytes) -> None:
    for token in (data.decode("latin-1"), data):
        result = outcome(guard, token)
        assert isinstance(result, GuardError) and result.status == 401


@pipeline_settings
@given(parts=st.lists(st.text(alphabet=B64URL, max_size=120), min_size=1, max_size=6))
def test_random_base64url_parts_are_refused_with_a_401(guard: Guard, parts: list[str]) -> None:
    result = outcome(guard, ".".join(parts))
    assert isinstance(result, GuardError) and result.status == 401


header_members = st.fixed_dictionaries({}, optional={
    "alg": st.sampled_from(["ES256", "RS256", "none", "HS256", "es256"]) | json_values,
    "kid": json_values, "typ": st.sampled_from(["at+jwt", "JWT", "dpop+jwt", ""]) | json_values,
    "crit": json_values, "jku": json_values, "jwk": json_values, "cty": json_values,
})


@pipeline_settings
@given(header=header_members, keep_real_kid=st.booleans())
def test_random_headers_signed_by_the_real_key_never_escape(issuer: LocalIssuer, guard: Guard,
                                                          header: dict[str, Any],
                                                          keep_real_kid: bool) -> None:
    if keep_real_kid:
        header = {**header, "kid": issuer.key.kid}
    token = issuer.key.compact(header, unverified_claims(issuer.mint(audience=API)))
    result = outcome(guard, token)
    acceptable = (header.get("alg") == "ES256" and header.get("kid") in (None, issuer.key.kid)
                  and "crit" not in header
                  and str(header.get("typ", "jwt")).lower() in ("jwt", "at+jwt"))
    assert isinstance(result, Grant) == acceptable, (header, result)


@pipeline_settings
@given(changes=st.dictionaries(st.sampled_from(CLAIM_NAMES), json_values, min_size=1, max_size=4),
       removed=st.sets(st.sampled_from(CLAIM_NAMES), max_size=3),
       shape=st.sampled_from(["standard", "dual", "v1"]))
def test_random_claims_signed_by_the_real_key_never_escape(
        issuer: LocalIssuer, guard: Guard, changes: dict[str, Any], removed: set[str],
        shape: str) -> None:
    claims = unverified_claims(issuer.mint(["calendar:read", "payments:initiate:max_5"],
                                           audience=API, token_format=shape))  # type: ignore[arg-type]
    claims.update(changes)
    for name in removed:
        claims.pop(name, None)
    token = issuer.key.compact({"alg": "ES256", "kid": issuer.key.kid}, claims)
    outcome(guard, token, ["calendar:read"])


@pipeline_settings
@given(payload=json_values)
def test_any_signed_json_payload_never_escapes(issuer: LocalIssuer, guard: Guard,
                                              payload: Any) -> None:
    token = issuer.key.compact({"alg": "ES256", "kid": issuer.key.kid},
                               json.dumps(payload).encode())
    result = outcome(guard, token)
    assert isinstance(result, GuardError) and result.status == 401


@pipeline_settings
@given(data=st.data())
def test_every_mutation_of_a_valid_token_is_refused(issuer: LocalIssuer, guard: Guard,
                                                    data: st.DataObject) -> None:
    token = issuer.mint(["calendar:read"], audience=API)
    position = data.draw(st.integers(0, len(token) - 1), label="position")
    kind = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate", "swap"]))
    character = data.draw(st.sampled_from(B64URL + ".=+/ %\x00é"), label="character")
    if kind == "replace":
        mutated = token[:position] + character + token[position + 1:]
    elif kind == "insert":
        mutated = token[:position] + character + token[position:]
    elif kind == "delete":
        mutated = token[:position] + token[position + 1:]
    elif kind == "truncate":
        mutated = token[:position]
    else:
        other = data.draw(st.integers(0, len(token) - 1), label="other")
        chars = list(token)
        chars[position], chars[other] = chars[other], chars[position]
        mutated = "".join(chars)
    assume(mutated != token)
    result = outcome(guard, mutated)
    assert isinstance(result, GuardError) and result.status == 401, (kind, position, character)


@pipeline_settings
@given(extra=st.text(alphabet=B64URL, min_size=1, max_size=8))
def test_appending_to_any_part_is_refused(issuer: LocalIssuer, guard: Guard, extra: str) -> None:
    header, payload, signature = issuer.mint(audience=API).split(".")
    for token in (f"{header}{extra}.{payload}.{signature}", f"{header}.{payload}{extra}.{signature}",
                  f"{header}.{payload}.{signature}{extra}"):
        result = outcome(guard, token)
        assert isinstance(result, GuardError) and result.status == 401


@pipeline_settings
@given(scopes=st.lists(st.text(min_size=1, max_size=20).filter(lambda s: " " not in s),
                       max_size=5),
       required=st.sampled_from(["calendar:read", "payments:initiate:max_100", "a:b:c"]))
def test_random_granted_scopes_give_a_grant_or_a_403(issuer: LocalIssuer, guard: Guard,
                                                     scopes: list[str], required: str) -> None:
    result = outcome(guard, issuer.mint(scopes, audience=API), [required])
    if isinstance(result, GuardError):
        assert result.status == 403 or result.code == "TOKEN_INVALID"


# -- scopes.py ---------------------------------------------------------------------------

scope_alphabet = st.sampled_from([*"ab:_.-019", "max_", "max_1", "\u0430", " ", "e", "\x00"])
scope_like = st.lists(scope_alphabet, max_size=12).map("".join)
limits = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=1000, deadline=None)
@given(text=st.text(max_size=40) | scope_like)
def test_parse_required_raises_only_value_error(text: str) -> None:
    try:
        scope = parse_required(text)
    except ValueError:
        return
    assert scope.text == text and f"{scope.resource}:{scope.action}" == scope.base


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.decimals(),
                       st.booleans(), st.none(), st.binary(max_size=4)))
def test_parse_amount_raises_only_value_error(value: object) -> None:
    try:
        amount = parse_amount(value)
    except ValueError:
        return
    assert amount.is_finite() and amount >= 0


# Well-formed scopes over a few names, so granted and required scopes often share a base.
scope_names = (st.sampled_from(["r", "a", "calendar", "read"])
               | st.text(alphabet="ab_.-019\u0430", min_size=1, max_size=3))
constraints = (limits.map(lambda limit: f"max_{limit}")
               | st.sampled_from(["max_5", "max_10.50", "maxi", "eu", "eu:west", "\u0430"]))
valid_scopes = st.builds(lambda resource, action, constraint: f"{resource}:{action}"
                         + (f":{constraint}" if constraint is not None else ""),
                         scope_names, scope_names, st.none() | constraints)
granted_like = st.text(max_size=20) | scope_like | valid_scopes


def covering_grant(scope: Scope, how: str) -> str:
    """A granted scope that alone satisfies `scope`: itself, its bare base, or a higher cap."""
    if how == "its base" and (scope.constraint is None or scope.limit is not None):
        return scope.base
    if how == "a higher cap" and scope.limit is not None:
        return f"{scope.base}:max_{scope.limit + 1}"
    return scope.text


@settings(max_examples=500, deadline=None)
@given(granted=st.lists(granted_like, max_size=6), extra=st.lists(granted_like, max_size=4),
       required=valid_scopes,
       cover=st.sampled_from(["itself", "its base", "a higher cap", "nothing more"]))
def test_more_granted_scopes_never_satisfy_less(granted: list[str], extra: list[str],
                                                 required: str, cover: str) -> None:
    scope = parse_required(required)  # valid_scopes makes only well-formed scopes
    if cover != "nothing more":  # most examples: the grant covers the requirement
        granted = [*granted, covering_grant(scope, cover)]
        assert ScopeSet(granted).satisfies(scope), (granted, required)
    if ScopeSet(granted).satisfies(scope):
        assert ScopeSet(granted + extra).satisfies(scope)
        assert ScopeSet(extra + granted).satisfies(scope)


@settings(max_examples=500, deadline=None)
@given(cap=limits, wanted=limits, smaller=limits)
def test_a_cap_satisfies_exactly_the_limits_at_or_below_it(cap: Decimal, wanted: Decimal,
                                                          smaller: Decimal) -> None:
    granted = ScopeSet([f"payments:initiate:max_{cap}"])
    satisfied = granted.satisfies(parse_required(f"payments:initiate:max_{wanted}"))
    assert satisfied == (cap >= wanted)
    if satisfied and smaller <= wanted:
        assert granted.satisfies(parse_required(f"payments:initiate:max_{smaller}"))
    assert not granted.satisfies(parse_required("payments:initiate"))
    assert granted.allows("payments:initiate", wanted) == (cap >= wanted)


@settings(max_examples=300, deadline=None)
@given(cap=limits, raised=limits, wanted=limits)
def test_raising_a_cap_never_loses_a_limit(cap: Decimal, raised: Decimal, wanted: Decimal) -> None:
    required = parse_required(f"r:a:max_{wanted}")
    if ScopeSet([f"r:a:max_{cap}"]).satisfies(required):
        assert ScopeSet([f"r:a:max_{max(cap, raised)}"]).satisfies(required)


@settings(max_examples=300, deadline=None)
@given(wanted=limits, others=st.lists(scope_like, max_size=4))
def test_an_unconstrained_grant_satisfies_every_limit(wanted: Decimal, others: list[str]) -> None:
    assert ScopeSet(["r:a", *others]).satisfies(parse_required(f"r:a:max_{wanted}"))


@settings(max_examples=500, deadline=None)
@given(constraint=st.text(min_size=1, max_size=12).filter(lambda c: ":" not in c),
       granted=st.text(min_size=1, max_size=12))
def test_a_non_limit_constraint_matches_only_itself(constraint: str, granted: str) -> None:
    try:
        required = parse_required(f"r:a:{constraint}")
    except ValueError:
        return
    assume(required.limit is None)
    assert ScopeSet([f"r:a:{granted}"]).satisfies(required) == (granted == constraint)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="0123456789eE+-._xXnaNIfity\u0660\uff11 ", min_size=1, max_size=12))
def test_only_strict_ascii_numbers_are_limits(text: str) -> None:
    strict = all(part.isdigit() and part.isascii() for part in text.split(".")) \
        and text.count(".") <= 1
    scope = ScopeSet([f"r:a:max_{text}"])
    assert (scope.limit("r:a") is not None) == strict, text


def test_the_properties_run_on_a_verifying_guard(issuer: LocalIssuer, guard: Guard) -> None:
    """Guard against vacuous properties: a valid token does verify here."""
    assert isinstance(outcome(guard, issuer.mint(audience=API)), Grant)
