"""schema.validation's rules, run directly over the schema: depth, alias and field limits, fragment cycles,
introspection."""

from __future__ import annotations

from typing import Any

import pytest
from graphene.validation import DisableIntrospection
from graphql import NoSchemaIntrospectionCustomRule, ValidationRule, parse, validate

from schema.schema import schema as app_schema
from schema.validation import Limits, TextValuesRule, _Walk, standard_rules
from schema.view import _prepare

GRAPHQL_SCHEMA = app_schema.graphql_schema


def _default_rules(**overrides: Any) -> tuple[Limits, list[Any]]:
    options = {"max_depth": 10, "max_fields": 300, "max_aliases": 30, "max_repeats": 10}
    introspection = overrides.pop("introspection", True)
    options.update(overrides)
    return Limits(**options), standard_rules(introspection=introspection)


def _messages(query: str, checks: Limits | list[Any] | tuple[Limits, list[Any]]) -> list[str]:
    """The messages of our limits, of a list of rules, or of both as the view runs them (the rules
    only when the limits have none)."""
    document = parse(query)
    limits, rules = (
        checks if isinstance(checks, tuple) else (checks, None) if isinstance(checks, Limits) else (None, checks)
    )
    if limits is not None:
        messages = [error.message for error in limits.errors(document)]
        if messages or rules is None:
            return messages
    return [error.message for error in validate(GRAPHQL_SCHEMA, document, rules)]


def test_the_standard_rules_are_all_there():
    from graphql import specified_rules

    _, standard = _default_rules()
    assert standard == [*specified_rules, TextValuesRule]
    assert _default_rules(introspection=False)[1] == [*specified_rules, TextValuesRule, NoSchemaIntrospectionCustomRule]


def test_a_document_over_the_limits_never_reaches_the_standard_rules():
    # The standard rules cost more than linear time (overlapping fields compares pairs of fields).
    limits, _ = _default_rules()
    over = "{ " + " me { id }" * 200 + " }"  # 400 fields
    document, errors = _prepare(GRAPHQL_SCHEMA, limits, [_Exploding], 10_000, over)
    assert [e.message for e in errors] == ["the operation selects 'me' more than 10 times in one place."]
    with pytest.raises(AssertionError, match="reached"):
        _prepare(GRAPHQL_SCHEMA, limits, [_Exploding], 10_000, "{ me { id } }")


class _Exploding(ValidationRule):
    def enter_document(self, *_args: Any) -> None:
        raise AssertionError("the standard rules were reached")


def test_the_limits_walk_a_bounded_part_of_a_huge_document():
    # 2,000 copies of `me { id }`: the walk stops at the 11th `me`, and costs nothing like a visit of all.
    limits, _ = _default_rules(max_repeats=10_000)
    huge = parse("{ " + " me { id }" * 2000 + " }", max_tokens=10_000)
    walked = []
    original = _Walk._walk

    def counting(self: Any, *args: Any) -> None:
        walked.append(1)
        original(self, *args)

    try:
        _Walk._walk = counting  # type: ignore[method-assign]
        assert [e.message for e in limits.errors(huge)] == ["the operation selects more than 300 fields; split it."]
    finally:
        _Walk._walk = original  # type: ignore[method-assign]
    assert len(walked) <= 301


@pytest.mark.parametrize(("copies", "refused"), [(10, False), (11, True)])
def test_a_field_repeated_in_one_place_is_limited_fragments_included(copies, refused):
    limits, rules = _default_rules()
    plain = "{ " + " me { id }" * copies + " }"
    spread = "{ me { ...F } } fragment F on User { " + "id " * (copies - 1) + "... on User { id } }"
    expected = ["the operation selects 'me' more than 10 times in one place."] if refused else []
    assert _messages(plain, (limits, rules)) == expected
    assert _messages(spread, (limits, rules)) == [m.replace("'me'", "'id'") for m in expected]
    # Aliased copies are different response names: each counts once (the alias limit bounds them).
    aliased = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(copies)) + " }"
    assert _messages(aliased, (limits, rules)) == []


def test_a_nul_in_a_string_literal_is_refused():
    assert _messages('mutation { wechatLogin(code: "a\\u0000b") { token } }', [TextValuesRule]) == [
        "Strings may not contain NUL characters."
    ]
    assert _messages('mutation { wechatLogin(code: "a\\u00e9b") { token } }', [TextValuesRule]) == []


def test_depth_limit_boundary(nested):
    rule = Limits(10, 300, 30, 10)
    assert _messages(nested(10), rule) == []
    assert _messages(nested(11), rule) == ["the operation is nested deeper than 10 levels."]


def test_depth_limit_names_the_operation(nested):
    rule = Limits(3, 300, 30, 10)
    deep = "query Deep " + nested(4)
    assert _messages(deep, rule) == ["Deep is nested deeper than 3 levels."]


