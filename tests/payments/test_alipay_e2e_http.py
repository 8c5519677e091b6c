"""Alipay over real HTTP against a running server in sandbox mode: GraphQL, the pay URL opened at the
sandbox gateway, its cashier, scan and app pages, the notify, the return page, refunds."""

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from graphql_jwt.shortcuts import get_token

from config import providers
from tests.factories import ProductFactory, StaffFactory
from tests.helpers import LOGIN, graphql_over_http

FRONT_END = "shop.example"  # the front end's host, allowed in ALIPAY_RETURN_HOSTS
CREATE = (
    "mutation C($input: CreateAlipayOrderInput!) { createAlipayOrder(input: $input) {"
    " order { outTradeNo status amount provider apiVersion } payUrl orderString qrCode } }"
)
ORDER = "query($n: String!) { order(outTradeNo: $n) { status transactionId refundedAmount } }"
REFUND = (
    'mutation($n: String!, $a: Int!) { refundOrder(outTradeNo: $n, amount: $a, reason: "e2e") { outRefundNo status } }'
)
PAGE = {"Accept": "text/html"}  # the sandbox's pages answer a browser with pages and redirects


@pytest.fixture
def server(live_server: Any, settings: Any) -> str:
    settings.PUBLIC_BASE_URL = live_server.url  # the sandbox posts notifies here, over HTTP
    settings.ALIPAY_GATEWAY = f"{live_server.url}/sandbox/alipay/gateway.do"
    settings.ALIPAY_RETURN_HOSTS = [FRONT_END]
    providers.reset()
    ProductFactory(sku="coffee", price=1800)
    return str(live_server.url)


def _notified(url: str, out_trade_no: str, event: str = "pay", timeout: float = 30.0) -> list[dict[str, Any]]:
    """The sandbox's deliveries of one notify of the trade, once one has been answered."""
    deadline = time.monotonic() + timeout
    while True:
        seen = requests.get(f"{url}/sandbox/alipay/cashier/{out_trade_no}/notifies", timeout=10).json()
        deliveries = seen["events"].get(event, [])
        if deliveries:
            return deliveries  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)


def _create(url: str, token: str, method: str, **extra: str) -> dict[str, Any]:
    variables = {"input": {"sku": "coffee", "quantity": 1, "method": method, **extra}}
    return graphql_over_http(url, CREATE, variables, token)["createAlipayOrder"]  # type: ignore[no-any-return]


@pytest.mark.django_db(transaction=True)
def test_pay_by_page_qr_and_app_then_refund_over_http(server):
    token = graphql_over_http(server, LOGIN, {"code": "alice"})["wechatLogin"]["token"]
    browser = requests.Session()

    # PAGE: the browser opens payUrl at the gateway, which shows the cashier.
    created = _create(server, token, "PAGE", returnUrl=f"http://{FRONT_END}/paid?cart=7")
    number = created["order"]["outTradeNo"]
    assert (created["order"]["provider"], created["order"]["apiVersion"]) == ("ALIPAY", None)
    cashier = browser.get(created["payUrl"], headers=PAGE, timeout=10)
    assert cashier.status_code == 200 and "¥18.00" in cashier.text, cashier.text[:500]
    assert urlsplit(cashier.url).path == f"/sandbox/alipay/cashier/{number}"
    # Pay: Alipay sends the notify, and the browser to our return page with the signed parameters...
    paid = browser.post(cashier.url, headers=PAGE, allow_redirects=False, timeout=30)
    assert paid.status_code == 303
    back = urlsplit(paid.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == f"{server}/pay/alipay/return/"
    assert parse_qs(back.query)["method"] == ["alipay.trade.page.pay.return"]
    # ...which asks Alipay, then sends the browser on to the front end's page with the status.
    returned = browser.get(paid.headers["Location"], allow_redirects=False, timeout=30)
    assert returned.status_code == 302
    landing = urlsplit(returned.headers["Location"])
    assert (landing.netloc, landing.path) == (FRONT_END, "/paid")
    assert parse_qs(landing.query) == {"cart": ["7"], "outTradeNo": [number], "status": ["PAID"]}
    (delivery,) = _notified(server, number)
    assert (delivery["status"], delivery["body"]) == (200, "success"), delivery
    order = graphql_over_http(server, ORDER, {"n": number}, token)["order"]
    assert order["status"] == "PAID" and order["transactionId"].startswith("2026")

    # A return redirect with its amount changed: the plain error page, nothing changed.
    tampered = paid.headers["Location"].replace("total_amount=18.00", "total_amount=0.01")
    assert tampered != paid.headers["Location"]
    refused = browser.get(tampered, allow_redirects=False, timeout=10)
    assert refused.status_code == 400 and "Payment not confirmed" in refused.text

    # QR: the qr_code opens the sandbox's scan page, which pays.
    qr = _create(server, token, "QR")
    qr_number = qr["order"]["outTradeNo"]
    scanned = browser.get(qr["qrCode"], headers=PAGE, timeout=10)
    assert scanned.status_code == 200 and "¥18.00" in scanned.text
    assert browser.post(f"{server}/sandbox/alipay/cashier/{qr_number}", timeout=30).status_code == 202
    assert _notified(server, qr_number)[0]["status"] == 200
    assert graphql_over_http(server, ORDER, {"n": qr_number}, token)["order"]["status"] == "PAID"

    # APP: the sandbox's "Alipay app" takes the order string and pays.
    app = _create(server, token, "APP")
    app_number = app["order"]["outTradeNo"]
    opened = browser.post(
        f"{server}/sandbox/alipay/app", data={"order_string": app["orderString"]}, headers=PAGE, timeout=10
    )
    assert opened.status_code == 200 and urlsplit(opened.url).path == f"/sandbox/alipay/cashier/{app_number}"
    assert browser.post(opened.url, timeout=30).status_code == 202
    assert _notified(server, app_number)[0]["status"] == 200
    assert graphql_over_http(server, ORDER, {"n": app_number}, token)["order"]["status"] == "PAID"

    # Staff refund part, then the rest: REFUNDED, with the refunds' notifies acknowledged.
    staff = get_token(StaffFactory())
    first = graphql_over_http(server, REFUND, {"n": number, "a": 800}, staff)["refundOrder"]
    assert first["status"] == "SUCCESS"
    order = graphql_over_http(server, ORDER, {"n": number}, token)["order"]
    assert (order["status"], order["refundedAmount"]) == ("PAID", 800)
    rest = graphql_over_http(server, REFUND, {"n": number, "a": 1000}, staff)["refundOrder"]
    assert rest["status"] == "SUCCESS"
    order = graphql_over_http(server, ORDER, {"n": number}, token)["order"]
    assert (order["status"], order["refundedAmount"]) == ("REFUNDED", 1800)
    for refund in (first, rest):
        (delivery,) = _notified(server, number, f"refund:{refund['outRefundNo']}")
        assert (delivery["status"], delivery["body"]) == (200, "success"), delivery
