"""The sandbox pages under /sandbox/, rendered from providers/sandbox/templates/sandbox/: the index and the cashier."""

from __future__ import annotations

import html
import json
import re

import pytest
import requests
from django.conf import settings as django_settings

from config import providers
from tests.factories import ProductFactory
from tests.helpers import CREATE_ORDER, create_order_input

WECHAT_ENDPOINTS = [
    "GET /sns/jscode2session",
    "POST /cgi-bin/stable_token",
    "GET /cgi-bin/token",
    "POST /wxa/business/getuserphonenumber",
    "GET /wxa/checksession",
]


def _form_actions(page: str) -> list[str]:
    return [html.unescape(action) for action in re.findall(r'<form method="post" action="([^"]*)">', page)]


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
