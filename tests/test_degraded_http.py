"""Our own database or cache down, against a running server: clear answers, nothing lost, no 500.

A second server is pointed at a closed port (the cache, then the database); a private Redis is stopped
in the middle of a run and started again; PostgreSQL connections are killed under a persistent-
connection server (PostgreSQL only)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from providers.wechatpay import v2 as v2_xml
from tests.processes import clean_env, free_port, gunicorn, run_python, running_server

LOGIN = "mutation($c: String!) { wechatLogin(code: $c) { token } }"
ORDER = "mutation($i: CreateWechatPayOrderInput!) { createWechatPayOrder(input: $i) { codeUrl } }"
ORDER_INPUT = {"i": {"sku": "coffee", "quantity": 1, "tradeType": "NATIVE", "apiVersion": "V2"}}
V2_NOTIFY = "<xml><return_code>SUCCESS</return_code><out_trade_no>20261130x</out_trade_no><sign>AA</sign></xml>"
CLOSED = "127.0.0.1:9"  # the discard port: nothing listens there


def _graphql(url: str, query: str, variables: dict[str, Any] | None = None, token: str = "") -> tuple[int, Any]:
    headers = {"Authorization": f"JWT {token}"} if token else {}
    response = requests.post(
        f"{url}/graphql/", json={"query": query, "variables": variables or {}}, headers=headers, timeout=30
    )
    return response.status_code, response.json()


def _codes(answer: Any) -> list[str]:
    return [error["extensions"]["code"] for error in answer.get("errors", [])]


def _notifies_fail_cleanly(url: str) -> None:
    v2 = requests.post(
        f"{url}/notify/wechatpay/v2/", data=V2_NOTIFY.encode(), headers={"Content-Type": "text/xml"}, timeout=30
    )
    assert v2.status_code == 200 and v2_xml.parse_xml(v2.content)["return_code"] == "FAIL", v2.content
    v3 = requests.post(
        f"{url}/notify/wechatpay/v3/", data=b"{}", headers={"Content-Type": "application/json"}, timeout=30
    )
    assert 400 <= v3.status_code < 600 and v3.json()["code"] == "FAIL", v3.content


def _server_env(tmp_path: Path, port: int, **overrides: str) -> dict[str, str]:
    values = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "DEV_SECRETS_FILE": str(tmp_path / "secrets.json"),
    }
    return clean_env(**{**values, **overrides})


def test_the_cache_on_a_closed_port(tmp_path):
    port = free_port()
    env = _server_env(tmp_path, port, REDIS_URL=f"redis://{CLOSED}/0")
    assert run_python(["manage.py", "migrate", "--noinput"], env).returncode == 0
    assert run_python(["manage.py", "seed_demo_products"], env).returncode == 0
    with running_server(env, port=port, degraded=True) as url:
        assert requests.get(f"{url}/healthz", timeout=30).json() == {"status": "down", "down": ["cache"]}
        # The login's rate limits fail open; the sandbox, whose state is on the cache, is the provider down.
        status, answer = _graphql(url, LOGIN, {"c": "alice"})
        assert status == 200 and _codes(answer) == ["PROVIDER_UNAVAILABLE"], answer
        _notifies_fail_cleanly(url)


def test_the_database_on_a_closed_port(tmp_path):
    port = free_port()
    env = _server_env(tmp_path, port, DATABASE_URL=f"postgres://postgres@{CLOSED}/none")
    # gunicorn, as in production (runserver refuses to start without its database).
    with running_server(env, port=port, command=gunicorn(port, "--workers", "1"), degraded=True) as url:
        # Without Redis the cache is a table of that database: down with it.
        down = requests.get(f"{url}/healthz", timeout=30).json()
        assert down == {"status": "down", "down": ["database", "cache"]}, down
        # A login asks the sandbox (WeChat) first, whose state is in that cache: the provider is down.
        status, answer = _graphql(url, LOGIN, {"c": "alice"})
        assert status == 200 and _codes(answer) == ["PROVIDER_UNAVAILABLE"], answer
        status, answer = _graphql(url, "{ products { sku } }")
        assert status == 200 and _codes(answer) == ["SERVICE_UNAVAILABLE"], answer
        _notifies_fail_cleanly(url)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A Redis of this test's own (its URL, and a function stopping or starting it), cut mid-run."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process: list[subprocess.Popen[bytes]] = []

    def up(running: bool) -> None:
        if process:
            stopping = process.pop()
            stopping.terminate()
            stopping.wait(timeout=10)
        if running:
            args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            process.append(subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL))  # noqa: S603
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return
                except OSError:
                    assert time.monotonic() < deadline, "the private redis did not start"
                    time.sleep(0.1)

    up(True)
    try:
        yield f"redis://127.0.0.1:{port}/0", up
    finally:
        up(False)


@pytest.mark.redis
def test_redis_cut_in_the_middle_of_a_run_and_back(tmp_path, private_redis):
    redis_url, redis_running = private_redis
    port = free_port()
    env = _server_env(tmp_path, port, REDIS_URL=redis_url, RATELIMIT_LOGIN="3/m")
    with running_server(env, port=port, command=gunicorn(port, "--workers", "1"), outage=True) as url:
        assert run_python(["manage.py", "seed_demo_products"], env).returncode == 0
        token = _graphql(url, LOGIN, {"c": "before"})[1]["data"]["wechatLogin"]["token"]
        assert _graphql(url, ORDER, ORDER_INPUT, token)[1]["data"]["createWechatPayOrder"]["codeUrl"]

        redis_running(False)
        assert requests.get(f"{url}/healthz", timeout=30).json()["down"] == ["cache"]
        for n in range(5):  # over the login limit: with the cache down, it is not counted, not locked
            status, answer = _graphql(url, LOGIN, {"c": f"during{n}"})
            assert status == 200 and _codes(answer) == ["PROVIDER_UNAVAILABLE"], answer
        # The same purchase again needs no cache (the pending order is reused); a new one needs the
        # provider, the sandbox, whose state is on the cache.
        assert _graphql(url, ORDER, ORDER_INPUT, token)[1]["data"]["createWechatPayOrder"]["codeUrl"]
        another = {"i": {**ORDER_INPUT["i"], "quantity": 2}}
        status, answer = _graphql(url, ORDER, another, token)
        assert status == 200 and _codes(answer) == ["PROVIDER_UNAVAILABLE"], answer
        _notifies_fail_cleanly(url)

        redis_running(True)
        assert requests.get(f"{url}/healthz", timeout=30).json() == {"status": "ok", "down": []}
        assert _graphql(url, LOGIN, {"c": "after"})[1]["data"]["wechatLogin"]["token"]


@pytest.mark.postgres
def test_postgresql_connections_killed_under_load_are_recovered_without_a_restart(tmp_path):
    import psycopg2

    name = f"wxb_killed_{free_port()}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        port = free_port()
        env = _server_env(
            tmp_path, port, DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{name}", DB_CONN_MAX_AGE="600"
        )
        serving = gunicorn(port, "--workers", "2", "--threads", "2")
        with running_server(env, port=port, command=serving, outage=True) as url:
            assert run_python(["manage.py", "seed_demo_products"], env).returncode == 0
            for _ in range(8):  # every thread holds a persistent connection now
                assert _graphql(url, "{ products { sku } }")[1]["data"]["products"]
            with admin.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
                killed = cursor.rowcount
                assert killed >= 1
            codes = []
            for _ in range(16):
                status, answer = _graphql(url, "{ products { sku } }")
                assert status == 200, answer
                codes.append(_codes(answer)[0] if "errors" in answer else "ok")
            # A cut connection fails at most the one request that finds it, cleanly; then it is reopened.
            # (Which thread takes a request is the server's choice: one may find its cut connection late.)
            assert set(codes) <= {"ok", "SERVICE_UNAVAILABLE"}, codes
            # Each cut connection failed once at most: 16 requests over them would fail again and again otherwise.
            assert codes.count("SERVICE_UNAVAILABLE") <= killed, (killed, codes)
    finally:
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