def test_depth_limit_with_all_rules_against_real_schema():
    # Our schema is shallow (`me { id }` is depth 2), so small limits stand in for 10.
    assert _messages("{ me { id } }", _default_rules(max_depth=2)) == []
    assert _messages("{ me { id } }", _default_rules(max_depth=1)) == ["the operation is nested deeper than 1 levels."]


def test_depth_counts_through_fragments_but_not_inline_fragments():
    spread = "{ me { ...F } } fragment F on User { id }"
    assert _messages(spread, _default_rules(max_depth=1)) == ["the operation is nested deeper than 1 levels."]
    inline = "{ me { ... on User { ... on User { id } } } }"
    assert _messages(inline, _default_rules(max_depth=2)) == []


def test_deep_document_with_all_rules_reports_depth(nested):
    assert _messages(nested(11), _default_rules()) == ["the operation is nested deeper than 10 levels."]


def test_alias_limit_boundary():
    thirty = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(30)) + " }"
    thirty_one = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(31)) + " }"
    assert _messages(thirty, _default_rules()) == []
    assert _messages(thirty_one, _default_rules()) == ["the operation uses more than 30 aliases."]


def test_aliases_in_a_fragment_count_each_time_it_is_used():
    fragment = "fragment F on User { " + " ".join(f"f{i}: id" for i in range(15)) + " }"
    once = "{ x: me { ...F } } " + fragment  # 16 aliases
    twice = "{ x: me { ...F } y: me { ...F } } " + fragment  # 32 aliases
    assert _messages(once, _default_rules()) == []
    assert _messages(twice, _default_rules()) == ["the operation uses more than 30 aliases."]


def test_field_limit_boundary():
    at_limit = "{ me { " + "id " * 299 + "} }"  # me + 299 = 300 fields
    over = "{ me { " + "id " * 300 + "} }"
    unrepeated = _default_rules(max_repeats=1000)  # the repeat limit would refuse these first
    assert _messages(at_limit, unrepeated) == []
    assert _messages(over, unrepeated) == ["the operation selects more than 300 fields; split it."]
    assert _messages(over, _default_rules()) == ["the operation selects 'id' more than 10 times in one place."]


def test_fragment_cycle_is_a_validation_error_not_a_recursion_error():
    query = "query { me { ...A } } fragment A on User { ...B } fragment B on User { ...A }"
    assert _messages(query, _default_rules()) == ["Cannot spread fragment 'A' within itself via 'B'."]
    # The complexity rule alone must also terminate (the standard rule reports the cycle).
    assert _messages(query, Limits(10, 300, 30, 10)) == []


def test_self_spreading_fragment_is_a_validation_error():
    query = "query { me { ...A } } fragment A on User { id ...A }"
    assert _messages(query, _default_rules()) == ["Cannot spread fragment 'A' within itself."]


def test_exponential_fragment_fan_out_is_rejected():
    # 2**29 leaves if expanded; the walk is bounded, so this returns at once.
    fragments = " ".join(f"fragment F{i} on User {{ ...F{i + 1} ...F{i + 1} }}" for i in range(1, 30))
    query = "query { me { ...F1 } } " + fragments + " fragment F30 on User { id }"
    assert _messages(query, _default_rules(max_repeats=1000)) == [
        "the operation selects more than 300 fields; split it."
    ]
    assert _messages(query, _default_rules()) == ["the operation selects 'id' more than 10 times in one place."]


def test_each_operation_is_measured_separately():
    ops = " ".join(f"query Q{n} {{ " + " ".join(f"a{i}: me {{ id }}" for i in range(20)) + " }" for n in range(3))
    assert _messages(ops, _default_rules()) == []


def test_introspection_off_rejects_schema_and_type_queries():
    off = _default_rules(introspection=False)[1]
    on = _default_rules(introspection=True)[1]
    assert DisableIntrospection in off or NoSchemaIntrospectionCustomRule in off
    assert DisableIntrospection not in on and NoSchemaIntrospectionCustomRule not in on
    assert validate(GRAPHQL_SCHEMA, parse("{ __schema { types { name } } }"), off)
    assert validate(GRAPHQL_SCHEMA, parse('{ __type(name: "User") { name } }'), off)


def test_introspection_on_passes_validation():
    on = _default_rules(introspection=True)
    assert _messages("{ __schema { types { name } } }", on) == []
    assert _messages('{ __type(name: "User") { name fields { name } } }', on) == []


def test_introspection_off_still_allows_typename():
    # Apollo Client and urql add __typename to every selection set; production (introspection
    # off) must still answer them.
    off = _default_rules(introspection=False)
    assert _messages("{ __typename }", off) == []
    assert _messages("{ me { __typename id } }", off) == []
