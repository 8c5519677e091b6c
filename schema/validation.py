"""Validation: graphql-core's standard rules plus depth, field-count and alias limits."""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    specified_rules,
)


def complexity_rule(max_depth: int, max_fields: int, max_aliases: int) -> type[ValidationRule]:
    """One walk per operation, fragments expanded, so a fragment used N times costs N times."""

    class ComplexityRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fields = 0
            self.aliases = 0
            self.depth = 0
            self.visits = 0
            self.stopped = False

        def _walk(self, selection_set: SelectionSetNode | None, depth: int, spreads: frozenset[str]) -> None:
            if selection_set is None or self.stopped:
                return
            for selection in selection_set.selections:
                # Bounds the walk itself: fragments of fragments can multiply without fields.
                self.visits += 1
                if self.visits > 4 * max_fields:
                    self.fields = max(self.fields, max_fields + 1)
                    self.stopped = True
                    return
                if isinstance(selection, FieldNode):
                    self.aliases += selection.alias is not None
                    if selection.name.value.startswith("__"):
                        # Introspection is allowed or refused by its own rule; its depth is its own.
                        if self.aliases > max_aliases:
                            self.stopped = True
                            return
                        continue
                    self.fields += 1
                    self.depth = max(self.depth, depth + 1)
                    if self.fields > max_fields or self.aliases > max_aliases or self.depth > max_depth:
                        self.stopped = True
                        return
                    self._walk(selection.selection_set, depth + 1, spreads)
                elif isinstance(selection, InlineFragmentNode):
                    self._walk(selection.selection_set, depth, spreads)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.context.get_fragment(name)
                    # Unknown and cyclic fragments are reported by the standard rules.
                    if fragment is not None and name not in spreads:
                        self._walk(fragment.selection_set, depth, spreads | {name})

        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            self.fields = self.aliases = self.depth = self.visits = 0
            self.stopped = False
            self._walk(node.selection_set, 0, frozenset())
            name = node.name.value if node.name else "the operation"
            if self.depth > max_depth:
                self.report_error(GraphQLError(f"{name} is nested deeper than {max_depth} levels.", [node]))
            elif self.fields > max_fields:
                self.report_error(GraphQLError(f"{name} selects more than {max_fields} fields; split it.", [node]))
            elif self.aliases > max_aliases:
                self.report_error(GraphQLError(f"{name} uses more than {max_aliases} aliases.", [node]))

    return ComplexityRule


class TextValuesRule(ValidationRule):
    """A string literal holding a NUL (`"\\u0000"`, which PostgreSQL cannot store or compare) is refused
    like any other invalid value; variables are checked by the view."""

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if "\x00" in node.value:
            self.report_error(GraphQLError("Strings may not contain NUL characters.", [node]))


def validation_passes(
    *, max_depth: int, max_fields: int, max_aliases: int, introspection: bool
) -> tuple[list[type[ValidationRule]], list[type[ValidationRule]]]:
    """Two passes: our limits, one cheap walk of the document, and only on a document within them the
    standard rules, some of which cost more than linear time (overlapping fields compares pairs)."""
    limits: list[type[ValidationRule]] = [complexity_rule(max_depth, max_fields, max_aliases), TextValuesRule]
    # Passing rules to validate() replaces the standard ones, so they are listed here.
    standard: list[type[ValidationRule]] = list(specified_rules)
    if not introspection:
        # Blocks __schema and __type only; __typename stays (Apollo and urql add it everywhere).
        standard.append(NoSchemaIntrospectionCustomRule)
    return limits, standard
