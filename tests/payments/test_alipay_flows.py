"""Alipay orders through the one payments core, against the sandbox's Alipay in-process: QR codes,
syncOrder, closeOrder, refundOrder (partial, full, the gateway failing), reconciliation, the admin, and
orders(provider: ALIPAY)."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from graphql_jwt.shortcuts import get_token

from config import providers
from core.errors import AppError
from payments import services
from payments.models import Order, PaymentEvent, Refund
from providers.http import ProviderError
from tests.factories import OrderFactory
from tests.helpers import GraphQLClient, error_code

CREATE = (
    "mutation C($input: CreateAlipayOrderInput!) { createAlipayOrder(input: $input) {"
    " order { outTradeNo status amount } payUrl orderString qrCode } }"
)
SYNC = "mutation S($n: String!) { syncOrder(outTradeNo: $n) { status transactionId } }"
CLOSE = "mutation X($n: String!) { closeOrder(outTradeNo: $n) { status } }"
REFUND = (
    'mutation R($n: String!, $a: Int!) { refundOrder(outTradeNo: $n, amount: $a, reason: "test") '
    "{ outRefundNo amount status } }"
)
ORDERS = "query($p: PaymentProvider) { orders(first: 10, provider: $p) { edges { node { outTradeNo provider } } } }"


@pytest.fixture
def alipay_sandbox() -> Any:
    """The Alipay simulator, delivering notifies through Django's test client (same thread, same
    database, once); refunds' notifies are sent only when a test sends them."""
    simulator = providers.sandbox().providers["alipay"]
    client = Client()

    def deliver(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        response = client.post(urlsplit(url).path, body, content_type=headers["Content-Type"])
        return response.status_code, response.content.decode()

    simulator.deliver = deliver
    simulator.auto_refund_notify = False
    simulator.retry_seconds = ()
    return simulator


@pytest.fixture
def buyer_gql(gql: Any, products: Any, settings: Any) -> Any:
    settings.ALIPAY_RETURN_HOSTS = ["localhost:3000"]
    gql.login("alice")
    return gql


def create(gql: Any, method: str = "QR", **extra: Any) -> dict[str, Any]:
    result = gql(CREATE, {"input": {"sku": "coffee", "quantity": 1, "method": method, **extra}})
    assert "errors" not in result, result
    return result["data"]["createAlipayOrder"]  # type: ignore[no-any-return]


def paid_order(gql: Any, sandbox: Any) -> Order:
    """A QR order paid at the sandbox, its notify delivered and applied."""
    number = create(gql)["order"]["outTradeNo"]
    sandbox.pay(number)
    assert sandbox.send_notify(number) == (200, "success")
    order = Order.objects.get(out_trade_no=number)
    assert order.status == "PAID"
    return order


def test_qr_hands_the_sandbox_code_and_a_retry_places_no_second_trade(buyer_gql, alipay_sandbox):
    first = create(buyer_gql)
    number = first["order"]["outTradeNo"]
    assert first["payUrl"] is None and first["orderString"] is None
    code = first["qrCode"].rsplit("/", 1)[-1]  # the scan page's address ends with the code
    assert alipay_sandbox.trade_by_qr_code(code)["out_trade_no"] == number
    trade = alipay_sandbox.trade(number)
    assert (trade["amount"], trade["status"]) == (1800, "WAIT_BUYER_PAY")
    again = create(buyer_gql)
    assert again["order"]["outTradeNo"] == number and again["qrCode"] == first["qrCode"]
    assert [t["out_trade_no"] for t in alipay_sandbox.recent_trades()] == [number]


@pytest.mark.parametrize("fault", ["timeout", "http_500", "malformed"])
def test_the_gateway_failing_during_create_is_provider_unavailable_and_a_retry_is_the_same_trade(
    buyer_gql, alipay_sandbox, settings, fault
):
    settings.PROVIDER_READ_TIMEOUT = 0.5
    providers.reset()
    providers.sandbox().set_fault("alipay", fault, 1)
    result = buyer_gql(CREATE, {"input": {"sku": "coffee", "quantity": 1, "method": "QR"}})
    assert error_code(result) == "PROVIDER_UNAVAILABLE"
    (order,) = Order.objects.all()
    assert (order.status, order.code_url) == ("PENDING", "")
    retried = create(buyer_gql)
    assert retried["order"]["outTradeNo"] == order.out_trade_no and retried["qrCode"]
    assert [t["out_trade_no"] for t in alipay_sandbox.recent_trades()] == [order.out_trade_no]


def test_sync_order_applies_what_alipay_answers(buyer_gql, alipay_sandbox):
    number = create(buyer_gql)["order"]["outTradeNo"]
    assert buyer_gql(SYNC, {"n": number})["data"]["syncOrder"] == {"status": "PENDING", "transactionId": None}
    alipay_sandbox.pay(number)  # its notify never comes
    synced = buyer_gql(SYNC, {"n": number})["data"]["syncOrder"]
    assert synced == {"status": "PAID", "transactionId": alipay_sandbox.trade(number)["trade_no"]}
    assert PaymentEvent.objects.get().source == "QUERY"
    # The notify, late: nothing more changes, and Alipay is told success.
    assert alipay_sandbox.send_notify(number) == (200, "success")
    assert PaymentEvent.objects.count() == 1


def test_sync_order_of_a_page_order_alipay_never_saw_leaves_it_pending(buyer_gql, alipay_sandbox):
    number = create(buyer_gql, "PAGE", returnUrl="http://localhost:3000/paid")["order"]["outTradeNo"]
    assert buyer_gql(SYNC, {"n": number})["data"]["syncOrder"]["status"] == "PENDING"


def test_close_order_closes_at_alipay_then_here(buyer_gql, alipay_sandbox):
    number = create(buyer_gql)["order"]["outTradeNo"]
    assert buyer_gql(CLOSE, {"n": number})["data"]["closeOrder"] == {"status": "CLOSED"}
    assert alipay_sandbox.trade(number)["status"] == "TRADE_CLOSED"


def test_a_page_order_alipay_never_saw_cannot_be_closed_while_its_pay_link_still_pays(buyer_gql, alipay_sandbox):
    # Nothing at Alipay to close, but the signed pay URL makes the trade whenever it is opened until
    # time_expire: closing here would let it be paid into a closed order. Reconciliation closes it then.
    page = create(buyer_gql, "PAGE", returnUrl="http://localhost:3000/paid")["order"]["outTradeNo"]
    result = buyer_gql(CLOSE, {"n": page})
    assert error_code(result) == "CONFLICT" and "pay link works until" in result["errors"][0]["message"]
    assert Order.objects.get(out_trade_no=page).status == "PENDING" and alipay_sandbox.trade(page) is None
    Order.objects.filter(out_trade_no=page).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert buyer_gql(CLOSE, {"n": page})["data"]["closeOrder"] == {"status": "CLOSED"}


def test_close_order_of_an_order_paid_meanwhile_records_the_payment(buyer_gql, alipay_sandbox):
    number = create(buyer_gql)["order"]["outTradeNo"]
    alipay_sandbox.pay(number)
    result = buyer_gql(CLOSE, {"n": number})
    assert error_code(result) == "CONFLICT"
    assert Order.objects.get(out_trade_no=number).status == "PAID"


def test_a_partial_then_a_full_refund_ends_refunded(buyer_gql, alipay_sandbox, staff):
    order = paid_order(buyer_gql, alipay_sandbox)
    first = services.refund_order(staff=staff, out_trade_no=order.out_trade_no, amount=800, reason="part")
    assert first.status == "SUCCESS"  # fund_change=Y: the money moved
    order.refresh_from_db()
    assert (order.status, order.refunded_amount) == ("PAID", 800)
    rest = services.refund_order(staff=staff, out_trade_no=order.out_trade_no, amount=1000, reason="rest")
    assert rest.status == "SUCCESS"
    order.refresh_from_db()
    assert (order.status, order.refunded_amount) == ("REFUNDED", 1800)
    trade = alipay_sandbox.trade(order.out_trade_no)
    assert trade["status"] == "TRADE_CLOSED" and sorted(trade["refunds"]) == sorted(
        [first.out_refund_no, rest.out_refund_no]
    )
    # Their notifies come after: acknowledged, nothing more changes.
    before = (PaymentEvent.objects.count(), order.refunded_amount)
    for refund in (first, rest):
        assert alipay_sandbox.send_notify(order.out_trade_no, f"refund:{refund.out_refund_no}") == (200, "success")
    order.refresh_from_db()
    assert (PaymentEvent.objects.count(), order.refunded_amount) == before


@pytest.mark.parametrize("fault", ["timeout", "http_500"])
def test_the_gateway_failing_during_a_refund_leaves_it_in_flight_and_reconciliation_finishes_it_once(
    buyer_gql, alipay_sandbox, staff, settings, fault
):
    order = paid_order(buyer_gql, alipay_sandbox)
    settings.PROVIDER_READ_TIMEOUT = 0.5
    providers.reset()
    providers.sandbox().set_fault("alipay", fault, 1)
    staff_gql = GraphQLClient(Client())
    staff_gql.token = get_token(staff)
    result = staff_gql(REFUND, {"n": order.out_trade_no, "a": 800})
    assert error_code(result) == "PROVIDER_UNAVAILABLE"
    (refund,) = Refund.objects.all()
    assert refund.status == "PROCESSING"
    order.refresh_from_db()
    assert order.refunded_amount == 0
    settings.RECONCILE_AFTER = 0
    call_command("reconcile_orders", stdout=StringIO())
    refund.refresh_from_db()
    order.refresh_from_db()
    assert (refund.status, order.refunded_amount) == ("SUCCESS", 800)
    # One refund at Alipay, whichever way the failure went: the same out_request_no each time.
    assert list(alipay_sandbox.trade(order.out_trade_no)["refunds"]) == [refund.out_refund_no]
    assert alipay_sandbox.trade(order.out_trade_no)["refunded"] == 800


def test_reconciliation_closes_an_expired_order_alipay_never_saw(products, buyer, alipay_sandbox, settings):
    settings.RECONCILE_AFTER = 0
    expired = OrderFactory(
        user=buyer,
        product=products["coffee"],
        provider="ALIPAY",
        api_version="",
        trade_type="PAGE",
        sign_type="RSA2",
        expires_at=timezone.now() - timezone.timedelta(seconds=1),
    )
    live = OrderFactory(
        user=buyer, product=products["coffee"], provider="ALIPAY", api_version="", trade_type="PAGE", sign_type="RSA2"
    )
    out = StringIO()
    call_command("reconcile_orders", stdout=out)
    assert "checked 2 orders: 0 paid, 1 closed; 0 refunds completed; 0 failed" in out.getvalue(), out.getvalue()
    assert Order.objects.get(pk=expired.pk).status == "CLOSED"
    assert Order.objects.get(pk=live.pk).status == "PENDING"


def test_orders_lists_alipay_orders_by_provider(buyer_gql, alipay_sandbox):
    alipay = create(buyer_gql)["order"]["outTradeNo"]
    wechat = OrderFactory(user=Order.objects.get(out_trade_no=alipay).user, product=Order.objects.get().product)
    listed = buyer_gql(ORDERS, {"p": "ALIPAY"})["data"]["orders"]["edges"]
    assert [e["node"] for e in listed] == [{"outTradeNo": alipay, "provider": "ALIPAY"}]
    listed = buyer_gql(ORDERS, {"p": "WECHATPAY"})["data"]["orders"]["edges"]
    assert [e["node"]["outTradeNo"] for e in listed] == [wechat.out_trade_no]


def test_the_admin_lists_the_channel_and_syncs_an_alipay_order(admin_client, buyer_gql, alipay_sandbox):
    number = create(buyer_gql)["order"]["outTradeNo"]
    alipay_sandbox.pay(number)
    listed = admin_client.get(reverse("admin:payments_order_changelist")).content.decode()
    assert "Alipay QR" in listed
    order = Order.objects.get(out_trade_no=number)
    response = admin_client.post(
        reverse("admin:payments_order_changelist"), {"action": "sync", "_selected_action": [order.pk]}
    )
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == "PAID" and order.transaction_id == alipay_sandbox.trade(number)["trade_no"]


def test_qr_of_an_order_already_paid_at_alipay_is_a_conflict(buyer_gql, alipay_sandbox):
    number = create(buyer_gql)["order"]["outTradeNo"]
    alipay_sandbox.pay(number)
    Order.objects.filter(out_trade_no=number).update(code_url="")  # as if the first answer was lost
    result = buyer_gql(CREATE, {"input": {"sku": "coffee", "quantity": 1, "method": "QR"}})
    assert error_code(result) == "CONFLICT" and "syncOrder" in result["errors"][0]["message"]


@pytest.mark.parametrize(
    ("errcode", "status"),
    [
        ("ACQ.SYSTEM_ERROR", "PROCESSING"),
        ("isp.unknow-error", "PROCESSING"),
        ("aop.unknow-error", "PROCESSING"),
        ("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "CLOSED"),
    ],
)
def test_a_refund_alipay_may_have_taken_stays_in_flight_and_a_definite_no_closes_it(
    buyer_gql, alipay_sandbox, staff, monkeypatch, errcode, status
):
    order = paid_order(buyer_gql, alipay_sandbox)
    gateway = providers.alipay()

    def refused(**kwargs: Any) -> Any:
        raise ProviderError("alipay", errcode, "from the test")

    monkeypatch.setattr(gateway, "refund", refused)
    with pytest.raises(AppError) as caught:
        services.refund_order(staff=staff, out_trade_no=order.out_trade_no, amount=800, reason="test")
    assert caught.value.code == "PROVIDER_ERROR"
    # In flight: the same out_request_no is retried by reconciliation; closed: the money did not move.
    assert Refund.objects.get().status == status
    order.refresh_from_db()
    assert order.refunded_amount == 0


def test_without_a_seller_id_alipay_is_not_configured(buyer_gql, settings):
    settings.ALIPAY_SELLER_ID = ""
    providers.reset()
    result = buyer_gql(CREATE, {"input": {"sku": "coffee", "quantity": 1, "method": "QR"}})
    assert error_code(result) == "BAD_USER_INPUT" and "not configured" in result["errors"][0]["message"]
    assert not Order.objects.exists()
