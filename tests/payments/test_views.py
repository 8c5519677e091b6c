"""The notify views against a server run as `make run` runs it (runserver, SQLite, the sandbox)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import CREATE_ORDER, LOGIN, create_order_input
from tests.processes import clean_env, free_port, run_python, running_server

ORDER = "query O($n: String!) { order(outTradeNo: $n) { status transactionId } }"
REFRESH = "mutation R($t: String!) { refreshToken(refreshToken: $t) { token refreshToken } }"


class Api:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"JWT {token}"} if token else {}
        body = {"query": query, "variables": variables or {}}
        result = requests.post(f"{self.url}/graphql/", json=body, headers=headers, timeout=30).json()
        assert "errors" not in result, result
        return result["data"]


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Path]]:
    """The embedded default: runserver on a SQLite file, no Redis, the sandbox; and that file."""
    database = tmp_path_factory.mktemp("sqlite-server") / "db.sqlite3"
    port = free_port()
    env = clean_env(DATABASE_URL=f"sqlite:///{database}", PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    with running_server(env, port=port) as url:
        seeded = run_python(["manage.py", "seed_demo_products"], env)
        assert seeded.returncode == 0, seeded.stderr
        yield Api(url), database


def _rows(database: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as db:
        return db.execute(sql, params).fetchall()


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_twenty_concurrent_identical_notifies_on_sqlite_all_succeed_and_apply_once(sqlite_server, version):
    api, database = sqlite_server
    token = api(LOGIN, {"code": f"sqlite-{version}"})["wechatLogin"]["token"]
    created = api(CREATE_ORDER, create_order_input(version=version), token)["createWechatPayOrder"]
    number = created["order"]["outTradeNo"]

    # The sandbox cashier pays, then sends the one signed notify 20 times at once over HTTP.
    paid = requests.post(f"{api.url}/sandbox/pay/{number}?duplicates=20", timeout=60).json()

    assert paid["notified"] is True and len(paid["answers"]) == 20, paid
    if version == "V2":
        assert all(a["status"] == 200 and "<return_code><![CDATA[SUCCESS]]>" in a["body"] for a in paid["answers"])
    else:
        assert all(a == {"status": 204, "body": ""} for a in paid["answers"]), paid["answers"]
    order = api(ORDER, {"n": number}, token)["order"]
    assert order["status"] == "PAID" and order["transactionId"]
    events = _rows(
        database,
        "SELECT e.outcome, e.kind FROM payments_paymentevent e JOIN payments_order o ON o.id = e.order_id "
        "WHERE o.out_trade_no = ?",
        number,
    )
    assert events == [("APPLIED", "TRANSACTION.SUCCESS")]


def test_concurrent_logins_and_refreshes_on_sqlite_all_succeed(sqlite_server):
    api, database = sqlite_server
    n = 10
    with ThreadPoolExecutor(max_workers=n) as pool:
        logins = list(pool.map(lambda k: api(LOGIN, {"code": f"queue-{k}"})["wechatLogin"], range(n)))
    assert all(login["created"] for login in logins) and len({login["user"]["id"] for login in logins}) == n
    with ThreadPoolExecutor(max_workers=n) as pool:
        refreshed = list(pool.map(lambda login: api(REFRESH, {"t": login["refreshToken"]}), logins))
    assert len({r["refreshToken"]["refreshToken"] for r in refreshed}) == n
    rotated = _rows(database, "SELECT COUNT(*) FROM accounts_refreshtoken WHERE rotated")
    assert rotated == [(n,)]
