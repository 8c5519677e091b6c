"""Chooses the test backends and prints shell lines for `make test` to eval.

- CI=true: PostgreSQL and Redis are required; they are started if down, and a failure to reach
  them ends the run.
- Otherwise they are used when reachable, and an unreachable one falls back for real (its variable
  is unset): SQLite and locmem, and pytest skips, by name, what needs the real ones.
- DATABASE_URL=sqlite:///...: that file (its test copy, test-<name>); PostgreSQL is never contacted.
- TEST_SQLITE=1: SQLite and locmem even while PostgreSQL and Redis run; neither is contacted.

Only what the README names is written: PostgreSQL's `test_wxbackend_test` (created and dropped by each run;
`wxbackend_test` is created empty to connect through) and Redis db 15 under the `wxbtest` key prefix.
"""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sys
import time
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/wxbackend_test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
TEST_CACHE_KEY_PREFIX = "wxbtest"


def say(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr)


def postgres_ok(url: str) -> bool:
    try:
        import psycopg2
    except ImportError:
        return False
    parts = urlsplit(url)
    try:
        conn = psycopg2.connect(
            host=parts.hostname,
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password or None,
            dbname="postgres",
            connect_timeout=3,
        )
    except psycopg2.Error:
        return False
    try:
        conn.autocommit = True
        name = parts.path.lstrip("/")
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cur.fetchone() is None:
                # Django's test runner connects through it to create test_<name>.
                cur.execute(f'CREATE DATABASE "{name}"')
                say(f"created database {name}")
    finally:
        conn.close()
    return True


def redis_ok(url: str) -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def start_postgres() -> None:
    for version in sorted(glob.glob("/etc/postgresql/*")):
        cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", os.path.basename(version), "main", "start"]
        subprocess.run(cmd, check=False, capture_output=True)


def start_redis() -> None:
    cmd = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"
    subprocess.run(shlex.split(cmd), check=False, capture_output=True)


def wait(check, url: str, seconds: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check(url):
            return True
        time.sleep(0.5)
    return False


def choose(environ: dict[str, str]) -> tuple[list[str], int]:
    """(the shell lines, the exit status)."""
    ci = environ.get("CI", "").lower() == "true"
    forced = environ.get("TEST_SQLITE", "") not in ("", "0")
    db_url = environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    lines = []

    if forced and ci:
        say("CI=true runs on PostgreSQL and Redis; TEST_SQLITE=1 cannot be used with it.")
        return [], 1

    if forced:
        say("TEST_SQLITE=1: SQLite, whatever runs; PostgreSQL-only tests will be skipped.")
        lines.append("unset DATABASE_URL")
    elif urlsplit(db_url).scheme == "sqlite":
        say(f"SQLite: {db_url}")
        lines.append(f"export DATABASE_URL={shlex.quote(db_url)}")
    elif postgres_ok(db_url) or (ci and (start_postgres() or wait(postgres_ok, db_url))):
        lines.append(f"export DATABASE_URL={shlex.quote(db_url)}")
        say(f"PostgreSQL: {urlsplit(db_url).hostname}:{urlsplit(db_url).port or 5432}/{urlsplit(db_url).path[1:]}")
    elif ci:
        say(f"CI=true but PostgreSQL is unreachable at {db_url}; failing.")
        return [], 1
    else:
        say("PostgreSQL unreachable: using SQLite; PostgreSQL-only tests will be skipped.")
        lines.append("unset DATABASE_URL")

    if forced:
        say("TEST_SQLITE=1: locmem, whatever runs; Redis-only tests will be skipped.")
        lines += ["unset REDIS_URL", "export CACHE_URL=locmemcache://"]
    elif redis_ok(redis_url) or (ci and (start_redis() or wait(redis_ok, redis_url))):
        lines += [f"export REDIS_URL={shlex.quote(redis_url)}", "unset CACHE_URL"]
        say(f"Redis: {redis_url}, keys under {TEST_CACHE_KEY_PREFIX}:")
    elif ci:
        say(f"CI=true but Redis is unreachable at {redis_url}; failing.")
        return [], 1
    else:
        say("Redis unreachable: using locmem; Redis-only tests will be skipped.")
        lines += ["unset REDIS_URL", "export CACHE_URL=locmemcache://"]

    lines.append("export READ_DOT_ENV=0")
    # Tests clear their cache keys: only this prefix's, never a whole database.
    lines.append(f"export CACHE_KEY_PREFIX={TEST_CACHE_KEY_PREFIX}")
    return lines, 0


def main() -> int:
    lines, status = choose(dict(os.environ))
    for line in lines:
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
