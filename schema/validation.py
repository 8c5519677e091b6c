"""Validation in two steps: our limits (depth, fields, aliases, repeated fields), one bounded walk of the
parsed document; then, only for a document within them, graphql-core's standard rules, some of which
cost more than linear time (the overlapping-fields rule compares pairs of same-named fields)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationRule,
    specified_rules,
)


@dataclass(frozen=True)
class Limits:
    """What one operation may select, fragments counted as expanded (a fragment used N times costs N
    times). `max_repeats` bounds how often one response name is selected in one selection set (its
    fragments merged): 150 copies of `me { id }` cost the overlapping-fields rule ~85 ms."""

    max_depth: int
    max_fields: int
    max_aliases: int
    max_repeats: int

    def errors(self, document: DocumentNode) -> list[GraphQLError]:
        """One error per operation over a limit. Walks no more than 4 × max_fields selections per
        operation, whatever the document's size; unknown or cyclic fragments are left to the standard rules."""
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        errors = []
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                message = _Walk(self, fragments).over(definition)
                if message:
                    errors.append(GraphQLError(message, [definition]))
        return errors


class _Walk:
    def __init__(self, limits: Limits, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.limits = limits
        self.fragments = fragments
        self.fields = self.aliases = self.depth = self.visits = 0
        self.repeated = ""
        self.stopped = False

    def over(self, operation: OperationDefinitionNode) -> str | None:
        """What the operation exceeds, in a message for the client; None when it is within the limits."""
        self._walk(operation.selection_set, 0, frozenset(), Counter())
        limits = self.limits
        name = operation.name.value if operation.name else "the operation"
        if self.depth > limits.max_depth:
            return f"{name} is nested deeper than {limits.max_depth} levels."
        if self.fields > limits.max_fields:
            return f"{name} selects more than {limits.max_fields} fields; split it."
        if self.aliases > limits.max_aliases:
            return f"{name} uses more than {limits.max_aliases} aliases."
        if self.repeated:
            return f"{name} selects '{self.repeated}' more than {limits.max_repeats} times in one place."
        return None

    def _walk(
        self, selection_set: SelectionSetNode | None, depth: int, spreads: frozenset[str], names: Counter[str]
    ) -> None:
        """`names`: the response names selected so far in this selection set, its fragments merged."""
        limits = self.limits
        if selection_set is None or self.stopped:
            return
        for selection in selection_set.selections:
            # Bounds the walk itself: fragments of fragments can multiply without fields.
            self.visits += 1
            if self.visits > 4 * limits.max_fields:
                self.fields = max(self.fields, limits.max_fields + 1)
                self.stopped = True
                return
            if isinstance(selection, FieldNode):
                self.aliases += selection.alias is not None
                if selection.name.value.startswith("__"):
                    # Introspection is allowed or refused by its own rule; its depth is its own.
                    if self.aliases > limits.max_aliases:
                        self.stopped = True
                        return
                    continue
                self.fields += 1
                self.depth = max(self.depth, depth + 1)
                response_name = (selection.alias or selection.name).value
                names[response_name] += 1
                if names[response_name] > limits.max_repeats:
                    self.repeated = response_name
                if (
                    self.fields > limits.max_fields
                    or self.aliases > limits.max_aliases
                    or self.depth > limits.max_depth
                    or self.repeated
                ):
                    self.stopped = True
                    return
                self._walk(selection.selection_set, depth + 1, spreads, Counter())
            elif isinstance(selection, InlineFragmentNode):
                self._walk(selection.selection_set, depth, spreads, names)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in spreads:
                    self._walk(fragment.selection_set, depth, spreads | {name}, names)


class TextValuesRule(ValidationRule):
    """A string literal holding a NUL (`"\\u0000"`, which PostgreSQL cannot store or compare) is refused
    like any other invalid value; variables are checked by the view."""

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if "\x00" in node.value:
            self.report_error(GraphQLError("Strings may not contain NUL characters.", [node]))


def standard_rules(*, introspection: bool) -> list[type[ValidationRule]]:
    # Passing rules to validate() replaces the standard ones, so they are listed here.
    rules: list[type[ValidationRule]] = [*specified_rules, TextValuesRule]
    if not introspection:
        # Blocks __schema and __type only; __typename stays (Apollo and urql add it everywhere).
        rules.append(NoSchemaIntrospectionCustomRule)
    return rules
