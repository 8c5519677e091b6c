"""schema.graphql is the committed contract; it must match the code."""

from pathlib import Path

from graphql import print_schema

from schema.schema import schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_graphql_is_current():
    committed = SCHEMA_FILE.read_text()
    printed = print_schema(schema.graphql_schema)
    assert committed.strip() == printed.strip(), "schema.graphql is stale: run `make schema` and commit it"
