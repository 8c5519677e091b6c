"""createAlipayOrder through /graphql/: what each method hands the payer (checked field by field against
Alipay's request contract and the app's signature), the returnUrl rule, and the Alipay order seen
through order, orders, syncOrder, closeOrder and refundOrder."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.conf import settings as django_settings

from config import providers
from payments.models import Order
from providers.alipay.signing import sign_content
from providers.rsa import verify_sha256
from tests.helpers import ORDER_FIELDS, error_code

CREATE = (
    "mutation C($input: CreateAlipayOrderInput!) { createAlipayOrder(input: $input) {"
    f" order {{ {ORDER_FIELDS} }} payUrl orderString qrCode }} }}"
)
RETURN_URL = "http://localhost:3000/paid"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


@pytest.fixture
def alipay_buyer(gql: Any, products: Any, settings: Any) -> Any:
    settings.ALIPAY_RETURN_HOSTS = ["localhost:3000"]
    gql.login("alice")
    return gql


def create(gql: Any, method: str, **extra: Any) -> dict[str, Any]:
    result = gql(CREATE, {"input": {"sku": "coffee", "quantity": 1, "method": method, **extra}})
    assert "errors" not in result, result
    return result["data"]["createAlipayOrder"]  # type: ignore[no-any-return]


def app_public_key() -> str:
    from Crypto.PublicKey import RSA

    return RSA.import_key(providers.alipay_sandbox_keys()[0]).public_key().export_key().decode()


def checked_request(params: dict[str, str], method: str) -> dict[str, Any]:
    """The common parameters of a request as Alipay's gateway checks them, and its biz_content."""
    assert params["app_id"] == django_settings.ALIPAY_APPID
    assert (params["method"], params["format"], params["charset"]) == (method, "JSON", "utf-8")
    assert (params["sign_type"], params["version"]) == ("RSA2", "1.0")
    assert TIMESTAMP.match(params["timestamp"]), params["timestamp"]
    assert params["notify_url"] == django_settings.PUBLIC_BASE_URL + "/notify/alipay/"
    # Signed by the app's key over every parameter but `sign` (sign_type included).
    assert verify_sha256(app_public_key(), sign_content(params), params["sign"])
    biz = json.loads(params["biz_content"])
    assert params["biz_content"] == json.dumps(biz, ensure_ascii=False, separators=(",", ":"))
    return biz  # type: ignore[no-any-return]


def test_page_pay_hands_a_signed_gateway_url(alipay_buyer):
    created = create(alipay_buyer, "PAGE", returnUrl=RETURN_URL)
    order = created["order"]
    assert (order["provider"], order["apiVersion"], order["tradeType"], order["amount"]) == (
        "ALIPAY",
        None,
        "PAGE",
        1800,
    )
    assert created["orderString"] is None and created["qrCode"] is None
    url = urlsplit(created["payUrl"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == django_settings.ALIPAY_GATEWAY
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    biz = checked_request(params, "alipay.trade.page.pay")
    # The payer comes back to our return page, which verifies and sends them on to returnUrl.
    assert params["return_url"] == django_settings.PUBLIC_BASE_URL + "/pay/alipay/return/"
    assert biz["out_trade_no"] == order["outTradeNo"]
    assert (biz["total_amount"], biz["product_code"]) == ("18.00", "FAST_INSTANT_TRADE_PAY")
    assert TIMESTAMP.match(biz["time_expire"])
    assert Order.objects.get(out_trade_no=order["outTradeNo"]).return_url == RETURN_URL


def test_wap_pay_sends_the_return_url_as_quit_url(alipay_buyer):
    created = create(alipay_buyer, "WAP", returnUrl=RETURN_URL)
    params = dict(parse_qsl(urlsplit(created["payUrl"]).query, keep_blank_values=True))
    biz = checked_request(params, "alipay.trade.wap.pay")
    assert (biz["product_code"], biz["quit_url"], biz["total_amount"]) == ("QUICK_WAP_WAY", RETURN_URL, "18.00")


def test_app_pay_hands_the_sdk_a_signed_order_string(alipay_buyer):
    created = create(alipay_buyer, "APP")
    assert created["payUrl"] is None and created["qrCode"] is None
    params = dict(parse_qsl(created["orderString"], keep_blank_values=True, strict_parsing=True))
    biz = checked_request(params, "alipay.trade.app.pay")
    assert "return_url" not in params
    assert (biz["product_code"], biz["total_amount"]) == ("QUICK_MSECURITY_PAY", "18.00")


def test_a_retried_purchase_reuses_the_pending_order(alipay_buyer):
    first = create(alipay_buyer, "PAGE", returnUrl=RETURN_URL)["order"]["outTradeNo"]
    again = create(alipay_buyer, "PAGE", returnUrl=RETURN_URL)["order"]["outTradeNo"]
    assert first == again and Order.objects.count() == 1


@pytest.mark.parametrize(
    "return_url",
    [
        "https://evil.example/paid",
        "http://localhost:3000.evil.example/paid",
        "http://user@localhost:3000/paid",
        "//localhost:3000/paid",
        "/paid",
        "javascript:alert(1)//localhost:3000",
        "ftp://localhost:3000/paid",
        "http://localhost:3000/" + "x" * 600,
    ],
)
def test_a_return_url_off_the_allowed_hosts_is_refused_and_creates_nothing(alipay_buyer, return_url):
    result = alipay_buyer(
        CREATE, {"input": {"sku": "coffee", "quantity": 1, "method": "PAGE", "returnUrl": return_url}}
    )
    assert error_code(result) == "BAD_USER_INPUT"
    assert result["data"] is None or result["data"]["createAlipayOrder"] is None
    assert not Order.objects.exists()


@pytest.mark.parametrize("method", ["PAGE", "WAP"])
def test_page_and_wap_need_a_return_url(alipay_buyer, method):
    result = alipay_buyer(CREATE, {"input": {"sku": "coffee", "quantity": 1, "method": method}})
    assert error_code(result) == "BAD_USER_INPUT" and not Order.objects.exists()


@pytest.mark.parametrize(("sku", "quantity", "code"), [("nope", 1, "NOT_FOUND"), ("coffee", 0, "BAD_USER_INPUT")])
def test_unknown_products_and_bad_quantities_are_refused(alipay_buyer, sku, quantity, code):
    result = alipay_buyer(CREATE, {"input": {"sku": sku, "quantity": quantity, "method": "APP"}})
    assert error_code(result) == code and not Order.objects.exists()


def test_create_needs_a_login(gql, products):
    result = gql(CREATE, {"input": {"sku": "coffee", "quantity": 1, "method": "APP"}})
    assert error_code(result) == "UNAUTHENTICATED" and not Order.objects.exists()


def test_wechat_pay_does_not_take_alipay_methods(alipay_buyer):
    from tests.helpers import CREATE_ORDER, create_order_input

    result = alipay_buyer(CREATE_ORDER, create_order_input(tradeType="PAGE"))
    assert error_code(result) == "BAD_USER_INPUT" and not Order.objects.exists()
