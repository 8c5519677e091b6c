"""/healthz: 200 when the database and the cache answer, 503 naming what is down."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client

import core.health


class BrokenCache:
    def set(self, *_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError("cache is down")

    def get(self, *_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError("cache is down")

    def delete(self, *_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError("cache is down")


class ForgetfulCache:
    """Answers but stores nothing (e.g. a full or misconfigured cache)."""

    def set(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    def get(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    def delete(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def _broken_cursor(*_args: Any, **_kwargs: Any) -> Any:
    raise OperationalError("could not connect to server")


def test_healthz_ok(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "down": []}


def test_healthz_cache_down(client, db, monkeypatch):
    monkeypatch.setattr(core.health, "cache", BrokenCache())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "down": ["cache"]}


def test_healthz_cache_that_forgets_is_down(client, db, monkeypatch):
    monkeypatch.setattr(core.health, "cache", ForgetfulCache())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["cache"]


def test_healthz_database_down(client, db, monkeypatch):
    # Undone inside the test: the db fixture's teardown needs a working cursor.
    with monkeypatch.context() as patch:
        patch.setattr(core.health.connection, "cursor", _broken_cursor)
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "down": ["database"]}


def test_healthz_both_down(client, db, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(core.health.connection, "cursor", _broken_cursor)
        patch.setattr(core.health, "cache", BrokenCache())
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert sorted(body["down"]) == ["cache", "database"]


def test_healthz_probe_leaves_no_key_behind(client, db):
    from django.core.cache import cache

    client.get("/healthz")
    if hasattr(cache, "keys"):  # django-redis
        assert cache.keys("healthz:*") == []
    else:
        assert not any("healthz:" in key for key in cache._cache)  # locmem


@pytest.mark.parametrize("path,status", [("/healthz", 200), ("/graphql/", 301)])
def test_ssl_redirect_exempts_healthz(settings, db, path, status):
    # A load balancer probes over plain HTTP; everything else is redirected to HTTPS.
    settings.SECURE_SSL_REDIRECT = True
    client = Client()  # middleware is built on the first request, after the override
    response = client.get(path, HTTP_ACCEPT="application/json")
    assert response.status_code == status
