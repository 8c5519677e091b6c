"""schema.graphql is the committed contract; it must match the code."""

from pathlib import Path

from graphql import print_schema

from schema.schema import schema

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_schema_graphql_is_current():
    committed = SCHEMA_FILE.read_text()
    printed = print_schema(schema.graphql_schema)
    assert committed.strip() == printed.strip(), "schema.graphql is stale: run `make schema` and commit it"


def test_every_error_code_is_documented_in_the_enum():
    from core.errors import ErrorCode

    assert [c.value for c in ErrorCode] == [
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "BAD_USER_INPUT",
        "NOT_FOUND",
        "CONFLICT",
        "RATE_LIMITED",
        "PROVIDER_ERROR",
        "PROVIDER_UNAVAILABLE",
        "INTERNAL",
    ]
