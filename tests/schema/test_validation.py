"""schema.validation's rules, run directly over the schema: depth, alias and field limits, fragment cycles,
introspection."""

from __future__ import annotations

from typing import Any

import pytest
from graphene.validation import DisableIntrospection
from graphql import NoSchemaIntrospectionCustomRule, ValidationRule, parse, validate

from schema.schema import schema as app_schema
from schema.validation import TextValuesRule, complexity_rule, validation_passes

GRAPHQL_SCHEMA = app_schema.graphql_schema


def _default_rules(**overrides: Any) -> tuple[list[Any], list[Any]]:
    options = {"max_depth": 10, "max_fields": 300, "max_aliases": 30, "introspection": True}
    options.update(overrides)
    return validation_passes(**options)


def _messages(query: str, rules: list[Any] | tuple[list[Any], ...]) -> list[str]:
    """The messages of one pass of rules, or of the first of several passes that has any (as the view runs them)."""
    document = parse(query)
    for pass_rules in rules if isinstance(rules, tuple) else (rules,):
        messages = [error.message for error in validate(GRAPHQL_SCHEMA, document, pass_rules)]
        if messages:
            return messages
    return []


def test_the_limits_pass_first_then_exactly_the_standard_rules():
    from graphql import specified_rules

    limits, standard = _default_rules()
    assert [rule.__name__ for rule in limits] == ["ComplexityRule", "TextValuesRule"]
    assert standard == list(specified_rules)


def test_a_document_over_the_limits_never_reaches_the_standard_rules(monkeypatch):
    # The standard rules cost more than linear time (overlapping fields compares pairs of fields).
    limits, standard = _default_rules()
    over = "{ " + " me { id }" * 200 + " }"  # 400 fields
    assert _messages(over, (limits, [_Exploding])) == ["the operation selects more than 300 fields; split it."]
    with pytest.raises(AssertionError, match="reached"):
        _messages("{ me { id } }", (limits, [_Exploding]))


class _Exploding(ValidationRule):
    def enter_document(self, *_args: Any) -> None:
        raise AssertionError("the standard rules were reached")


def test_a_nul_in_a_string_literal_is_refused():
    assert _messages('mutation { wechatLogin(code: "a\\u0000b") { token } }', [TextValuesRule]) == [
        "Strings may not contain NUL characters."
    ]
    assert _messages('mutation { wechatLogin(code: "a\\u00e9b") { token } }', [TextValuesRule]) == []


def test_depth_limit_boundary(nested):
    rule = [complexity_rule(10, 300, 30)]
    assert _messages(nested(10), rule) == []
    assert _messages(nested(11), rule) == ["the operation is nested deeper than 10 levels."]


def test_depth_limit_names_the_operation(nested):
    rule = [complexity_rule(3, 300, 30)]
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
    assert _messages(at_limit, _default_rules()) == []
    assert _messages(over, _default_rules()) == ["the operation selects more than 300 fields; split it."]


def test_fragment_cycle_is_a_validation_error_not_a_recursion_error():
    query = "query { me { ...A } } fragment A on User { ...B } fragment B on User { ...A }"
    assert _messages(query, _default_rules()) == ["Cannot spread fragment 'A' within itself via 'B'."]
    # The complexity rule alone must also terminate (the standard rule reports the cycle).
    assert _messages(query, [complexity_rule(10, 300, 30)]) == []


def test_self_spreading_fragment_is_a_validation_error():
    query = "query { me { ...A } } fragment A on User { id ...A }"
    assert _messages(query, _default_rules()) == ["Cannot spread fragment 'A' within itself."]


def test_exponential_fragment_fan_out_is_rejected():
    # 2**29 leaves if expanded; the walk is bounded, so this returns at once.
    fragments = " ".join(f"fragment F{i} on User {{ ...F{i + 1} ...F{i + 1} }}" for i in range(1, 30))
    query = "query { me { ...F1 } } " + fragments + " fragment F30 on User { id }"
    assert _messages(query, _default_rules()) == ["the operation selects more than 300 fields; split it."]


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
