"""Scope semantics (DESIGN.md, "Scope semantics"), as a specification."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grantex_guard.errors import InsufficientScope
from grantex_guard.scopes import (
    Requirement,
    Scope,
    ScopeSet,
    parse_amount,
    parse_base,
    parse_required,
    requirement,
)

INFINITY = Decimal("Infinity")
CYRILLIC_A = "\u0430"  # looks like Latin 'a'


def satisfied(granted: list[str], required: str) -> bool:
    return ScopeSet(granted).satisfies(parse_required(required))


# --- parsing required scopes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "resource", "action", "constraint", "limit"),
    [
        ("calendar:read", "calendar", "read", None, None),
        ("payments:initiate:max_500", "payments", "initiate", "max_500", Decimal(500)),
        ("payments:initiate:max_10.50", "payments", "initiate", "max_10.50", Decimal("10.50")),
        ("payments:initiate:max_0", "payments", "initiate", "max_0", Decimal(0)),
        (
            "com.stripe.charges:create:max_5000",
            "com.stripe.charges",
            "create",
            "max_5000",
            Decimal(5000),
        ),
        ("files:read:region_eu", "files", "read", "region_eu", None),
        ("files:read:path:/a/b", "files", "read", "path:/a/b", None),
        ("files:read:MAX_5", "files", "read", "MAX_5", None),
        ("files:read:max", "files", "read", "max", None),
    ],
    ids=[
        "plain",
        "limit",
        "decimal-limit",
        "zero-limit",
        "reverse-domain",
        "other-constraint",
        "constraint-with-colon",
        "uppercase-MAX-is-not-a-limit",
        "max-without-underscore",
    ],
)
def test_parse_required_splits_resource_action_constraint(
    text: str, resource: str, action: str, constraint: str | None, limit: Decimal | None
) -> None:
    scope = parse_required(text)
    assert scope == Scope(text, resource, action, constraint, limit)
    assert scope.base == f"{resource}:{action}"
    assert str(scope) == text


MALFORMED_REQUIRED = [
    pytest.param("payments:initiate:max_1e3", id="exponent"),
    pytest.param("payments:initiate:max_NaN", id="nan"),
    pytest.param("payments:initiate:max_Infinity", id="infinity"),
    pytest.param("payments:initiate:max_-5", id="minus-sign"),
    pytest.param("payments:initiate:max_+5", id="plus-sign"),
    pytest.param("payments:initiate:max_1_000", id="underscore"),
    pytest.param("payments:initiate:max_ 5", id="space-in-limit"),
    pytest.param("payments:initiate:max_\u0665", id="arabic-indic-digit"),
    pytest.param("payments:initiate:max_\uff15", id="fullwidth-digit"),
    pytest.param("payments:initiate:max_5.", id="trailing-dot"),
    pytest.param("payments:initiate:max_.5", id="leading-dot"),
    pytest.param("payments:initiate:max_", id="no-number"),
    pytest.param("payments:initiate:max_5:x", id="limit-with-suffix"),
    pytest.param("", id="empty"),
    pytest.param("a", id="one-segment"),
    pytest.param("a:", id="empty-action"),
    pytest.param(":a", id="empty-resource"),
    pytest.param("a::b", id="empty-middle"),
    pytest.param("a:b:", id="empty-constraint"),
    pytest.param("a:b:c::d", id="empty-segment-inside-constraint"),
    pytest.param(":", id="only-colon"),
    pytest.param("a:b c", id="space"),
    pytest.param(" a:b", id="leading-space"),
    pytest.param("a:b\t", id="tab"),
    pytest.param("a:b\n", id="newline"),
    pytest.param("a:\x00b", id="nul"),
    pytest.param("a:b\x7f", id="del"),
    pytest.param("a:b\u00a0", id="no-break-space"),
    pytest.param("a:\u200bb", id="zero-width-space"),
    pytest.param("a:b\u2028", id="line-separator"),
]


@pytest.mark.parametrize("text", MALFORMED_REQUIRED)
def test_malformed_required_scope_is_a_value_error_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="Invalid scope") as raised:
        parse_required(text)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize("value", [None, 5, b"a:b", ["a:b"]], ids=["none", "int", "bytes", "list"])
def test_required_scope_that_is_not_a_string_is_a_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="expected a string"):
        parse_required(value)  # type: ignore[arg-type]


# --- matching ------------------------------------------------------------------------------

MATCHING = [
    # unconstrained grant
    pytest.param(["calendar:read"], "calendar:read", True, id="exact"),
    pytest.param(["calendar:read"], "calendar:write", False, id="other-action"),
    pytest.param(["calendar:read"], "contacts:read", False, id="other-resource"),
    pytest.param([], "calendar:read", False, id="nothing-granted"),
    pytest.param(
        ["payments:initiate"],
        "payments:initiate:max_500",
        True,
        id="unconstrained-satisfies-capped",
    ),
    # capped grant
    pytest.param(
        ["payments:initiate:max_500"],
        "payments:initiate",
        False,
        id="capped-does-not-satisfy-unconstrained",
    ),
    pytest.param(["payments:initiate:max_500"], "payments:initiate:max_100", True, id="cap-above"),
    pytest.param(["payments:initiate:max_500"], "payments:initiate:max_500", True, id="cap-equal"),
    pytest.param(["payments:initiate:max_100"], "payments:initiate:max_500", False, id="cap-below"),
    pytest.param(
        ["payments:initiate:max_100", "payments:initiate:max_900"],
        "payments:initiate:max_500",
        True,
        id="best-of-several-caps",
    ),
    pytest.param(
        ["payments:initiate:max_500", "payments:initiate"],
        "payments:initiate",
        True,
        id="capped-and-unconstrained",
    ),
    pytest.param(
        ["payments:refund:max_500"], "payments:initiate:max_5", False, id="cap-on-other-action"
    ),
    # decimals
    pytest.param(["p:i:max_10.5"], "p:i:max_10.50", True, id="10.5-satisfies-10.50"),
    pytest.param(["p:i:max_10.50"], "p:i:max_10.5", True, id="10.50-satisfies-10.5"),
    pytest.param(["p:i:max_10.5"], "p:i:max_11", False, id="10.5-not-11"),
    pytest.param(["p:i:max_11"], "p:i:max_10.5", True, id="11-satisfies-10.5"),
    pytest.param(["p:i:max_10.49"], "p:i:max_10.5", False, id="10.49-not-10.5"),
    pytest.param(["p:i:max_007"], "p:i:max_7", True, id="leading-zeros"),
    pytest.param(["p:i:max_0"], "p:i:max_0", True, id="zero-cap-zero-required"),
    pytest.param(["p:i:max_0"], "p:i:max_0.01", False, id="zero-cap"),
    # reverse-domain resources
    pytest.param(
        ["com.stripe.charges:create:max_5000"],
        "com.stripe.charges:create:max_4999.99",
        True,
        id="reverse-domain-capped",
    ),
    pytest.param(
        ["com.stripe.charges:create"], "com.stripe.charges:create", True, id="reverse-domain-exact"
    ),
    pytest.param(
        ["com.stripe.charges:create"],
        "com.stripe:charges",
        False,
        id="reverse-domain-is-not-a-prefix",
    ),
    # other constraints match exactly
    pytest.param(
        ["files:read:region_eu"], "files:read:region_eu", True, id="other-constraint-exact"
    ),
    pytest.param(
        ["files:read:region_eu"], "files:read:region_us", False, id="other-constraint-different"
    ),
    pytest.param(
        ["files:read:region_eu"],
        "files:read",
        False,
        id="other-constraint-does-not-satisfy-unconstrained",
    ),
    pytest.param(
        ["files:read"],
        "files:read:region_eu",
        False,
        id="unconstrained-does-not-satisfy-other-constraint",
    ),
    pytest.param(
        ["files:read:path:/a/b"], "files:read:path:/a/b", True, id="constraint-with-colon-exact"
    ),
    pytest.param(
        ["files:read:path:/a"],
        "files:read:path:/a/b",
        False,
        id="constraint-with-colon-is-not-a-prefix",
    ),
    # case and code points
    pytest.param(["Calendar:Read"], "calendar:read", False, id="case-sensitive"),
    pytest.param(["calendar:read"], "Calendar:read", False, id="case-sensitive-required"),
    pytest.param(
        [f"c{CYRILLIC_A}lendar:read"], "calendar:read", False, id="cyrillic-confusable-granted"
    ),
    pytest.param(
        ["calendar:read"], f"c{CYRILLIC_A}lendar:read", False, id="cyrillic-confusable-required"
    ),
    pytest.param(["p:i:MAX_5"], "p:i:max_5", False, id="uppercase-MAX-is-not-a-cap"),
    # ill-formed granted max_ only match identical strings
    pytest.param(["p:i:max_1e3"], "p:i:max_5", False, id="granted-exponent"),
    pytest.param(["p:i:max_Infinity"], "p:i:max_5", False, id="granted-infinity"),
    pytest.param(["p:i:max_NaN"], "p:i:max_0", False, id="granted-nan"),
    pytest.param(["p:i:max_-5"], "p:i:max_0", False, id="granted-negative"),
    pytest.param(["p:i:max_1_000"], "p:i:max_5", False, id="granted-underscore"),
    pytest.param(["p:i:max_ 5"], "p:i:max_5", False, id="granted-space"),
    pytest.param(["p:i:max_\u0665"], "p:i:max_5", False, id="granted-arabic-indic-digit"),
    pytest.param(["p:i:max_5."], "p:i:max_5", False, id="granted-trailing-dot"),
    pytest.param(["p:i:max_5:x"], "p:i:max_5", False, id="granted-limit-with-suffix"),
    pytest.param(["p:i:max_1e3"], "p:i", False, id="granted-exponent-vs-unconstrained"),
    # other ill-formed grants
    pytest.param(["calendar"], "calendar:read", False, id="granted-one-segment"),
    pytest.param(["calendar:"], "calendar:read", False, id="granted-empty-action"),
    pytest.param(["calendar::max_5"], "calendar:read:max_5", False, id="granted-empty-segment"),
    pytest.param(["calendar:read "], "calendar:read", False, id="granted-trailing-space"),
]


@pytest.mark.parametrize(("granted", "required", "expected"), MATCHING)
def test_matching_table(granted: list[str], required: str, expected: bool) -> None:
    assert satisfied(granted, required) is expected


# --- ScopeSet ------------------------------------------------------------------------------


def test_scope_set_keeps_token_order_without_duplicates_or_empty_strings() -> None:
    scopes = ScopeSet(["b:x", "a:y", "", "b:x", "c"])
    assert scopes.granted == ("b:x", "a:y", "c")
    assert list(scopes) == ["b:x", "a:y", "c"]
    assert len(scopes) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a:y", True), ("c", True), ("a:x", False), ("", False), (None, False), (5, False)],
    ids=["scope", "ill-formed-scope", "absent", "empty", "none", "int"],
)
def test_scope_set_membership_is_exact_string_membership(text: object, expected: bool) -> None:
    assert (text in ScopeSet(["a:y", "c"])) is expected


def test_scope_set_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError, match="not a string"):
        ScopeSet("calendar:read")


def test_scope_set_refuses_non_string_items() -> None:
    with pytest.raises(TypeError, match="must be strings"):
        ScopeSet(["calendar:read", None])  # type: ignore[list-item]


LIMITS = [
    pytest.param([], "payments:initiate", None, id="not-granted"),
    pytest.param(["payments:refund"], "payments:initiate", None, id="other-action"),
    pytest.param(["payments:initiate"], "payments:initiate", INFINITY, id="unconstrained"),
    pytest.param(["payments:initiate:max_500"], "payments:initiate", Decimal(500), id="one-cap"),
    pytest.param(
        ["payments:initiate:max_100", "payments:initiate:max_750.25", "payments:initiate:max_500"],
        "payments:initiate",
        Decimal("750.25"),
        id="max-over-several-caps",
    ),
    pytest.param(
        ["payments:initiate:max_100", "payments:initiate"],
        "payments:initiate",
        INFINITY,
        id="unconstrained-beats-cap",
    ),
    pytest.param(
        ["payments:initiate:max_1e9"], "payments:initiate", None, id="ill-formed-cap-ignored"
    ),
    pytest.param(
        ["payments:initiate:region_eu"],
        "payments:initiate",
        None,
        id="other-constraint-is-no-limit",
    ),
]


@pytest.mark.parametrize(("granted", "base", "expected"), LIMITS)
def test_limit_is_the_largest_allowed_amount(
    granted: list[str], base: str, expected: Decimal | None
) -> None:
    assert ScopeSet(granted).limit(base) == expected


ALLOWS = [
    pytest.param([], 0, False, id="not-granted-even-zero"),
    pytest.param(["payments:initiate"], 10**30, True, id="unconstrained-any-amount"),
    pytest.param(["payments:initiate:max_500"], 499, True, id="below-cap"),
    pytest.param(["payments:initiate:max_500"], 500, True, id="at-cap"),
    pytest.param(["payments:initiate:max_500"], Decimal("500.01"), False, id="above-cap"),
    pytest.param(["payments:initiate:max_10.5"], "10.50", True, id="decimal-string-at-cap"),
    pytest.param(["payments:initiate:max_10.5"], 10.6, False, id="float-above-cap"),
    pytest.param(
        ["payments:initiate:max_100", "payments:initiate:max_900"],
        800,
        True,
        id="best-of-several-caps",
    ),
]


@pytest.mark.parametrize(("granted", "amount", "expected"), ALLOWS)
def test_allows_checks_an_amount_against_the_grant(
    granted: list[str], amount: Decimal | int | float | str, expected: bool
) -> None:
    assert ScopeSet(granted).allows("payments:initiate", amount) is expected


@pytest.mark.parametrize("amount", [-1, Decimal("NaN"), "abc"], ids=["negative", "nan", "text"])
def test_allows_refuses_an_invalid_amount_with_value_error(amount: object) -> None:
    with pytest.raises(ValueError, match="Invalid amount"):
        ScopeSet(["payments:initiate"]).allows("payments:initiate", amount)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "base",
    ["payments", "payments:initiate:max_5", "payments:", "a b:c", ""],
    ids=["one-segment", "with-constraint", "empty-action", "space", "empty"],
)
def test_limit_and_allows_need_a_bare_resource_action(base: str) -> None:
    scopes = ScopeSet(["payments:initiate"])
    with pytest.raises(ValueError, match="Invalid scope base"):
        scopes.limit(base)
    with pytest.raises(ValueError, match="Invalid scope base"):
        scopes.allows(base, 1)


def test_parse_base_returns_a_valid_base() -> None:
    assert parse_base("com.stripe.charges:create") == "com.stripe.charges:create"


# --- amounts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (0, Decimal(0)),
        (5, Decimal(5)),
        (Decimal("10.5"), Decimal("10.5")),
        ("10.5", Decimal("10.5")),
        ("007", Decimal(7)),
        (10.5, Decimal("10.5")),
        (0.1, Decimal("0.1")),
        (Decimal("-0"), Decimal(0)),
        (-0.0, Decimal(0)),
        (10**40, Decimal(10**40)),
        (10**5000, Decimal(10**5000)),
    ],
    ids=[
        "zero",
        "int",
        "decimal",
        "string",
        "leading-zeros",
        "float",
        "float-via-str",
        "negative-zero-decimal",
        "negative-zero-float",
        "big-int",
        "int-beyond-str-digit-limit",
    ],
)
def test_parse_amount_accepts_non_negative_numbers(amount: object, expected: Decimal) -> None:
    parsed = parse_amount(amount)
    assert parsed == expected
    assert type(parsed) is Decimal
    assert not parsed.is_signed()


@pytest.mark.parametrize(
    "amount",
    [
        -1,
        Decimal("-0.01"),
        -0.5,
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        float("nan"),
        float("inf"),
        "1e3",
        "NaN",
        "Infinity",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1_000",
        "\u0665",
        "5.",
        ".5",
        "",
        "abc",
        True,
        False,
        None,
        [1],
        complex(1),
    ],
    ids=[
        "negative-int",
        "negative-decimal",
        "negative-float",
        "decimal-nan",
        "decimal-snan",
        "decimal-infinity",
        "float-nan",
        "float-inf",
        "string-exponent",
        "string-nan",
        "string-infinity",
        "string-negative",
        "string-plus",
        "leading-space",
        "trailing-space",
        "string-underscore",
        "arabic-indic-digit",
        "trailing-dot",
        "leading-dot",
        "empty",
        "abc",
        "true",
        "false",
        "none",
        "list",
        "complex",
    ],
)
def test_parse_amount_refuses_anything_else_with_value_error(amount: object) -> None:
    with pytest.raises(ValueError, match="Invalid amount"):
        parse_amount(amount)


def test_parse_amount_refuses_a_huge_negative_int_with_value_error() -> None:
    with pytest.raises(ValueError, match=r"Invalid amount <int>: it must not be negative"):
        parse_amount(-(10**5000))


# --- requirements --------------------------------------------------------------------------

REQUIREMENTS = [
    pytest.param(["a:r", "b:r"], [], ["a:r", "b:r"], True, id="all-of-met"),
    pytest.param(["a:r", "b:r"], [], ["a:r"], False, id="all-of-one-missing"),
    pytest.param([], ["a:r", "b:r"], ["b:r"], True, id="any-of-one-met"),
    pytest.param([], ["a:r", "b:r"], ["c:r"], False, id="any-of-none-met"),
    pytest.param(["a:r"], ["b:r", "c:r"], ["a:r", "c:r"], True, id="both-met"),
    pytest.param(["a:r"], ["b:r", "c:r"], ["b:r"], False, id="both-all-of-missing"),
    pytest.param(["a:r"], ["b:r", "c:r"], ["a:r"], False, id="both-any-of-missing"),
    pytest.param([], ["p:i:max_500", "admin:all"], ["p:i:max_900"], True, id="any-of-met-by-cap"),
    pytest.param([], [], [], True, id="nothing-required"),
]


@pytest.mark.parametrize(("all_of", "any_of", "granted", "met"), REQUIREMENTS)
def test_requirement_needs_all_of_and_one_of_any_of(
    all_of: list[str], any_of: list[str], granted: list[str], met: bool
) -> None:
    req = Requirement.parse(all_of, any_of)
    if met:
        req.check(ScopeSet(granted))
    else:
        with pytest.raises(InsufficientScope):
            req.check(ScopeSet(granted))


def test_requirement_is_falsy_only_when_nothing_is_required() -> None:
    assert not Requirement.parse()
    assert Requirement.parse(["a:b"])
    assert Requirement.parse(any_of=["a:b"])


def test_requirement_scope_texts_are_all_of_then_any_of_without_repeats() -> None:
    req = Requirement.parse(["a:b", "c:d", "a:b"], ["e:f", "a:b"])
    assert [s.text for s in req.all_of] == ["a:b", "c:d"]
    assert req.scope_texts == ("a:b", "c:d", "e:f")


@pytest.mark.parametrize("keyword", ["all_of", "any_of"])
def test_requirement_parse_rejects_a_bare_string(keyword: str) -> None:
    with pytest.raises(TypeError, match="pass a list of scopes, not a string"):
        Requirement.parse(**{keyword: "calendar:read"})


def test_requirement_parse_rejects_a_malformed_scope() -> None:
    with pytest.raises(ValueError, match="'payments:initiate:max_1e3'"):
        Requirement.parse(["calendar:read"], ["payments:initiate:max_1e3"])


def test_check_raises_insufficient_scope_403_with_required_scopes() -> None:
    req = Requirement.parse(["calendar:read", "calendar:write"], ["a:b"])
    with pytest.raises(InsufficientScope) as raised:
        req.check(ScopeSet(["calendar:read", "a:b"]))
    error = raised.value
    assert error.status == 403
    assert error.code == "SCOPE_INSUFFICIENT"
    assert error.required_scopes == ("calendar:read", "calendar:write", "a:b")
    assert error.message == "Missing scope 'calendar:write'."
    assert 'scope="calendar:read calendar:write a:b"' in (error.www_authenticate or "")


def test_check_message_explains_the_first_failing_scope_and_detail_lists_all() -> None:
    req = Requirement.parse(["x:one", "x:two"], ["y:one", "y:two"])
    with pytest.raises(InsufficientScope) as raised:
        req.check(ScopeSet(["z:z", "bad\nscope"]))
    assert raised.value.message == "Missing scope 'x:one'."
    detail = raised.value.detail
    for text in ("x:one", "x:two", "none of y:one, y:two", "'z:z'", "'bad\\nscope'"):
        assert text in detail
    assert "\n" not in detail


def test_check_message_says_a_capped_grant_does_not_cover_an_unconstrained_route() -> None:
    req = Requirement.parse(["payments:initiate"])
    with pytest.raises(InsufficientScope) as raised:
        req.check(ScopeSet(["payments:initiate:max_500"]))
    assert raised.value.message == (
        "The grant caps payments:initiate at 500; this route requires it without a limit. "
        "Check the amount with grant.require('payments:initiate', amount=...) or require "
        "'payments:initiate:max_N'."
    )


def test_check_message_says_how_far_a_cap_reaches() -> None:
    req = Requirement.parse(["payments:initiate:max_500"])
    with pytest.raises(InsufficientScope) as raised:
        req.check(ScopeSet(["payments:initiate:max_50", "payments:initiate:max_100"]))
    assert raised.value.message == (
        "The grant allows payments:initiate up to 100 (payments:initiate:max_100), not 500."
    )


def test_check_message_for_any_of_lists_the_choices_with_the_capped_hint() -> None:
    req = Requirement.parse(any_of=["admin:all", "payments:initiate"])
    with pytest.raises(InsufficientScope) as raised:
        req.check(ScopeSet(["payments:initiate:max_500"]))
    message = raised.value.message
    assert message.startswith("Requires one of: admin:all, payments:initiate. ")
    assert "The grant caps payments:initiate at 500" in message


def test_check_message_for_any_of_without_a_near_miss_only_lists_the_choices() -> None:
    with pytest.raises(InsufficientScope) as raised:
        Requirement.parse(any_of=["a:b", "c:d"]).check(ScopeSet([]))
    assert raised.value.message == "Requires one of: a:b, c:d."


@pytest.mark.parametrize(
    ("granted", "required", "expected"),
    [
        (["calendar:read"], "calendar:read", "Scope 'calendar:read' is granted."),
        ([], "calendar:write", "Missing scope 'calendar:write'."),
        (
            ["files:read"],
            "files:read:region_eu",
            "Missing scope 'files:read:region_eu': the grant holds 'files:read', but a constraint "
            "other than max_N must match exactly.",
        ),
        (
            ["payments:initiate:max_10.50"],
            "payments:initiate:max_11",
            "The grant allows payments:initiate up to 10.50 (payments:initiate:max_10.50), not 11.",
        ),
    ],
    ids=["granted", "missing", "other-constraint", "cap-too-low"],
)
def test_explain(granted: list[str], required: str, expected: str) -> None:
    assert ScopeSet(granted).explain(parse_required(required)) == expected


def test_messages_only_contain_required_and_well_formed_granted_scopes() -> None:
    secret = "p:i:max_1e3.eyJhbGciOiJSUzI1NiJ9"
    req = Requirement.parse(["p:i:max_5", "q:r"])
    with pytest.raises(InsufficientScope) as raised:
        req.check(ScopeSet([secret, "p:i:max_1"]))
    assert secret not in raised.value.message


def test_cached_requirement_returns_equal_objects() -> None:
    first = requirement(("a:b",), ("c:d", "e:f"))
    assert first == requirement(("a:b",), ("c:d", "e:f"))
    assert first is requirement(("a:b",), ("c:d", "e:f"))
    assert first == Requirement.parse(["a:b"], ["c:d", "e:f"])


def test_cached_requirement_accepts_lists() -> None:
    assert requirement(["a:b"]) is requirement(("a:b",))


def test_cached_requirement_rejects_bare_strings_and_malformed_scopes() -> None:
    with pytest.raises(TypeError, match="not a string"):
        requirement("a:b")
    with pytest.raises(ValueError, match="Invalid scope"):
        requirement(("a:",))
    with pytest.raises(ValueError, match="expected a string"):
        requirement([["a:b"]])  # type: ignore[list-item]


# --- properties ----------------------------------------------------------------------------

SEGMENT = st.text(alphabet=st.sampled_from("abcxyz.-_/09AZ" + CYRILLIC_A), min_size=1, max_size=6)
LIMIT_NUMBER = st.from_regex(r"[0-9]{1,12}(\.[0-9]{1,8})?", fullmatch=True)
CONSTRAINT = st.one_of(
    st.none(),
    LIMIT_NUMBER.map(lambda n: f"max_{n}"),
    st.lists(SEGMENT, min_size=1, max_size=3)
    .map(":".join)
    .filter(lambda c: not c.startswith("max_")),
)
WELL_FORMED = st.builds(
    lambda r, a, c: f"{r}:{a}" if c is None else f"{r}:{a}:{c}", SEGMENT, SEGMENT, CONSTRAINT
)
# Granted strings from tokens: anything, but biased towards near-misses of the scope grammar.
TOKENISH = st.text(alphabet=st.sampled_from("ab:max_0159.eE-+ \n\u0665"), min_size=0, max_size=16)
ANY_GRANTED = st.lists(st.one_of(st.text(max_size=12), TOKENISH, WELL_FORMED), max_size=8)


@given(granted=ANY_GRANTED, required=WELL_FORMED)
def test_property_matching_never_raises_for_arbitrary_grants(
    granted: list[str], required: str
) -> None:
    scopes = ScopeSet(granted)
    scope = parse_required(required)
    assert isinstance(scopes.explain(scope), str)
    if scopes.satisfies(scope):
        Requirement.parse([required]).check(scopes)
    else:
        with pytest.raises(InsufficientScope):
            Requirement.parse([required]).check(scopes)


@given(m=LIMIT_NUMBER, n=LIMIT_NUMBER)
def test_property_cap_m_satisfies_cap_n_iff_m_at_least_n(m: str, n: str) -> None:
    # Fraction is an independent oracle for the decimal comparison.
    assert satisfied([f"r:a:max_{m}"], f"r:a:max_{n}") is (Fraction(m) >= Fraction(n))


@given(granted=ANY_GRANTED, base=st.sampled_from(["r:a", "ab:ab"]), amount=LIMIT_NUMBER)
def test_property_allows_agrees_with_limit(granted: list[str], base: str, amount: str) -> None:
    scopes = ScopeSet(granted)
    limit = scopes.limit(base)
    assert scopes.allows(base, amount) is (limit is not None and limit >= Decimal(amount))


@given(text=st.one_of(st.text(max_size=20), TOKENISH, WELL_FORMED))
def test_property_parse_required_round_trips_or_raises_value_error(text: str) -> None:
    try:
        scope = parse_required(text)
    except ValueError:
        return
    assert scope.text == text
    rebuilt = scope.base if scope.constraint is None else f"{scope.base}:{scope.constraint}"
    assert rebuilt == text
    assert (scope.limit is not None) == (scope.constraint or "").startswith("max_")


@given(text=WELL_FORMED)
def test_property_well_formed_scopes_parse(text: str) -> None:
    assert parse_required(text).text == text
