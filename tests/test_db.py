"""config.db.Statement: placeholders, prepared once per connection, recovery behind a pooler, and off."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.db import Statement
from tests.conftest import LOGIN, GraphQLClient


def test_placeholders_must_match_their_types():
    with pytest.raises(ValueError):
        Statement("wxb_t1", "SELECT %s, %s", ("int",))
    with pytest.raises(ValueError):
        Statement("wxb_t2", "SELECT %(a)s", {"a": "int", "b": "int"})
    with pytest.raises(ValueError):
        Statement("wxb_t3", "SELECT %(a)s, %(b)s", {"a": "int"})


@pytest.mark.django_db
@pytest.mark.parametrize("prepared", [True, False])
def test_named_parameters_may_repeat(settings, prepared):
    settings.DB_PREPARED_STATEMENTS = prepared
    statement = Statement("wxb_t_named", "SELECT %(a)s + %(b)s + %(a)s", {"a": "int", "b": "int"})
    with connection.cursor() as cursor:
        for a, b in ((1, 10), (2, 20)):
            statement.execute(cursor, {"b": b, "a": a})
            assert cursor.fetchone()[0] == 2 * a + b


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_prepared_once_and_recovered_after_deallocate():
    statement = Statement("wxb_t_recover", "SELECT %(x)s * 2", {"x": "int"})
    with CaptureQueriesContext(connection) as ctx, connection.cursor() as cursor:
        statement.execute(cursor, {"x": 1})
        statement.execute(cursor, {"x": 2})
        cursor.execute("DEALLOCATE ALL")  # what a pooler's DISCARD ALL does behind our back
        statement.execute(cursor, {"x": 3})
        assert cursor.fetchone()[0] == 6
    verbs = [q["sql"].split()[0] for q in ctx.captured_queries]
    assert verbs == ["PREPARE", "EXECUTE", "EXECUTE", "DEALLOCATE", "EXECUTE", "PREPARE", "EXECUTE"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_prepared_statements_off_the_hot_paths_run_plain_sql(client, settings):
    settings.DB_PREPARED_STATEMENTS = False
    gql = GraphQLClient(client)
    with CaptureQueriesContext(connection) as ctx:
        gql.login("gus")
        assert gql(LOGIN, {"code": "gus:2"})["data"]["wechatLogin"]["created"] is False
        assert gql("{ orders(first: 5) { edges { node { outTradeNo } } } }")["data"]["orders"]["edges"] == []
    verbs = {q["sql"].split()[0].upper() for q in ctx.captured_queries}
    assert "PREPARE" not in verbs and "EXECUTE" not in verbs
