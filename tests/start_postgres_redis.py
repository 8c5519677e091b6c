"""Chooses the test backends and prints `export` lines for the shell (see `make test`).

CI=true: PostgreSQL and Redis are required; they are started if down, and a failure
to reach them ends the run. Otherwise they are used when reachable, and the suite
falls back to SQLite and locmem (skipping, by name, what needs the real ones).
"""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sys
import time
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/wxbackend"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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


def main() -> int:
    ci = os.environ.get("CI", "").lower() == "true"
    db_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    exports = {}

    if postgres_ok(db_url) or (ci and (start_postgres() or wait(postgres_ok, db_url))):
        exports["DATABASE_URL"] = db_url
        say(f"PostgreSQL: {urlsplit(db_url).hostname}:{urlsplit(db_url).port or 5432}")
    elif ci:
        say(f"CI=true but PostgreSQL is unreachable at {db_url}; failing.")
        return 1
    else:
        say("PostgreSQL unreachable: using SQLite; PostgreSQL-only tests will be skipped.")

    if redis_ok(redis_url) or (ci and (start_redis() or wait(redis_ok, redis_url))):
        exports["REDIS_URL"] = redis_url
        say(f"Redis: {urlsplit(redis_url).hostname}:{urlsplit(redis_url).port or 6379}")
    elif ci:
        say(f"CI=true but Redis is unreachable at {redis_url}; failing.")
        return 1
    else:
        say("Redis unreachable: using locmem; Redis-only tests will be skipped.")

    for name, value in exports.items():
        print(f"export {name}={shlex.quote(value)}")
    print("export READ_DOT_ENV=0")
    # Tests clear their cache keys; a separate prefix keeps a dev server's keys on the same Redis.
    print("export CACHE_KEY_PREFIX=wxbtest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
