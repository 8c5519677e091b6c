"""graphql-core's executor, minus work this synchronous (WSGI) API never needs.

A list of 50 orders resolves ~300 fields, and graphql-core spends more per field than the
resolvers do: it looks the field definition up, re-reads its arguments from the document and
asks twice whether the result is awaitable, for every item of every list. Here a field's
definition, resolver and arguments are worked out once per execution (the variables are fixed
for it), and nothing is awaitable: no resolver of this schema is async.

A scalar field that graphene resolves by attribute (most model fields) goes straight from the
attribute to the serialized value. Anything unusual on that way (a null, an error, a value the
scalar refuses) takes graphql-core's own path, which reports it exactly as it always does.
"""

from __future__ import annotations

import functools
from typing import Any

from graphene.types import resolver as graphene_resolver
from graphql import ExecutionContext, FieldNode, GraphQLNonNull, GraphQLObjectType, is_leaf_type, located_error
from graphql.execution.execute import get_field_def
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined

# graphene's default resolvers: getattr / dict.get of the field's name; they never read `info`.
_ATTRIBUTE_RESOLVERS = (
    graphene_resolver.dict_or_attr_resolver,
    graphene_resolver.attr_resolver,
    graphene_resolver.dict_resolver,
)


def _leaf_by_attribute(field_def: Any, resolve_fn: Any) -> Any:
    """The leaf type of a field graphene resolves by attribute, else None."""
    if not (isinstance(resolve_fn, functools.partial) and resolve_fn.func in _ATTRIBUTE_RESOLVERS):
        return None
    leaf = field_def.type.of_type if isinstance(field_def.type, GraphQLNonNull) else field_def.type
    return leaf if is_leaf_type(leaf) else None


def _never(value: Any) -> bool:
    return False


class SyncExecutionContext(ExecutionContext):
    is_awaitable = staticmethod(_never)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.is_awaitable = _never  # also when the caller passed graphql-core's default
        # (id(parent type), id(field node)) -> (field definition, resolver, arguments, leaf type if the
        # fast way applies); the document
        # and the schema outlive the execution, so their ids are stable keys.
        self._fields: dict[tuple[int, int], tuple[Any, Any, dict[str, Any], Any]] = {}

    def execute_field(
        self, parent_type: GraphQLObjectType, source: Any, field_nodes: list[FieldNode], path: Path
    ) -> Any:
        key = (id(parent_type), id(field_nodes[0]))
        known = self._fields.get(key)
        if known is None:
            field_def = get_field_def(self.schema, parent_type, field_nodes[0])
            if not field_def:
                return Undefined
            resolve_fn = field_def.resolve or self.field_resolver
            if self.middleware_manager:
                resolve_fn = self.middleware_manager.get_field_resolver(resolve_fn)
            leaf = _leaf_by_attribute(field_def, resolve_fn)
        else:
            field_def, resolve_fn, args, leaf = known
            if leaf is not None:
                try:
                    value = resolve_fn(source, None, **args)
                    if value is not None and not isinstance(value, Exception):
                        serialized = leaf.serialize(value)
                        if serialized is not None and serialized is not Undefined:
                            return serialized
                except Exception:  # noqa: BLE001, S110 (graphql-core's path below reports it)
                    pass
        return_type = field_def.type
        info = self.build_resolve_info(field_def, field_nodes, parent_type, path)
        try:
            if known is None:
                # Inside the try: a bad argument is this field's error, as in graphql-core.
                args = get_argument_values(field_def, field_nodes[0], self.variable_values)
                self._fields[key] = (field_def, resolve_fn, args, leaf)
            result = resolve_fn(source, info, **args)
            return self.complete_value(return_type, field_nodes, info, path, result)
        except Exception as raw_error:  # noqa: BLE001 (located and reported as graphql-core does)
            error = located_error(raw_error, field_nodes, path.as_list())
            self.handle_field_error(error, return_type, path)
            return None
