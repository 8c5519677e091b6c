"""schema.ratelimit: limits counted on the shared cache, failing open while it is down."""

from __future__ import annotations

import logging

from django_redis.exceptions import ConnectionInterrupted

import schema.ratelimit
from accounts.models import User
from tests.helpers import LOGIN, error_code


def _cache_down(*_args, **_kwargs):
    raise ConnectionInterrupted("Redis ConnectionError: Error 111 connecting. Connection refused.")


def test_a_limit_fails_open_with_a_warning_while_the_cache_is_down(gql, settings, monkeypatch, caplog):
    settings.RATELIMIT_LOGIN = "1/m"
    monkeypatch.setattr(schema.ratelimit, "is_ratelimited", _cache_down)
    with caplog.at_level(logging.WARNING, logger="schema.ratelimit"):
        assert gql.login("alice")["created"] is True
        assert gql.login("alice:2")["created"] is False  # over 1/m: not counted, so not refused
    warnings = [r.getMessage() for r in caplog.records if r.name == "schema.ratelimit"]
    assert warnings and all("not counted: the cache is unavailable" in w for w in warnings)
    assert User.objects.count() == 1


def test_a_limit_still_refuses_when_the_cache_answers(gql, settings):
    settings.RATELIMIT_LOGIN = "1/m"
    gql.login("bob")
    assert error_code(gql(LOGIN, {"code": "bob:2"})) == "RATE_LIMITED"
