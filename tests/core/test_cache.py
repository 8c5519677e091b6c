"""The embedded default's cache: a table in its SQLite database, shared by the server, management
commands and restarts (a locmem cache once stranded the sandbox's orders in the process that made them)."""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.helpers import CREATE_ORDER, LOGIN, create_order_input, graphql_over_http, sandbox_notifies
from tests.processes import clean_env, free_port, run_python, running_server

_COUNTERS = """
import json, threading
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection

call_command("migrate", verbosity=0)
from django.core.cache import caches
print(json.dumps({"backend": type(caches["default"]).__module__ + "." + type(caches["default"]).__name__}))
cache.set("n", 400)

def worker():
    for _ in range(25):
        cache.decr("n")
    connection.close()

threads = [threading.Thread(target=worker) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"left": cache.get("n")}))
"""


def _embedded(tmp_path: Any, **extra: str) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", DEV_SECRETS_FILE=str(tmp_path / "s.json"), **extra
    )


def test_the_embedded_cache_is_a_database_table_whose_counters_lose_no_update(tmp_path):
    # Sandbox faults are counted down by concurrent requests: 8 threads x 25 decrements of 400 leave 200.
    done = run_python(["-c", _COUNTERS], _embedded(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines == [{"backend": "core.cache.DatabaseCache"}, {"left": 200}], lines


def test_reconcile_by_hand_and_a_restart_see_the_servers_sandbox_orders(tmp_path):
    port = free_port()
    # Notifies go to a port nobody serves: the order is paid at the sandbox and still PENDING here.
    env = _embedded(tmp_path, PUBLIC_BASE_URL=f"http://127.0.0.1:{free_port()}")
    with running_server(env, port=port) as url:
        assert run_python(["manage.py", "seed_demo_products"], env).returncode == 0
        token = graphql_over_http(url, LOGIN, {"code": "shared"})["wechatLogin"]["token"]
        paid = graphql_over_http(url, CREATE_ORDER, create_order_input(version="V3"), token)["createWechatPayOrder"]
        paid_no = paid["order"]["outTradeNo"]
        assert requests.post(f"{url}/sandbox/pay/{paid_no}", timeout=30).status_code == 202
        assert sandbox_notifies(url, paid_no)[0]["status"] != 200
        pending = graphql_over_http(url, CREATE_ORDER, create_order_input(version="V2", quantity=2), token)
        pending_no = pending["createWechatPayOrder"]["order"]["outTradeNo"]

    # Another process, the server stopped: the sandbox's state is in the database, not in the server.
    reconciled = run_python(["manage.py", "reconcile_orders", "--older-than", "0"], env)
    assert reconciled.returncode == 0, reconciled.stderr
    assert "checked 2 orders: 1 paid, 0 closed; 0 refunds completed; 0 failed" in reconciled.stdout, reconciled.stdout

    # Restarted, the server's sandbox still knows the order placed before ("No such order at the
    # sandbox" when its state was the old process's memory): paid at the cashier, then synced.
    with running_server(env, port=port) as url:
        assert requests.post(f"{url}/sandbox/pay/{pending_no}", timeout=30).status_code == 202
        sandbox_notifies(url, pending_no)
        sync = "mutation($n: String!) { syncOrder(outTradeNo: $n) { status } }"
        assert graphql_over_http(url, sync, {"n": pending_no}, token) == {"syncOrder": {"status": "PAID"}}
        query = "query($n: String!) { order(outTradeNo: $n) { status } }"
        assert graphql_over_http(url, query, {"n": paid_no}, token) == {"order": {"status": "PAID"}}
