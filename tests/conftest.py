from __future__ import annotations

import io
import logging
import os
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from config import providers
from core.middleware import RequestIdFilter
from tests import browser
from tests.helpers import GraphQLClient

CI = os.environ.get("CI", "").lower() == "true"


def pytest_sessionstart(session: pytest.Session) -> None:
    if CI and (not settings.REDIS_URL or settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql"):
        pytest.exit("CI=true needs DATABASE_URL (PostgreSQL) and REDIS_URL (Redis); run `make test`.", returncode=1)
    if settings.CACHES["default"]["BACKEND"].endswith("DatabaseCache"):
        # Cache reads would be counted as the flows' SQL (pinned), and tests without the database could not clear it.
        pytest.exit(
            "The suite runs on Redis (REDIS_URL) or locmem (CACHE_URL=locmemcache://); run `make test`.", returncode=1
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_pg = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    for item in items:
        # CI installs Chromium (.ci/run): there a missing browser fails the test (tests.browser.chromium).
        if "browser" in item.keywords and not CI and not browser.available():
            item.add_marker(pytest.mark.skip(reason=browser.MISSING))
        if "postgres" in item.keywords and not on_pg:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL or start it)"))
        if "redis" in item.keywords and not settings.REDIS_URL:
            item.add_marker(pytest.mark.skip(reason="needs Redis (set REDIS_URL or start it)"))


def clear_cache() -> None:
    if settings.REDIS_URL:
        cache.delete_pattern("*")  # only this prefix's keys, never the whole database
        from django_redis import get_redis_connection

        conn = get_redis_connection("default")
        for key in conn.scan_iter(f"{settings.CACHE_KEY_PREFIX}:wxtoken:*"):
            conn.delete(key)
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _fresh_state() -> Any:
    clear_cache()
    providers.reset()
    yield
    providers.reset()


@pytest.fixture
def wechat_sandbox() -> Any:
    return providers.sandbox().providers["wechat"]


@pytest.fixture
def gql(client: Client, db: Any) -> GraphQLClient:
    return GraphQLClient(client)


@pytest.fixture
def console_log() -> Any:
    """(handler, text): the project's console handler (settings.LOGGING: its format and request-id
    filter, which caplog bypasses) writing into a string for the test's duration."""
    root = logging.getLogger()
    handlers = [h for h in root.handlers if any(isinstance(f, RequestIdFilter) for f in h.filters)]
    assert len(handlers) == 1, root.handlers
    handler = handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield handler, stream
    handler.setStream(previous)
