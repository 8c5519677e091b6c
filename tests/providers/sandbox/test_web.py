"""The sandbox pages under /sandbox/, rendered from providers/sandbox/templates/sandbox/: the index and the cashier."""

from __future__ import annotations

import html
import json
import re
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings as django_settings
from django.test import Client

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


def _order(gql: Any, version: str = "V3") -> str:
    ProductFactory(sku="coffee", title="Coffee", price=1800)
    gql.login("alice")
    created = gql(CREATE_ORDER, create_order_input(version=version))
    assert "errors" not in created, created
    return created["data"]["createWechatPayOrder"]["order"]["outTradeNo"]  # type: ignore[no-any-return]


PAGE = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser's form post asks for


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_cashier_page_shows_the_order_and_its_buttons(gql, client, version):
    number = _order(gql, version)
    page = client.get(f"/sandbox/pay/{number}")
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    text = page.content.decode()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    assert "<b>Coffee</b>" in text
    assert '<div class="amount" id="amount">¥18.00</div>' in text and "1800 fen" in text
    assert f"WeChat Pay {version}" in text
    assert '<span class="state NOTPAY" id="state">NOTPAY</span>' in text
    assert '<button class="primary">Pay ¥18.00</button>' in text and "<button>Close</button>" in text
    pay, close = f"/sandbox/pay/{number}", f"/sandbox/pay/{number}/close"
    assert _form_actions(text) == [pay, pay, pay, close]  # Pay, User is paying, Payment fails, Close
    # The Close form's action is live: posting it from the page closes the order and shows the cashier again.
    closed = client.post(close, **PAGE)
    assert closed.status_code == 303 and closed["Location"] == pay
    text = client.get(pay).content.decode()
    assert '<span class="state CLOSED" id="state">CLOSED</span>' in text
    assert _form_actions(text) == []  # nothing left to pay or close


def test_after_pay_the_page_shows_the_result_and_our_servers_answer(transactional_db, gql, client):
    number = _order(gql)
    simulator = providers.sandbox().providers["wechatpay"]
    notifies = Client()  # the notify reaches our view in-process, from the sandbox's thread

    def deliver(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        answer = notifies.post(urlsplit(url).path, body, content_type=headers.pop("Content-Type"), headers=headers)
        return answer.status_code, answer.content.decode()

    simulator.deliver = deliver
    pressed = client.post(f"/sandbox/pay/{number}", **PAGE)
    # A page, not JSON: the browser goes on to the result page (and a reload never pays twice).
    assert pressed.status_code == 303 and pressed["Location"] == f"/sandbox/pay/{number}/result"
    deadline = time.monotonic() + 20
    while not simulator.deliveries(number):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    result = client.get(pressed["Location"])
    text = result.content.decode()
    assert result.status_code == 200 and "<h1>Paid</h1>" in text
    assert '<span class="state SUCCESS" id="state">SUCCESS</span>' in text
    (answer,) = re.findall(r'<ol class="deliveries" id="deliveries">\s*<li>(.*?)</li>', text, re.S)
    assert answer.startswith("copy 1, attempt 1 at ") and ": HTTP 204 " in answer, answer
    assert f'href="/sandbox/pay/{number}"' in text and 'href="/sandbox/"' in text


@pytest.mark.parametrize(("outcome", "heading"), [("USERPAYING", "entering the password"), ("PAYERROR", "failed")])
def test_the_failure_buttons_leave_the_order_payable(gql, client, outcome, heading):
    number = _order(gql)
    pressed = client.post(f"/sandbox/pay/{number}", {"outcome": outcome}, **PAGE)
    assert pressed.status_code == 303
    text = client.get(pressed["Location"]).content.decode()
    assert heading in text and f'id="state">{outcome}</span>' in text
    assert "No notify is sent for this outcome" in text
    assert '<button class="primary">Pay ¥18.00</button>' in client.get(f"/sandbox/pay/{number}").content.decode()


def test_the_index_lists_recent_orders_linking_to_their_cashiers(gql, client):
    assert "No orders yet" in client.get("/sandbox/").content.decode()
    first, second = _order(gql), _order_again(gql)
    text = client.get("/sandbox/").content.decode()
    links = re.findall(r'<a class="number" href="/sandbox/pay/([^"]+)">', text)
    assert links == [second, first]  # newest first
    assert f'href="/sandbox/pay/{first}/notifies"' in text and 'href="/sandbox/faults"' in text
    for path in ("/graphql/", "/admin/", "/healthz"):
        assert f'href="{path}"' in text


def _order_again(gql: Any) -> str:
    created = gql(CREATE_ORDER, create_order_input(quantity=2))
    return created["data"]["createWechatPayOrder"]["order"]["outTradeNo"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", ["/sandbox/pay/no-such-order", "/sandbox/pay/no-such-order/result"])
def test_an_unknown_order_is_a_styled_404_page_saying_so(client, path):
    page = client.get(path)
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")
    text = page.content.decode()
    assert '<p id="problem">No such order at the sandbox.</p>' in text
    assert '<a href="/sandbox/">Back to the sandbox' in text and '<meta name="viewport"' in text
    assert _form_actions(text) == []
    # A button pressed on a stale page gets the same page; an API client still gets JSON.
    assert client.post(path if path.endswith("order") else "/sandbox/pay/no-such-order", **PAGE).status_code == 404
    assert client.post("/sandbox/pay/no-such-order").json() == {"error": "No such order at the sandbox."}


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


def test_the_json_endpoints_refuse_what_they_do_not_take(client):
    def post(url: str, body: Any = None) -> Any:
        return client.post(url, body, content_type="application/json") if body is not None else client.post(url)

    assert post("/sandbox/pay/no-such-order", {"outcome": "PAYERROR"}).status_code == 404
    assert post("/sandbox/pay/no-such-order", {"outcome": "PAID-TWICE"}).json()["error"].startswith("send JSON")
    assert post("/sandbox/pay/no-such-order/refund-outcome", {"outcome": "CLOSED"}).status_code == 404
    assert post("/sandbox/pay/no-such-order/refund-outcome").status_code == 400  # says which outcome
    assert client.get("/sandbox/refund/no-such-refund").status_code == 404
    assert post("/sandbox/refund/no-such-refund").status_code == 404
    assert post("/sandbox/refund/no-such-refund", {"outcome": "PROCESSING"}).status_code == 400
    assert client.put("/sandbox/refund/no-such-refund").status_code == 405
