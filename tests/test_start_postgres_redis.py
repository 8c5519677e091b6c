"""tests/start_postgres_redis.py, which `make test` evals: what it picks, and that a fallback is real."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import start_postgres_redis as services
from tests.processes import BASE_DIR, clean_env

CLOSED = "127.0.0.1:9"  # discard port: nothing listens

_SHOW = (
    "import json, os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
    "from django.conf import settings as s;"
    "print(json.dumps([s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'],"
    " s.CACHES['default']['BACKEND'], s.REDIS_URL]))"
)


def _settings_after_eval(**env: str) -> list[str]:
    """What the suite's settings are after `make test`'s eval of the script's lines."""
    script = f'eval "$({sys.executable} tests/start_postgres_redis.py)" && {sys.executable} -c "{_SHOW}"'
    done = subprocess.run(  # noqa: S603
        ["bash", "-c", script],  # noqa: S607
        cwd=BASE_DIR,
        env=clean_env(**{"CI": "", **env}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def no_postgres_contact(monkeypatch):
    import psycopg2

    def refuse(*args, **kwargs):
        raise AssertionError("PostgreSQL was contacted")

    monkeypatch.setattr(psycopg2, "connect", refuse)


def test_a_sqlite_database_url_is_used_and_postgres_never_contacted(no_postgres_contact, tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    lines, status = services.choose({"DATABASE_URL": url, "REDIS_URL": f"redis://{CLOSED}/0"})
    assert status == 0
    assert f"export DATABASE_URL={url}" in lines
    assert {"unset REDIS_URL", "export CACHE_URL=locmemcache://"} <= set(lines), lines


def test_test_sqlite_forces_sqlite_and_locmem_without_contacting_either(no_postgres_contact, monkeypatch):
    import redis

    monkeypatch.setattr(redis.Redis, "from_url", lambda *a, **k: pytest.fail("Redis was contacted"))
    lines, status = services.choose({"TEST_SQLITE": "1", "DATABASE_URL": "postgres://postgres@127.0.0.1/x"})
    assert status == 0
    assert lines[:3] == ["unset DATABASE_URL", "unset REDIS_URL", "export CACHE_URL=locmemcache://"], lines


def test_ci_refuses_the_sqlite_switch():
    assert services.choose({"CI": "true", "TEST_SQLITE": "1"}) == ([], 1)


def test_unreachable_services_fall_back_for_real(tmp_path):
    # The variables were set, and unreachable: the suite must not go on pointing at them.
    engine, name, cache, redis_url = _settings_after_eval(
        DATABASE_URL=f"postgres://postgres@{CLOSED}/nowhere", REDIS_URL=f"redis://{CLOSED}/0"
    )
    assert (engine, cache, redis_url) == (
        "django.db.backends.sqlite3",
        "django.core.cache.backends.locmem.LocMemCache",
        "",
    )
    assert name == str(BASE_DIR / "db.sqlite3")


def test_a_sqlite_url_is_what_the_suite_runs_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    engine, name, _, _ = _settings_after_eval(DATABASE_URL=url, TEST_SQLITE="0")
    assert (engine, name) == ("django.db.backends.sqlite3", str(tmp_path / "x.sqlite3"))


@pytest.mark.postgres
@pytest.mark.redis
def test_reachable_services_are_the_ones_the_readme_names():
    engine, name, cache, redis_url = _settings_after_eval()
    assert (engine, name) == ("django.db.backends.postgresql", "wxbackend_test")
    assert (cache, redis_url) == ("django_redis.cache.RedisCache", "redis://127.0.0.1:6379/15")
