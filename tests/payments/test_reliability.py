"""Payments when things go wrong: illegal transitions, provider outages, lost notifies, hostile input, access."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from graphql_jwt.shortcuts import get_token

from config import providers
from payments import services
from payments.models import Order, PaymentEvent, Product, Refund
from payments.schema import CreateWechatPayOrderInput
from providers.wechatpay.types import Trade
from tests.helpers import error_code
from tests.payments.conftest import CREATE
from tests.payments.test_notify_views import (
    JOIN_TIMEOUT,
    create_order,
    is_success,
    paid_at_sandbox,
    post_notify,
    simulator,
    state,
)

STATUSES = list(Order.Status)
ORDER = "query O($n: String!) { order(outTradeNo: $n) { outTradeNo status } }"
ORDERS = (
    "query L($first: Int, $status: OrderStatus) { orders(first: $first, status: $status) {"
    " edges { node { outTradeNo status amount product { sku } } } } }"
)
REFUND = (
    'mutation R($n: String!, $a: Int!) { refundOrder(outTradeNo: $n, amount: $a, reason: "test") '
    "{ outRefundNo amount status } }"
)
# What WeChat Pay accepts in out_trade_no.
OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")


def create_input(sku: str = "coffee", quantity: int = 1, version: str = "V3", **extra: Any) -> dict[str, Any]:
    return {"input": {"sku": sku, "quantity": quantity, "tradeType": "JSAPI", "apiVersion": version, **extra}}


def make_order(user: Any, product: Product, *, status: str = "PENDING", number: str | None = None) -> Order:
    return Order.objects.create(
        out_trade_no=number or services.new_out_trade_no(),
        user=user,
        product=product,
        quantity=1,
        amount=product.price,
        provider=Order.Provider.WECHATPAY,
        api_version=Order.ApiVersion.V3,
        trade_type=Order.TradeType.NATIVE,
        sign_type="RSA",
        status=status,
        expires_at=timezone.now() + dt.timedelta(minutes=30),
    )


def nothing_at_the_provider() -> bool:
    return simulator().orders_created() == 0


# --- 4. transitions ----------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), list(itertools.product(STATUSES, STATUSES)), ids=lambda s: str(s))
def test_transition_table(products, django_user_model, old, new):
    user = django_user_model.objects.create_user(username="buyer")
    order = make_order(user, products["coffee"], status=old)
    order = Order.objects.get(pk=order.pk)  # status as the database gives it: a plain str
    before = state(order)
    if new in services.ALLOWED[old]:
        services.transition(order, new)
        assert order.status == new
    else:
        with pytest.raises(services.IllegalTransition):
            services.transition(order, new)
        assert order.status == old  # the instance is untouched too
    assert state(order) == before  # transition never saves: the caller does, under its lock


def test_allowed_is_the_documented_state_machine():
    assert {(a, b) for a, targets in services.ALLOWED.items() for b in targets} == {
        ("PENDING", "PAID"),
        ("PENDING", "CLOSED"),
        ("PAID", "REFUNDED"),
    }
    assert set(services.ALLOWED) == set(STATUSES)


# --- applying a payment: the one-statement path and the locked path agree -------------------

# On PostgreSQL in autocommit (as the notify views run) and inside a caller's transaction.
AUTOCOMMIT_OR_NOT = [
    pytest.param(True, marks=pytest.mark.django_db(transaction=True), id="autocommit"),
    pytest.param(False, marks=pytest.mark.django_db, id="in-a-transaction"),
]


def paid_trade(
    order: Order, *, amount: int | None = None, transaction_id: str = "4200000001202611210000000001"
) -> Trade:
    return Trade(
        out_trade_no=order.out_trade_no,
        state="SUCCESS",
        appid="wx",
        mchid="1900000109",
        amount=order.amount if amount is None else amount,
        transaction_id=transaction_id,
        payer_openid="o-payer",
        success_time=dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC),
        raw={"out_trade_no": order.out_trade_no, "transaction_id": transaction_id},
    )


@pytest.mark.parametrize("autocommit", AUTOCOMMIT_OR_NOT)
def test_a_payment_of_a_pending_order_is_applied_once_with_its_event(products, django_user_model, autocommit):
    user = django_user_model.objects.create_user(username="buyer")
    order = make_order(user, products["coffee"])
    trade = paid_trade(order)

    assert services.apply_trade(trade, source="NOTIFY") == services.Outcome.APPLIED
    assert services.apply_trade(trade, source="NOTIFY") == services.Outcome.NO_CHANGE

    order.refresh_from_db()
    assert (order.status, order.transaction_id, order.payer_openid) == ("PAID", trade.transaction_id, "o-payer")
    assert order.paid_at == trade.success_time
    event = PaymentEvent.objects.get()
    assert (event.order_id, event.event_key, event.source, event.kind, event.outcome) == (
        order.pk,
        f"wechatpay:paid:{trade.transaction_id}",
        "NOTIFY",
        "TRANSACTION.SUCCESS",
        "APPLIED",
    )
    assert event.payload == trade.raw


@pytest.mark.django_db(transaction=True)
def test_a_payment_of_a_pending_order_is_five_statements(products, django_user_model, django_assert_num_queries):
    user = django_user_model.objects.create_user(username="buyer")
    order = make_order(user, products["coffee"])
    # BEGIN, the order locked, its event stored, the order updated, COMMIT.
    with django_assert_num_queries(5):
        outcome = services.apply_trade(
            paid_trade(order, transaction_id="4200000001202611210000000012"), source="NOTIFY"
        )
    assert outcome == services.Outcome.APPLIED
    assert Order.objects.get(pk=order.pk).status == "PAID"


@pytest.mark.parametrize("autocommit", AUTOCOMMIT_OR_NOT)
def test_an_event_already_stored_for_a_pending_order_changes_nothing(products, django_user_model, autocommit):
    user = django_user_model.objects.create_user(username="buyer")
    order = make_order(user, products["coffee"])
    trade = paid_trade(order)
    PaymentEvent.objects.create(
        provider="WECHATPAY",
        event_key=f"wechatpay:paid:{trade.transaction_id}",
        order=None,
        source="QUERY",
        kind="TRANSACTION.SUCCESS",
        payload={},
        outcome="CONFLICT",
    )

    assert services.apply_trade(trade, source="NOTIFY") == services.Outcome.NO_CHANGE

    # The failed one-statement attempt left nothing behind, and a caller's transaction still works.
    assert state(order) == ("PENDING", None, None, 0, 1)


@pytest.mark.parametrize("autocommit", AUTOCOMMIT_OR_NOT)
def test_a_payment_that_does_not_fit_the_order_changes_nothing_or_is_flagged(products, django_user_model, autocommit):
    user = django_user_model.objects.create_user(username="buyer")
    pending = make_order(user, products["coffee"])
    closed = make_order(user, products["coffee"], status="CLOSED")

    assert services.apply_trade(paid_trade(pending, amount=pending.amount - 1), source="NOTIFY") == (
        services.Outcome.MISMATCH
    )
    assert state(pending) == ("PENDING", None, None, 0, 0)
    unknown = Order(out_trade_no="20990101unknown", amount=1800)
    assert services.apply_trade(paid_trade(unknown), source="NOTIFY") == services.Outcome.UNKNOWN_ORDER
    # Money for a closed order: stored for a human, the order stays closed.
    outcome = services.apply_trade(paid_trade(closed, transaction_id="4200000001202611210000000099"), source="NOTIFY")
    assert outcome == services.Outcome.CONFLICT
    assert Order.objects.get(pk=closed.pk).status == "CLOSED"
    assert PaymentEvent.objects.get().outcome == "CONFLICT"


# --- 6. provider down during create ------------------------------------------------------


@pytest.mark.parametrize("version", ["V2", "V3"])
@pytest.mark.parametrize("fault", ["timeout", "http_500"])
def test_provider_down_during_create_then_retry_reuses_the_order(gql, products, settings, fault, version):
    if fault == "timeout":
        settings.PROVIDER_READ_TIMEOUT = 0.3
    providers.reset()
    gql.login("alice")
    providers.sandbox().set_fault("wechatpay", fault, 1)

    failed = gql(CREATE, create_input(version=version))
    assert error_code(failed) == "PROVIDER_UNAVAILABLE"
    assert failed.get("data") in (None, {"createWechatPayOrder": None})
    order = Order.objects.get()
    assert order.status == "PENDING" and order.api_version == version
    assert (order.prepay_id, order.code_url, order.h5_url) == ("", "", "")
    assert nothing_at_the_provider()

    retried = gql(CREATE, create_input(version=version))
    assert "errors" not in retried, retried
    result = retried["data"]["createWechatPayOrder"]
    assert result["order"]["outTradeNo"] == order.out_trade_no
    assert result["payParams"]["package"].startswith("prepay_id=")
    assert Order.objects.count() == 1
    assert Order.objects.get().prepay_id
    assert simulator().orders_created() == 1
    assert simulator().order(order.out_trade_no)["amount"] == order.amount


# --- 7. reconciliation -------------------------------------------------------------------


def _past_reconcile_after(settings: Any) -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=settings.RECONCILE_AFTER + 1)


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_reconcile_recovers_a_lost_notify(products, django_user_model, wechatpay_sandbox, settings, version):
    user = django_user_model.objects.create_user(username="buyer")
    order = paid_at_sandbox(user, version)  # paid, and the notify is lost

    # Too early: a notify may still be on its way.
    assert services.reconcile(now=timezone.now()).checked == 0
    assert state(order) == ("PENDING", None, None, 0, 0)

    report = services.reconcile(now=_past_reconcile_after(settings))
    assert (report.checked, report.paid, report.closed, report.failed) == (1, 1, 0, [])
    order.refresh_from_db()
    assert order.status == "PAID"
    assert order.transaction_id == wechatpay_sandbox.order(order.out_trade_no)["transaction_id"]
    event = PaymentEvent.objects.get()
    assert event.order_id == order.pk and event.source == "QUERY"

    # The late notify and a second run change nothing.
    assert is_success(version, post_notify(*wechatpay_sandbox.pay_notify(order.out_trade_no)))
    assert services.reconcile(now=_past_reconcile_after(settings)).checked == 0
    assert PaymentEvent.objects.count() == 1


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_reconcile_closes_an_expired_order_at_the_provider_first(
    products, django_user_model, wechatpay_sandbox, version
):
    user = django_user_model.objects.create_user(username="buyer")
    order = create_order(user, version)
    assert wechatpay_sandbox.order(order.out_trade_no)["state"] == "NOTPAY"

    report = services.reconcile(now=order.expires_at + dt.timedelta(seconds=1))
    assert (report.checked, report.paid, report.closed, report.failed) == (1, 0, 1, [])
    assert wechatpay_sandbox.order(order.out_trade_no)["state"] == "CLOSED"
    order.refresh_from_db()
    assert order.status == "CLOSED" and order.closed_at is not None and order.transaction_id is None
    # The buyer can no longer pay it.
    with pytest.raises(ValueError, match="closed"):
        wechatpay_sandbox.pay(order.out_trade_no)


def test_reconcile_leaves_an_unexpired_unpaid_order_pending(products, django_user_model, wechatpay_sandbox, settings):
    user = django_user_model.objects.create_user(username="buyer")
    order = create_order(user, "V3")
    report = services.reconcile(now=_past_reconcile_after(settings))
    assert (report.checked, report.paid, report.closed) == (1, 0, 0)
    assert state(order) == ("PENDING", None, None, 0, 0)
    assert wechatpay_sandbox.order(order.out_trade_no)["state"] == "NOTPAY"


def test_reconcile_orders_command_prints_progress_and_a_summary(
    products, django_user_model, wechatpay_sandbox, settings
):
    settings.RECONCILE_AFTER = 0
    user = django_user_model.objects.create_user(username="buyer")
    paid = paid_at_sandbox(user, "V2")
    pending = create_order(user, "V3", quantity=2)
    out = StringIO()
    call_command("reconcile_orders", stdout=out)
    text = out.getvalue()
    assert "reconciling 1/2" in text and "reconciling 2/2" in text, text
    assert "checked 2 orders: 1 paid, 0 closed; 0 refunds completed; 0 failed" in text, text
    assert Order.objects.get(pk=paid.pk).status == "PAID"
    assert Order.objects.get(pk=pending.pk).status == "PENDING"

    empty = StringIO()
    call_command("reconcile_orders", stdout=empty)
    assert "checked 1 orders: 0 paid, 0 closed; 0 refunds completed; 0 failed" in empty.getvalue()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["V2", "V3"])
def test_a_late_notify_racing_reconciliation_gives_one_event(products, django_user_model, settings, version):
    user = django_user_model.objects.create_user(username="buyer")
    order = paid_at_sandbox(user, version)
    notify = simulator().pay_notify(order.out_trade_no)
    now = _past_reconcile_after(settings)
    barrier = threading.Barrier(2)
    reports: list[services.ReconcileReport] = []
    answers: list[Any] = []
    errors: list[BaseException] = []

    def run_reconcile() -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            reports.append(services.reconcile(now=now))
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)
        finally:
            connection.close()

    def send_notify() -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            answers.append(post_notify(*notify))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run_reconcile), threading.Thread(target=send_notify)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(answers) == 1 and is_success(version, answers[0])
    assert len(reports) == 1 and reports[0].failed == [] and reports[0].paid in (0, 1)
    order.refresh_from_db()
    assert order.status == "PAID"
    assert PaymentEvent.objects.count() == 1
    assert PaymentEvent.objects.get().event_key == f"wechatpay:paid:{order.transaction_id}"


# --- 8. amount and price from the server -------------------------------------------------


def test_amount_is_the_server_price_times_quantity(gql, products, wechatpay_sandbox):
    gql.login("alice")
    result = gql(CREATE, create_input(quantity=3))
    assert "errors" not in result, result
    order = result["data"]["createWechatPayOrder"]["order"]
    assert order["amount"] == products["coffee"].price * 3 == 5400
    assert Order.objects.get().amount == 5400
    assert wechatpay_sandbox.order(order["outTradeNo"])["amount"] == 5400
    assert OUT_TRADE_NO.match(order["outTradeNo"])


def test_create_input_has_no_price_and_a_client_price_is_refused(gql, products, wechatpay_sandbox):
    fields = {name.lower() for name in CreateWechatPayOrderInput._meta.fields}
    assert not fields & {"price", "amount", "total", "total_fee", "totalfee"}
    gql.login("alice")
    result = gql(CREATE, create_input(price=1))
    assert result.get("errors")
    assert Order.objects.count() == 0 and nothing_at_the_provider()


@pytest.mark.parametrize("quantity", [0, -1, 100])
def test_bad_quantity_is_bad_user_input(gql, products, wechatpay_sandbox, quantity):
    gql.login("alice")
    assert error_code(gql(CREATE, create_input(quantity=quantity))) == "BAD_USER_INPUT"
    assert Order.objects.count() == 0 and nothing_at_the_provider()


def test_unknown_and_inactive_products_are_not_found(gql, products, wechatpay_sandbox):
    Product.objects.create(sku="retired", title="Retired", price=500, active=False)
    gql.login("alice")
    assert error_code(gql(CREATE, create_input(sku="no-such-sku"))) == "NOT_FOUND"
    assert error_code(gql(CREATE, create_input(sku="retired"))) == "NOT_FOUND"
    assert Order.objects.count() == 0 and nothing_at_the_provider()


def test_out_trade_no_is_short_unique_and_not_a_timestamp():
    numbers = [services.new_out_trade_no() for _ in range(1000)]
    assert len(set(numbers)) == 1000
    assert all(len(n) <= 32 and OUT_TRADE_NO.match(n) for n in numbers)
    # Not a bare timestamp: 96 random bits (24 hex digits) follow the date.
    assert all(re.fullmatch(r"\d{8}[0-9a-f]{24}", n) for n in numbers)
    # The part after the date is random: no two share it, and it is long enough to be unguessable.
    assert len({n[8:] for n in numbers}) == 1000
    assert all(len(n) - 8 >= 16 for n in numbers)


# --- 9. refund rules ---------------------------------------------------------------------


@pytest.fixture
def paid_order(gql, products, wechatpay_sandbox) -> Order:
    gql.login("alice")
    created = gql(CREATE, create_input())["data"]["createWechatPayOrder"]["order"]
    wechatpay_sandbox.pay(created["outTradeNo"])
    assert wechatpay_sandbox.send_pay_notify(created["outTradeNo"])[0] == 204
    order = Order.objects.get(out_trade_no=created["outTradeNo"])
    assert order.status == "PAID"
    return order


def _refund_state(order: Order) -> tuple[Any, ...]:
    sandbox_order = simulator().order(order.out_trade_no)
    return state(order), Refund.objects.count(), sandbox_order["refunded"], sandbox_order["state"]


def test_refund_by_a_non_staff_user_is_forbidden(gql, paid_order):
    before = _refund_state(paid_order)
    assert error_code(gql(REFUND, {"n": paid_order.out_trade_no, "a": 100})) == "FORBIDDEN"  # the buyer
    gql.token = None
    assert error_code(gql(REFUND, {"n": paid_order.out_trade_no, "a": 100})) == "UNAUTHENTICATED"
    assert _refund_state(paid_order) == before
    assert before[1] == 0


@pytest.mark.parametrize("amount", [0, -100, 1801])
def test_refund_amount_outside_what_is_refundable_is_bad_user_input(gql, paid_order, staff, amount):
    gql.token = get_token(staff)
    before = _refund_state(paid_order)
    assert error_code(gql(REFUND, {"n": paid_order.out_trade_no, "a": amount})) == "BAD_USER_INPUT"
    assert _refund_state(paid_order) == before


def test_refund_counts_refunds_in_flight(gql, paid_order, staff, wechatpay_sandbox):
    gql.token = get_token(staff)
    first = gql(REFUND, {"n": paid_order.out_trade_no, "a": 1000})["data"]["refundOrder"]
    assert first["status"] == "PROCESSING"
    before = _refund_state(paid_order)
    # 1000 is in flight: only 800 is left, even before the first refund completes.
    assert error_code(gql(REFUND, {"n": paid_order.out_trade_no, "a": 801})) == "BAD_USER_INPUT"
    assert _refund_state(paid_order) == before


def test_refund_of_a_pending_order_is_conflict(gql, products, wechatpay_sandbox, staff):
    gql.login("alice")
    created = gql(CREATE, create_input())["data"]["createWechatPayOrder"]["order"]
    gql.token = get_token(staff)
    before = _refund_state(Order.objects.get(out_trade_no=created["outTradeNo"]))
    assert error_code(gql(REFUND, {"n": created["outTradeNo"], "a": 100})) == "CONFLICT"
    assert _refund_state(Order.objects.get(out_trade_no=created["outTradeNo"])) == before
    assert before[1] == 0 and before[0][0] == "PENDING"


def test_refund_of_an_unknown_order_is_not_found(gql, db, staff):
    gql.token = get_token(staff)
    assert error_code(gql(REFUND, {"n": "20990101" + "0" * 24, "a": 100})) == "NOT_FOUND"
    assert Refund.objects.count() == 0


# --- 10. the orders query ----------------------------------------------------------------


@pytest.fixture
def buyers(django_user_model) -> tuple[Any, Any]:
    return (
        django_user_model.objects.create_user(username="ann"),
        django_user_model.objects.create_user(username="bob"),
    )


def _numbers(result: dict[str, Any]) -> set[str]:
    assert "errors" not in result, result
    return {edge["node"]["outTradeNo"] for edge in result["data"]["orders"]["edges"]}


def test_a_user_sees_only_their_own_orders_and_staff_see_all(gql, products, buyers, staff):
    ann, bob = buyers
    mine = {make_order(ann, products["coffee"]).out_trade_no for _ in range(3)}
    theirs = {make_order(bob, products["sticker"]).out_trade_no for _ in range(2)}

    gql.token = get_token(ann)
    assert _numbers(gql(ORDERS, {"first": 50})) == mine
    gql.token = get_token(bob)
    assert _numbers(gql(ORDERS, {"first": 50})) == theirs
    gql.token = get_token(staff)
    assert _numbers(gql(ORDERS, {"first": 50})) == mine | theirs
    gql.token = None
    assert error_code(gql(ORDERS, {"first": 50})) == "UNAUTHENTICATED"


# Outside a test transaction, as in production: no savepoints around the auth statement.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("count", [5, 50])
def test_orders_runs_a_constant_number_of_queries(gql, products, buyers, django_assert_num_queries, count):
    ann, _ = buyers
    for i in range(count):
        make_order(ann, products["coffee" if i % 2 else "sticker"])
    gql.token = get_token(ann)
    gql(ORDERS, {"first": 1})  # a connection prepares its statements once; measure the steady state
    with django_assert_num_queries(2):  # the user, the page (one row more than asked, no COUNT)
        result = gql(ORDERS, {"first": 50})
    edges = result["data"]["orders"]["edges"]
    assert len(edges) == count
    assert {e["node"]["product"]["sku"] for e in edges} == {"coffee", "sticker"}


def test_orders_filter_by_status(gql, products, buyers):
    ann, bob = buyers
    pending = {make_order(ann, products["coffee"]).out_trade_no for _ in range(2)}
    paid = {make_order(ann, products["coffee"], status="PAID").out_trade_no for _ in range(3)}
    closed = {make_order(ann, products["coffee"], status="CLOSED").out_trade_no}
    make_order(bob, products["coffee"], status="PAID")
    gql.token = get_token(ann)
    assert _numbers(gql(ORDERS, {"first": 50, "status": "PAID"})) == paid
    assert _numbers(gql(ORDERS, {"first": 50, "status": "PENDING"})) == pending
    assert _numbers(gql(ORDERS, {"first": 50, "status": "CLOSED"})) == closed
    assert _numbers(gql(ORDERS, {"first": 50, "status": "REFUNDED"})) == set()
    result = gql(ORDERS, {"first": 50})
    assert all(e["node"]["status"] in ("PENDING", "PAID", "CLOSED") for e in result["data"]["orders"]["edges"])


def test_orders_filter_by_provider(gql, products, buyers):
    ann, _ = buyers
    mine = {make_order(ann, products["coffee"]).out_trade_no for _ in range(2)}
    gql.token = get_token(ann)
    query = ORDERS.replace("$status: OrderStatus", "$provider: PaymentProvider").replace(
        "status: $status", "provider: $provider"
    )
    assert _numbers(gql(query, {"first": 50, "provider": "WECHATPAY"})) == mine
    assert _numbers(gql(query, {"first": 50, "provider": "ALIPAY"})) == set()


def test_order_of_someone_else_is_not_found(gql, products, buyers, staff):
    ann, bob = buyers
    bobs = make_order(bob, products["coffee"])
    gql.token = get_token(ann)
    result = gql(ORDER, {"n": bobs.out_trade_no})
    assert error_code(result) == "NOT_FOUND"
    assert result["data"]["order"] is None
    # Indistinguishable from an order that does not exist.
    assert error_code(gql(ORDER, {"n": "20990101" + "0" * 24})) == "NOT_FOUND"
    gql.token = get_token(bob)
    assert gql(ORDER, {"n": bobs.out_trade_no})["data"]["order"]["status"] == "PENDING"
    gql.token = get_token(staff)
    assert gql(ORDER, {"n": bobs.out_trade_no})["data"]["order"]["outTradeNo"] == bobs.out_trade_no
