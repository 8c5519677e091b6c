"""The WeChat Pay flows through GraphQL, the sandbox and our notify views, in-process."""

import pytest

from payments.models import Order, PaymentEvent, Refund
from tests.helpers import error_code
from tests.payments.conftest import CREATE

ORDER = "query O($n: String!) { order(outTradeNo: $n) { outTradeNo status transactionId paidAt refundedAmount } }"
REFUND = (
    'mutation R($n: String!, $a: Int!) { refundOrder(outTradeNo: $n, amount: $a, reason: "test") '
    "{ outRefundNo amount status } }"
)


def create(gql, sku="coffee", quantity=1, trade_type="JSAPI", api_version="V3"):
    variables = {"input": {"sku": sku, "quantity": quantity, "tradeType": trade_type, "apiVersion": api_version}}
    result = gql(CREATE, variables)
    assert "errors" not in result, result
    return result["data"]["createWechatPayOrder"]


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_jsapi_pay_flow(gql, products, wechatpay_sandbox, version):
    gql.login("alice")
    created = create(gql, quantity=2, api_version=version)
    order = created["order"]
    assert order["amount"] == 3600 and order["status"] == "PENDING"
    params = created["payParams"]
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["package"].startswith("prepay_id=")
    assert params["signType"] == ("RSA" if version == "V3" else "HMAC-SHA256")

    wechatpay_sandbox.pay(order["outTradeNo"])
    status, body = wechatpay_sandbox.send_pay_notify(order["outTradeNo"])
    assert status == (204 if version == "V3" else 200)
    if version == "V2":
        assert "<return_code><![CDATA[SUCCESS]]></return_code>" in body
    paid = gql(ORDER, {"n": order["outTradeNo"]})["data"]["order"]
    assert paid["status"] == "PAID" and paid["transactionId"] and paid["paidAt"]
    assert PaymentEvent.objects.count() == 1

    # A duplicate notify changes nothing and is still acknowledged.
    assert wechatpay_sandbox.send_pay_notify(order["outTradeNo"])[0] == status
    assert PaymentEvent.objects.count() == 1


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_native_h5_app(gql, products, wechatpay_sandbox, version):
    gql.login("alice")
    assert create(gql, trade_type="NATIVE", api_version=version)["codeUrl"].startswith("weixin://")
    assert create(gql, trade_type="H5", api_version=version)["h5Url"].startswith("https://")
    app = create(gql, trade_type="APP", api_version=version)["appParams"]
    assert app["package"] == "Sign=WXPay" and app["prepayid"]


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_refund_flow(gql, products, wechatpay_sandbox, django_user_model, version):
    gql.login("alice")
    order = create(gql, api_version=version)["order"]
    wechatpay_sandbox.pay(order["outTradeNo"])
    wechatpay_sandbox.send_pay_notify(order["outTradeNo"])
    buyer_token = gql.token
    staff = django_user_model.objects.create_user(username="staff", password="x", is_staff=True)
    from graphql_jwt.shortcuts import get_token

    gql.token = get_token(staff)
    partial = gql(REFUND, {"n": order["outTradeNo"], "a": 800})["data"]["refundOrder"]
    assert partial["status"] == "PROCESSING" and partial["amount"] == 800
    assert wechatpay_sandbox.complete_refund(partial["outRefundNo"])[0] in (200, 204)
    rest = gql(REFUND, {"n": order["outTradeNo"], "a": 1000})["data"]["refundOrder"]
    wechatpay_sandbox.complete_refund(rest["outRefundNo"])
    gql.token = buyer_token
    final = gql(ORDER, {"n": order["outTradeNo"]})["data"]["order"]
    assert final == {**final, "status": "REFUNDED", "refundedAmount": 1800}
    assert set(Refund.objects.values_list("status", flat=True)) == {"SUCCESS"}
    # Nothing left to refund.
    gql.token = get_token(staff)
    assert error_code(gql(REFUND, {"n": order["outTradeNo"], "a": 1})) == "CONFLICT"


def test_sync_recovers_a_lost_notify(gql, products, wechatpay_sandbox):
    gql.login("alice")
    order = create(gql)["order"]
    wechatpay_sandbox.pay(order["outTradeNo"])  # paid, but the notify never arrives
    result = gql(
        "mutation S($n: String!) { syncOrder(outTradeNo: $n) { status transactionId } }", {"n": order["outTradeNo"]}
    )
    assert result["data"]["syncOrder"]["status"] == "PAID"
    assert Order.objects.get().status == "PAID"


def test_close_order(gql, products, wechatpay_sandbox):
    gql.login("alice")
    order = create(gql)["order"]
    result = gql("mutation X($n: String!) { closeOrder(outTradeNo: $n) { status } }", {"n": order["outTradeNo"]})
    assert result["data"]["closeOrder"]["status"] == "CLOSED"
    assert wechatpay_sandbox.order(order["outTradeNo"])["state"] == "CLOSED"
