"""SyncExecutionContext answers exactly as graphql-core's own executor, errors included."""

from __future__ import annotations

from typing import Any

import graphene
import pytest
from graphql import ExecutionContext, execute, parse

from schema.execution import SyncExecutionContext


class Item(graphene.ObjectType):
    name = graphene.String(required=True)
    count = graphene.Int()
    strict_count = graphene.Int(required=True)
    label = graphene.String(suffix=graphene.String(default_value="!"))
    broken = graphene.String()

    @staticmethod
    def resolve_label(item: Any, info: Any, suffix: str) -> str:
        return f"{item['name'] if isinstance(item, dict) else item.name}{suffix}"

    @staticmethod
    def resolve_broken(item: Any, info: Any) -> str:
        raise ValueError("this field always fails")


class Row:
    def __init__(self, name: Any, count: Any, strict_count: Any) -> None:
        self.name, self.count, self.strict_count = name, count, strict_count


class Query(graphene.ObjectType):
    items = graphene.List(graphene.NonNull(Item), required=True)
    dict_items = graphene.List(Item)

    @staticmethod
    def resolve_items(root: Any, info: Any) -> list[Row]:
        return [Row("a", 1, 1), Row("b", None, 2), Row("c", "not a number", 3)]

    @staticmethod
    def resolve_dict_items(root: Any, info: Any) -> list[Any]:
        return [{"name": "d", "count": 4, "strict_count": 4}, {"name": None, "count": 5, "strict_count": None}]


SCHEMA = graphene.Schema(query=Query).graphql_schema

QUERIES = [
    "{ items { name count label } }",
    '{ items { label(suffix: "?") alias: label } }',
    "query Q($s: String) { items { label(suffix: $s) } }",
    "{ items { count } }",  # "not a number": the scalar refuses it
    "{ items { name broken } }",  # a resolver that raises, on a nullable field
    "{ dictItems { name } }",  # null for a non-null field: the item becomes null
    "{ dictItems { strictCount count } }",
    "{ items { strictCount } dictItems { strictCount } }",
    "{ items { __typename name } }",
]


def _run(query: str, context: type[ExecutionContext], variables: dict[str, Any] | None = None) -> Any:
    result = execute(SCHEMA, parse(query), variable_values=variables, execution_context_class=context)
    errors = [(e.message, e.path, e.locations) for e in result.errors or []]
    return result.data, errors


@pytest.mark.parametrize("query", QUERIES)
def test_same_data_and_errors_as_graphql_core(query):
    variables = {"s": "#"}
    fast = _run(query, SyncExecutionContext, variables)
    assert fast == _run(query, ExecutionContext, variables)
    assert fast[0] is not None or fast[1]  # each query answers something


def test_the_fast_way_is_taken_and_still_reports_refused_values(monkeypatch):
    infos: list[Any] = []
    real = SyncExecutionContext.build_resolve_info

    def counting(self: Any, *args: Any) -> Any:
        infos.append(args[0])
        return real(self, *args)

    monkeypatch.setattr(SyncExecutionContext, "build_resolve_info", counting)
    assert _run("{ items { name } }", SyncExecutionContext)[0] == {"items": [{"name": n} for n in "abc"]}
    # `items`, then `name` of the first item only: the other two went from attribute to value.
    assert len(infos) == 2
    data, errors = _run("{ items { count } }", SyncExecutionContext)
    assert data == {"items": [{"count": 1}, {"count": None}, {"count": None}]}
    assert [e[1] for e in errors] == [["items", 2, "count"]]
    assert "Int cannot represent non-integer value" in errors[0][0]
