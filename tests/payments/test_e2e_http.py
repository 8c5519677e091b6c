"""WeChat Pay over real HTTP against a running server: GraphQL, the sandbox cashier, notifies, refunds."""

import time

import pytest
import requests
from graphql_jwt.shortcuts import get_token

from accounts.models import WechatIdentity
from config import providers
from payments.models import Order
from tests.factories import ProductFactory, StaffFactory, UserFactory, WechatIdentityFactory
from tests.helpers import CREATE_ORDER, LOGIN, create_order_input, sandbox_notifies

ORDER = "query($n: String!) { order(outTradeNo: $n) { status transactionId refundedAmount } }"
REFUND = (
    'mutation($n: String!, $a: Int!) { refundOrder(outTradeNo: $n, amount: $a, reason: "e2e") { outRefundNo status } }'
)


@pytest.fixture
def server(live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url  # the sandbox posts notifies here, over HTTP
    providers.reset()
    ProductFactory(sku="coffee", price=1800)
    session = requests.Session()

    def gql(query, variables=None, token=None):
        headers = {"Authorization": f"JWT {token}"} if token else {}
        body = {"query": query, "variables": variables or {}}
        result = session.post(f"{live_server.url}/graphql/", json=body, headers=headers, timeout=30).json()
        assert "errors" not in result, result
        return result["data"]

    gql.url = live_server.url
    return gql


def _create(gql, token, trade_type, version):
    return gql(CREATE_ORDER, create_order_input(version=version, tradeType=trade_type), token)["createWechatPayOrder"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["V2", "V3"])
def test_pay_and_refund_over_http(server, version):
    token = server(LOGIN, {"code": "alice"})["wechatLogin"]["token"]
    created = _create(server, token, "JSAPI", version)
    number = created["order"]["outTradeNo"]
    assert created["payParams"]["package"].startswith("prepay_id=")

    page = requests.get(f"{server.url}/sandbox/pay/{number}", timeout=10)
    assert page.status_code == 200 and "¥18.00" in page.text
    paid = requests.post(f"{server.url}/sandbox/pay/{number}", timeout=30)
    assert paid.status_code == 202 and paid.json()["paid"] is True
    (delivery,) = sandbox_notifies(server.url, number)
    assert delivery["status"] == (204 if version == "V3" else 200)
    order = server(ORDER, {"n": number}, token)["order"]
    assert order["status"] == "PAID" and order["transactionId"]

    assert _create(server, token, "NATIVE", version)["codeUrl"].startswith("weixin://")
    assert _create(server, token, "H5", version)["h5Url"].startswith("https://")

    staff = StaffFactory(username=f"staff-{version}")
    refund = server(REFUND, {"n": number, "a": 1800}, get_token(staff))["refundOrder"]
    assert refund["status"] == "PROCESSING"
    # The sandbox completes the refund a moment later and posts its notify to our server.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        order = server(ORDER, {"n": number}, token)["order"]
        if order["status"] == "REFUNDED":
            break
        time.sleep(0.1)
    assert order == {**order, "status": "REFUNDED", "refundedAmount": 1800}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["V2", "V3"])
def test_an_official_account_user_pays_on_the_cashier_over_http(server, settings, version):
    # Logged in through the official account only (its web OAuth made this identity).
    user = UserFactory(username=f"h5-{version}")
    WechatIdentityFactory(
        user=user, kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT, appid=settings.WECHAT_OA_APPID, openid=f"o-h5-{version}"
    )
    token = get_token(user)
    created = _create(server, token, "JSAPI", version)
    number = created["order"]["outTradeNo"]
    assert created["payParams"]["appId"] == settings.WECHAT_OA_APPID

    paid = requests.post(f"{server.url}/sandbox/pay/{number}", timeout=30)
    assert paid.status_code == 202 and paid.json()["paid"] is True
    (delivery,) = sandbox_notifies(server.url, number)
    assert delivery["status"] == (204 if version == "V3" else 200)
    assert server(ORDER, {"n": number}, token)["order"]["status"] == "PAID"
    synced = server("mutation($n: String!) { syncOrder(outTradeNo: $n) { status } }", {"n": number}, token)
    assert synced["syncOrder"]["status"] == "PAID"
    assert Order.objects.get(out_trade_no=number).needs_attention is False
