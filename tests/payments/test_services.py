"""payments/services.py: the order state machine, applying payments and refunds once, creating orders
when the provider is down, reconciliation, and the same rules under concurrency on PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
import threading
import time
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from config import providers
from payments import services
from payments.models import Order, PaymentEvent, Refund
from providers.trades import RefundState, Trade
from tests.factories import OrderFactory, RefundFactory
from tests.helpers import CREATE_ORDER, create_order_input, error_code
from tests.payments.notify_bodies import (
    JOIN_TIMEOUT,
    is_success,
    paid_at_sandbox,
    place_order,
    post_notify,
    simulator,
    state,
)

STATUSES = list(Order.Status)
# What WeChat Pay accepts in out_trade_no.
OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")


# --- transitions ----------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), list(itertools.product(STATUSES, STATUSES)), ids=lambda s: str(s))
def test_transition_table(products, buyer, old, new):
    order = OrderFactory(user=buyer, product=products["coffee"], status=old)
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


def test_out_trade_no_is_short_unique_and_not_a_timestamp():
    numbers = [services.new_out_trade_no() for _ in range(1000)]
    assert len(set(numbers)) == 1000
    assert all(len(n) <= 32 and OUT_TRADE_NO.match(n) for n in numbers)
    # Not a bare timestamp: 96 random bits (24 hex digits) follow the date.
    assert all(re.fullmatch(r"\d{8}[0-9a-f]{24}", n) for n in numbers)
    # The part after the date is random: no two share it, and it is long enough to be unguessable.
    assert len({n[8:] for n in numbers}) == 1000
    assert all(len(n) - 8 >= 16 for n in numbers)


# --- apply_trade: a payment applied once, under the order's row lock ---------------------------

# In autocommit (as the notify views run) and inside a caller's transaction.
AUTOCOMMIT_OR_NOT = [
    pytest.param(True, marks=pytest.mark.django_db(transaction=True), id="autocommit"),
    pytest.param(False, marks=pytest.mark.django_db, id="in-a-transaction"),
]


def paid_trade(
    order: Order, *, amount: int | None = None, transaction_id: str = "4200000001202611210000000001"
) -> Trade:
    config = providers.wechatpay_config()
    return Trade(
        out_trade_no=order.out_trade_no,
        state="SUCCESS",
        appid=config.appid,
        mchid=config.mchid,
        amount=order.amount if amount is None else amount,
        transaction_id=transaction_id,
        payer_openid="o-payer",
        success_time=dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC),
        raw={"out_trade_no": order.out_trade_no, "transaction_id": transaction_id},
    )


@pytest.mark.parametrize("autocommit", AUTOCOMMIT_OR_NOT)
def test_a_payment_of_a_pending_order_is_applied_once_with_its_event(products, buyer, autocommit):
    order = OrderFactory(user=buyer, product=products["coffee"])
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
def test_a_payment_of_a_pending_order_is_five_statements(products, buyer, django_assert_num_queries):
    order = OrderFactory(user=buyer, product=products["coffee"])
    # BEGIN, the order locked, its event stored, the order updated, COMMIT.
    with django_assert_num_queries(5):
        outcome = services.apply_trade(
            paid_trade(order, transaction_id="4200000001202611210000000012"), source="NOTIFY"
        )
    assert outcome == services.Outcome.APPLIED
    assert Order.objects.get(pk=order.pk).status == "PAID"


@pytest.mark.parametrize("autocommit", AUTOCOMMIT_OR_NOT)
def test_an_event_already_stored_for_a_pending_order_changes_nothing(products, buyer, autocommit):
    order = OrderFactory(user=buyer, product=products["coffee"])
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

    # The duplicate key rolled back the order's update with it, and a caller's transaction still works.
    assert state(order) == ("PENDING", None, None, 0, 1)


@pytest.mark.parametrize("autocommit", AUTOCOMMIT_OR_NOT)
def test_a_payment_that_does_not_fit_the_order_changes_nothing_or_is_flagged(products, buyer, autocommit):
    pending = OrderFactory(user=buyer, product=products["coffee"])
    closed = OrderFactory(user=buyer, product=products["coffee"], status="CLOSED")

    # Another amount: recorded once (a retry is answered the same) and flagged, never applied.
    for _ in range(2):
        assert services.apply_trade(paid_trade(pending, amount=pending.amount - 1), source="NOTIFY") == (
            services.Outcome.MISMATCH
        )
    assert state(pending) == ("PENDING", None, None, 0, 1)
    assert flags(pending) == (True, "TRANSACTION.SUCCESS (NOTIFY) does not match: 1799 fen paid for an order of 1800")
    unknown = Order(out_trade_no="20990101unknown", amount=1800)
    assert services.apply_trade(paid_trade(unknown), source="NOTIFY") == services.Outcome.UNKNOWN_ORDER
    # Money for a closed order: stored for a human, the order stays closed and is flagged.
    outcome = services.apply_trade(paid_trade(closed, transaction_id="4200000001202611210000000099"), source="NOTIFY")
    assert outcome == services.Outcome.CONFLICT
    assert Order.objects.get(pk=closed.pk).status == "CLOSED"
    assert flags(closed)[0] is True and "4200000001202611210000000099" in flags(closed)[1]
    assert sorted(PaymentEvent.objects.values_list("outcome", flat=True)) == ["CONFLICT", "MISMATCH"]


def flags(order: Order) -> tuple[bool, str]:
    fresh = Order.objects.get(pk=order.pk)
    return fresh.needs_attention, fresh.attention_reason


@pytest.mark.parametrize("autocommit", AUTOCOMMIT_OR_NOT)
def test_a_payment_naming_another_merchant_or_app_is_recorded_and_flagged(products, buyer, autocommit):
    for ids in ({"mchid": "1900000999"}, {"appid": "wx0000000000000bad"}):
        order = OrderFactory(user=buyer, product=products["coffee"])
        trade = dataclasses.replace(paid_trade(order), **ids)
        assert services.apply_trade(trade, source="QUERY") == services.Outcome.MISMATCH
        assert state(order)[:4] == ("PENDING", None, None, 0)
        assert flags(order)[0] is True and "not ours" in flags(order)[1]


@pytest.mark.parametrize("autocommit", AUTOCOMMIT_OR_NOT)
@pytest.mark.parametrize("field", ["transaction_id", "payer_openid"])
def test_over_long_ids_in_a_verified_payment_are_a_mismatch_on_every_database(products, buyer, autocommit, field):
    # PostgreSQL would fail the write (a 500), SQLite would store all 200 characters.
    order = OrderFactory(user=buyer, product=products["coffee"])
    trade = paid_trade(order, transaction_id="4" * 200 if field == "transaction_id" else "4200000001202611210000000001")
    if field == "payer_openid":
        trade = dataclasses.replace(trade, payer_openid="o" * 200)
    assert services.apply_trade(trade, source="NOTIFY") == services.Outcome.MISMATCH
    assert state(order) == ("PENDING", None, None, 0, 1)  # recorded as a mismatch, nothing applied
    assert flags(order)[0] is True


# --- apply_refund: a refund applied once, under the order's and the refund's row locks -------------


def refund_result(refund: Refund, *, status: str = "SUCCESS", amount: int | None = None) -> RefundState:
    return RefundState(
        out_trade_no=refund.order.out_trade_no,
        out_refund_no=refund.out_refund_no,
        status=status,
        refund_id="50" + refund.out_refund_no[1:29],
        amount=refund.amount if amount is None else amount,
        raw={"out_refund_no": refund.out_refund_no, "status": status},
    )


def refunds_state(order: Order) -> tuple[Any, ...]:
    fresh = Order.objects.get(pk=order.pk)
    refunds = list(Refund.objects.order_by("pk").values_list("status", "succeeded_at"))
    return fresh.status, fresh.refunded_amount, refunds, PaymentEvent.objects.count()


@pytest.mark.parametrize("autocommit", AUTOCOMMIT_OR_NOT)
def test_a_refund_is_applied_once_and_the_last_one_refunds_the_order(products, buyer, autocommit):
    order = OrderFactory(user=buyer, product=products["coffee"], status="PAID")
    part, rest = RefundFactory(order=order, amount=800), RefundFactory(order=order, amount=1000)

    assert services.apply_refund(refund_result(part), source="NOTIFY") == services.Outcome.APPLIED
    assert services.apply_refund(refund_result(part), source="NOTIFY") == services.Outcome.NO_CHANGE
    assert refunds_state(order)[:2] == ("PAID", 800)  # part of the money is back: still PAID
    assert services.apply_refund(refund_result(rest), source="QUERY") == services.Outcome.APPLIED

    assert refunds_state(order)[:2] == ("REFUNDED", 1800)
    for refund in (part, rest):
        refund.refresh_from_db()
        assert refund.status == "SUCCESS" and refund.succeeded_at and refund.provider_refund_id
    assert sorted(PaymentEvent.objects.values_list("event_key", "kind", "outcome")) == sorted(
        (f"wechatpay:refund:{r.out_refund_no}:SUCCESS", "REFUND.SUCCESS", "APPLIED") for r in (part, rest)
    )


@pytest.mark.parametrize("autocommit", AUTOCOMMIT_OR_NOT)
def test_a_refund_result_that_does_not_fit_changes_nothing(products, buyer, autocommit):
    order = OrderFactory(user=buyer, product=products["coffee"], status="PAID")
    refund = RefundFactory(order=order, amount=800)
    someone_elses = OrderFactory(user=buyer, product=products["coffee"], status="PAID")
    before = refunds_state(order)

    assert services.apply_refund(refund_result(refund, amount=801), source="NOTIFY") == services.Outcome.MISMATCH
    # Recorded and flagged; the refund itself unchanged.
    assert PaymentEvent.objects.get().outcome == "MISMATCH" and flags(order)[0] is True
    PaymentEvent.objects.all().delete()
    unknown = RefundState(out_trade_no=order.out_trade_no, out_refund_no="R20990101unknown", status="SUCCESS")
    assert services.apply_refund(unknown, source="NOTIFY") == services.Outcome.UNKNOWN_ORDER
    # Our refund number under another order's number: not this refund.
    crossed = RefundState(out_trade_no=someone_elses.out_trade_no, out_refund_no=refund.out_refund_no, status="SUCCESS")
    assert services.apply_refund(crossed, source="NOTIFY") == services.Outcome.UNKNOWN_ORDER
    assert services.apply_refund(refund_result(refund, status="PROCESSING"), source="QUERY") == (
        services.Outcome.NO_CHANGE
    )
    assert refunds_state(order) == before == ("PAID", 0, [("PROCESSING", None)], 0)

    # More back than was paid: a human looks; nothing is applied.
    assert services.apply_refund(refund_result(refund), source="NOTIFY") == services.Outcome.APPLIED
    too_much = RefundFactory(order=order, amount=1800)
    assert services.apply_refund(refund_result(too_much), source="NOTIFY") == services.Outcome.CONFLICT
    assert Refund.objects.get(pk=too_much.pk).status == "PROCESSING"
    # Money that went out stays recorded, whatever arrives later.
    assert services.apply_refund(refund_result(refund, status="CLOSED"), source="QUERY") == services.Outcome.NO_CHANGE
    assert refunds_state(order)[:2] == ("PAID", 800) and PaymentEvent.objects.count() == 1


@pytest.mark.parametrize("autocommit", AUTOCOMMIT_OR_NOT)
def test_an_over_long_refund_id_is_a_mismatch(products, buyer, autocommit):
    order = OrderFactory(user=buyer, product=products["coffee"], status="PAID")
    refund = RefundFactory(order=order, amount=800)
    before = refunds_state(order)
    result = dataclasses.replace(refund_result(refund), refund_id="5" * 200)
    assert services.apply_refund(result, source="NOTIFY") == services.Outcome.MISMATCH
    assert refunds_state(order)[:3] == before[:3] and refunds_state(order)[3] == before[3] + 1
    assert flags(order)[0] is True


# --- create: the provider down ------------------------------------------------------------------


# Through createWechatPayOrder, as a client retries; JSAPI, so the buyer logs in with WeChat first.
@pytest.mark.parametrize("version", ["V2", "V3"])
@pytest.mark.parametrize("fault", ["timeout", "http_500"])
def test_provider_down_during_create_then_retry_reuses_the_order(gql, products, settings, fault, version):
    if fault == "timeout":
        settings.PROVIDER_READ_TIMEOUT = 0.3
    providers.reset()
    gql.login("alice")
    providers.sandbox().set_fault("wechatpay", fault, 1)

    failed = gql(CREATE_ORDER, create_order_input(version=version))
    assert error_code(failed) == "PROVIDER_UNAVAILABLE"
    assert failed.get("data") in (None, {"createWechatPayOrder": None})
    order = Order.objects.get()
    assert order.status == "PENDING" and order.api_version == version
    assert (order.prepay_id, order.code_url, order.h5_url) == ("", "", "")
    assert simulator().orders_created() == 0

    retried = gql(CREATE_ORDER, create_order_input(version=version))
    assert "errors" not in retried, retried
    result = retried["data"]["createWechatPayOrder"]
    assert result["order"]["outTradeNo"] == order.out_trade_no
    assert result["payParams"]["package"].startswith("prepay_id=")
    assert Order.objects.count() == 1
    assert Order.objects.get().prepay_id
    assert simulator().orders_created() == 1
    assert simulator().order(order.out_trade_no)["amount"] == order.amount


# --- reconcile ----------------------------------------------------------------------------------


def past_reconcile_after(settings: Any) -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=settings.RECONCILE_AFTER + 1)


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_reconcile_recovers_a_lost_notify(products, buyer, wechatpay_sandbox, settings, version):
    order = paid_at_sandbox(buyer, version)  # paid, and the notify is lost

    # Too early: a notify may still be on its way.
    assert services.reconcile(now=timezone.now()).checked == 0
    assert state(order) == ("PENDING", None, None, 0, 0)

    report = services.reconcile(now=past_reconcile_after(settings))
    assert (report.checked, report.paid, report.closed, report.failed) == (1, 1, 0, [])
    order.refresh_from_db()
    assert order.status == "PAID"
    assert order.transaction_id == wechatpay_sandbox.order(order.out_trade_no)["transaction_id"]
    event = PaymentEvent.objects.get()
    assert event.order_id == order.pk and event.source == "QUERY"

    # The late notify and a second run change nothing.
    assert is_success(version, post_notify(*wechatpay_sandbox.pay_notify(order.out_trade_no)))
    assert services.reconcile(now=past_reconcile_after(settings)).checked == 0
    assert PaymentEvent.objects.count() == 1


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_reconcile_closes_an_expired_order_at_the_provider_first(products, buyer, wechatpay_sandbox, version):
    order = place_order(buyer, version)
    assert wechatpay_sandbox.order(order.out_trade_no)["state"] == "NOTPAY"

    report = services.reconcile(now=order.expires_at + dt.timedelta(seconds=1))
    assert (report.checked, report.paid, report.closed, report.failed) == (1, 0, 1, [])
    assert wechatpay_sandbox.order(order.out_trade_no)["state"] == "CLOSED"
    order.refresh_from_db()
    assert order.status == "CLOSED" and order.closed_at is not None and order.transaction_id is None
    # The buyer can no longer pay it.
    with pytest.raises(ValueError, match="closed"):
        wechatpay_sandbox.pay(order.out_trade_no)


def test_reconcile_leaves_an_order_needing_attention_alone(products, buyer, wechatpay_sandbox):
    order = place_order(buyer, "V3")
    services.apply_trade(paid_trade(order, amount=order.amount + 1), source="NOTIFY")  # flags it
    report = services.reconcile(now=order.expires_at + dt.timedelta(seconds=1))
    assert report.checked == 0
    assert wechatpay_sandbox.order(order.out_trade_no)["state"] == "NOTPAY"  # not closed at the provider
    assert Order.objects.get(pk=order.pk).status == "PENDING" and flags(order)[0] is True


def test_money_for_a_closed_order_is_refundable_by_staff(products, buyer, staff, wechatpay_sandbox):
    # The buyer paid while we closed the order: the payment is recorded (CONFLICT), the order flagged,
    # and staff send the money back, the order staying closed.
    order = place_order(buyer, "V3")
    wechatpay_sandbox.pay(order.out_trade_no)
    Order.objects.filter(pk=order.pk).update(status=Order.Status.CLOSED)
    sandbox_trade = wechatpay_sandbox.order(order.out_trade_no)
    trade = paid_trade(order, transaction_id=sandbox_trade["transaction_id"])
    assert services.apply_trade(trade, source="NOTIFY") == services.Outcome.CONFLICT

    refund = services.refund_order(
        staff=staff, out_trade_no=order.out_trade_no, amount=order.amount, reason="paid late"
    )
    assert refund.status == "PROCESSING"
    wechatpay_sandbox.complete_refund(refund.out_refund_no)
    refund.refresh_from_db()
    fresh = Order.objects.get(pk=order.pk)
    assert refund.status == "SUCCESS" and fresh.refunded_amount == order.amount and fresh.status == "CLOSED"
    # An ordinary closed order is not refundable.
    other = place_order(buyer, "V3")
    Order.objects.filter(pk=other.pk).update(status=Order.Status.CLOSED)
    with pytest.raises(services.AppError) as refused:
        services.refund_order(staff=staff, out_trade_no=other.out_trade_no, amount=1, reason="")
    assert refused.value.code == "CONFLICT"


def test_reconcile_leaves_an_unexpired_unpaid_order_pending(products, buyer, wechatpay_sandbox, settings):
    order = place_order(buyer, "V3")
    report = services.reconcile(now=past_reconcile_after(settings))
    assert (report.checked, report.paid, report.closed) == (1, 0, 0)
    assert state(order) == ("PENDING", None, None, 0, 0)
    assert wechatpay_sandbox.order(order.out_trade_no)["state"] == "NOTPAY"


# --- concurrency (PostgreSQL: real row locks, one connection per thread) -------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["V2", "V3"])
def test_a_late_notify_racing_reconciliation_gives_one_event(products, buyer, settings, version):
    order = paid_at_sandbox(buyer, version)
    notify = simulator().pay_notify(order.out_trade_no)
    now = past_reconcile_after(settings)
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


def _waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["V2", "V3"])
def test_notify_waits_for_a_transaction_holding_the_order_then_applies_once(products, buyer, version):
    order = paid_at_sandbox(buyer, version)
    url, headers, body = simulator().pay_notify(order.out_trade_no)
    locked, release = threading.Event(), threading.Event()
    answers: list[Any] = []
    errors: list[BaseException] = []

    def hold_the_row() -> None:
        try:
            with transaction.atomic():
                Order.objects.select_for_update().get(pk=order.pk)
                locked.set()
                release.wait(timeout=JOIN_TIMEOUT)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    def notify() -> None:
        try:
            answers.append(post_notify(url, headers, body))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_row)
    notifier = threading.Thread(target=notify)
    holder.start()
    try:
        assert locked.wait(timeout=JOIN_TIMEOUT)
        notifier.start()
        deadline = time.monotonic() + JOIN_TIMEOUT
        while _waiting_on_a_lock() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _waiting_on_a_lock() == 1, "the notify should be waiting on the row lock"
        # While the row is held the notify has neither answered nor changed anything.
        assert answers == [] and notifier.is_alive()
        assert state(order) == ("PENDING", None, None, 0, 0)
    finally:
        release.set()
        holder.join(timeout=JOIN_TIMEOUT)
        if notifier.ident is not None:
            notifier.join(timeout=JOIN_TIMEOUT)
    assert not holder.is_alive() and not notifier.is_alive()
    assert errors == []
    assert len(answers) == 1 and is_success(version, answers[0]), (answers[0].status_code, answers[0].content)
    order.refresh_from_db()
    assert order.status == "PAID" and order.transaction_id
    assert PaymentEvent.objects.count() == 1
