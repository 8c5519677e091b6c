"""The sandbox pages under /sandbox/, rendered from providers/sandbox/templates/sandbox/: the index and the cashier."""

from __future__ import annotations

import html
import json
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings

from config import providers
from tests.factories import ProductFactory
from tests.helpers import CREATE_ORDER, LOGIN, create_order_input, sandbox_notifies
from tests.processes import clean_env, free_port, gunicorn, run_python, running_server

WECHAT_ENDPOINTS = [
    "GET /sns/jscode2session",
    "POST /cgi-bin/stable_token",
    "GET /cgi-bin/token",
    "POST /wxa/business/getuserphonenumber",
    "GET /wxa/checksession",
]


def _form_actions(page: str) -> list[str]:
    return [html.unescape(action) for action in re.findall(r'<form[^>]* method="post" action="([^"]*)">', page)]


def test_http_index_page_lists_endpoints_fault_kinds_and_pending_faults(live_server, transactional_db):
    providers.sandbox().set_fault("wechatpay", "bad_signature", 2)
    answer = requests.get(live_server.url + "/sandbox/", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "Provider sandbox" in answer.text
    assert django_settings.WECHAT_MINIPROGRAM_APPID in answer.text
    for endpoint in WECHAT_ENDPOINTS:
        assert f"<code>{endpoint}</code>" in answer.text
    assert "timeout|http_500|malformed|bad_signature" in answer.text  # the fault kinds POST /sandbox/faults takes
    # The pending faults as JSON, escaped into the page.
    (pending,) = re.findall(r'<code id="pending-faults">([^<]*)</code>', answer.text)
    assert json.loads(html.unescape(pending)) == {"wechatpay": {"fault": "bad_signature", "count": 2}}


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_cashier_page_shows_the_order_and_its_pay_and_close_forms(gql, client, version):
    ProductFactory(sku="coffee", title="Coffee", price=1800)
    gql.login("alice")
    created = gql(CREATE_ORDER, create_order_input(version=version))
    assert "errors" not in created, created
    number = created["data"]["createWechatPayOrder"]["order"]["outTradeNo"]

    page = client.get(f"/sandbox/pay/{number}")
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    text = page.content.decode()
    assert "<b>Coffee</b>" in text
    assert "Amount: ¥18.00 (1800 fen)" in text
    assert f"WeChat Pay {version}" in text
    assert '<b id="state">NOTPAY</b>' in text
    assert "<button>Pay ¥18.00</button>" in text and "<button>Close</button>" in text
    assert _form_actions(text) == [f"/sandbox/pay/{number}", f"/sandbox/pay/{number}/close"]
    # The Close form's action is live: posting it closes the order at the sandbox.
    assert client.post(_form_actions(text)[1]).json() == {"state": "CLOSED"}
    closed = client.get(f"/sandbox/pay/{number}").content.decode()
    assert '<b id="state">CLOSED</b>' in closed
    assert _form_actions(closed) == []  # nothing left to pay or close


def test_cashier_page_of_an_unknown_order_is_a_404_page_saying_so(client):
    page = client.get("/sandbox/pay/no-such-order")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")
    text = page.content.decode()
    assert "No such order at the sandbox." in text
    assert _form_actions(text) == []


def test_twenty_pay_presses_at_once_hold_no_worker_and_pay_once(tmp_path):
    # The sandbox once delivered the notify inside the Pay request, back to the same server: 20 presses
    # held every worker (502s after 10 s). And its pay() minted a transaction id per concurrent press.
    port = free_port()
    database = tmp_path / "db.sqlite3"
    env = clean_env(
        DATABASE_URL=f"sqlite:///{database}",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        DEV_SECRETS_FILE=str(tmp_path / "secrets.json"),
    )
    with running_server(env, port=port, command=gunicorn(port, "--workers", "1", "--threads", "2")) as url:
        assert run_python(["manage.py", "seed_demo_products"], env).returncode == 0

        def graphql(query: str, variables: dict[str, Any], token: str = "") -> Any:
            headers = {"Authorization": f"JWT {token}"} if token else {}
            body = {"query": query, "variables": variables}
            answer = requests.post(f"{url}/graphql/", json=body, headers=headers, timeout=30).json()
            assert "errors" not in answer, answer
            return answer["data"]

        token = graphql(LOGIN, {"code": "presser"})["wechatLogin"]["token"]
        number = graphql(CREATE_ORDER, create_order_input(version="V3"), token)["createWechatPayOrder"]["order"][
            "outTradeNo"
        ]
        with ThreadPoolExecutor(max_workers=20) as pool:
            presses = list(
                pool.map(lambda _: requests.post(f"{url}/sandbox/pay/{number}", timeout=30).status_code, range(20))
            )
        assert presses == [202] * 20
        answers = sandbox_notifies(url, number, count=20)
        assert [a["status"] for a in answers] == [204] * 20, answers
    with sqlite3.connect(database) as db:
        events = db.execute(
            "SELECT e.outcome FROM payments_paymentevent e JOIN payments_order o ON o.id = e.order_id"
            " WHERE o.out_trade_no = ?",
            [number],
        ).fetchall()
    # One payment: a second transaction id would have been stored as a CONFLICT beside it.
    assert events == [("APPLIED",)]
