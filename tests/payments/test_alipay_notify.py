"""POST /notify/alipay/ and GET /pay/alipay/return/: what Alipay's notifies and return redirects may
change, and the answers Alipay reads (`success` stops its retries, anything else makes it retry)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from django.test import Client

from payments import services
from payments.models import Order, PaymentEvent, Refund
from tests.factories import OrderFactory, RefundFactory
from tests.helpers import run_together
from tests.payments.alipay_bodies import (
    NOTIFY_PATH,
    RETURN_PATH,
    answer,
    app_key,
    pay_notify,
    post_form,
    refund_notify,
    signed,
    state,
    yuan,
)


@pytest.fixture
def alipay_order(products: Any, buyer: Any, settings: Any) -> Order:
    settings.ALIPAY_RETURN_HOSTS = ["localhost:3000"]
    return OrderFactory(
        user=buyer,
        product=products["coffee"],
        provider="ALIPAY",
        api_version="",
        trade_type="PAGE",
        sign_type="RSA2",
        return_url="http://localhost:3000/paid?from=alipay",
    )


def test_a_genuine_notify_pays_the_order_once(alipay_order):
    form = signed(pay_notify(alipay_order))
    assert answer(post_form(form)) == "success"
    alipay_order.refresh_from_db()
    assert alipay_order.status == "PAID" and alipay_order.transaction_id == form["trade_no"]
    assert alipay_order.payer_openid == form["buyer_id"] and alipay_order.paid_at is not None
    event = PaymentEvent.objects.get()
    assert (event.provider, event.event_key, event.source) == ("ALIPAY", f"alipay:paid:{form['trade_no']}", "NOTIFY")
    # Alipay's retry of the same notify (same notify_id): success again, nothing more stored.
    before = state(alipay_order)
    assert answer(post_form(form)) == "success"
    assert state(alipay_order) == before


@pytest.mark.parametrize("status", ["TRADE_SUCCESS", "TRADE_FINISHED"])
def test_both_paid_states_pay(alipay_order, status):
    assert answer(post_form(signed(pay_notify(alipay_order, trade_status=status)))) == "success"
    assert Order.objects.get(pk=alipay_order.pk).status == "PAID"


def test_a_whole_yuan_amount_written_without_cents_is_the_same_amount(alipay_order):
    # "18" and "18.00" are the same money, compared as Decimal.
    assert answer(post_form(signed(pay_notify(alipay_order, total_amount="18")))) == "success"
    assert Order.objects.get(pk=alipay_order.pk).status == "PAID"


def test_a_plus_in_the_subject_is_kept_when_encoded_and_refused_when_turned_into_a_space(alipay_order):
    form = signed(pay_notify(alipay_order, subject="Coffee + milk"))
    # A body whose '+' was left raw decodes to a space: no longer what Alipay signed.
    raw = "&".join(f"{k}={quote(v, safe='+ ').replace(' ', '+')}" for k, v in form.items())
    before = state(alipay_order)
    assert answer(post_form(raw)) == "failure"
    assert state(alipay_order) == before
    # Encoded as Alipay encodes it (%2B), it verifies.
    assert answer(post_form(form)) == "success"
    assert Order.objects.get(pk=alipay_order.pk).status == "PAID"


def test_extra_query_parameters_on_the_notify_url_do_not_break_verification(alipay_order):
    form = signed(pay_notify(alipay_order))
    response = post_form(form, path=NOTIFY_PATH + "?source=alipay&sign=forged")
    assert answer(response) == "success"
    assert Order.objects.get(pk=alipay_order.pk).status == "PAID"


def _forged(case: str, order: Order) -> dict[str, str]:
    if case == "bad signature":
        form = signed(pay_notify(order))
        form["sign"] = form["sign"][:-8] + ("A" * 8 if not form["sign"].endswith("A" * 8) else "B" * 8)
        return form
    if case == "signed with the app's own key":
        return signed(pay_notify(order), key=app_key())
    if case == "sign_type left in the signed string":
        return signed(pay_notify(order), with_sign_type=True)
    if case == "no sign":
        form = signed(pay_notify(order))
        del form["sign"]
        return form
    if case == "amount changed after signing":
        form = signed(pay_notify(order))
        form["total_amount"] = "0.01"
        return form
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "bad signature",
        "signed with the app's own key",
        "sign_type left in the signed string",
        "no sign",
        "amount changed after signing",
    ],
)
def test_a_forged_notify_is_answered_failure_and_changes_nothing(alipay_order, caplog, case):
    before = state(alipay_order)
    assert answer(post_form(_forged(case, alipay_order))) == "failure"
    assert state(alipay_order) == before
    assert "alipay notify refused" in caplog.text


@pytest.mark.parametrize(
    ("case", "changes"),
    [
        ("wrong app_id", {"app_id": "2021000000000009"}),
        ("wrong seller_id", {"seller_id": "2088000000000009"}),
        ("one fen more", {"total_amount": "18.01"}),
        ("one fen less", {"total_amount": "17.99"}),
    ],
)
def test_a_verified_notify_that_does_not_fit_the_order_changes_no_money_and_is_flagged(alipay_order, case, changes):
    assert answer(post_form(signed(pay_notify(alipay_order, **changes)))) == "failure"
    fresh = Order.objects.get(pk=alipay_order.pk)
    assert (fresh.status, fresh.transaction_id, fresh.paid_at) == ("PENDING", None, None)
    # Alipay signed it, so it is kept for a human, and the order flagged.
    assert fresh.needs_attention
    assert PaymentEvent.objects.get().event_key.startswith("alipay:mismatch:")


def test_a_notify_for_an_unknown_order_is_answered_failure_so_alipay_retries(alipay_order):
    other = OrderFactory.build(product=alipay_order.product, out_trade_no="20261130" + "0" * 24)
    before = state(alipay_order)
    assert answer(post_form(signed(pay_notify(other)))) == "failure"
    assert state(alipay_order) == before


def test_wait_buyer_pay_changes_nothing_and_is_acknowledged(alipay_order):
    before = state(alipay_order)
    assert answer(post_form(signed(pay_notify(alipay_order, trade_status="WAIT_BUYER_PAY", trade_no="")))) == "success"
    assert state(alipay_order) == before


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("a field given twice", None),
        ("not a form", "\xff\xfe not a form"),
        ("empty", ""),
    ],
)
def test_a_body_alipay_never_sends_is_answered_failure(alipay_order, case, body):
    if body is None:
        form = signed(pay_notify(alipay_order))
        body = urlencode(form) + "&" + urlencode({"trade_status": "TRADE_SUCCESS"})
    before = state(alipay_order)
    assert answer(post_form(body)) == "failure"
    assert state(alipay_order) == before


def test_a_body_over_the_cap_is_refused_unread(alipay_order, settings):
    settings.NOTIFY_MAX_BYTES = 512
    form = signed(pay_notify(alipay_order, body="x" * 600))
    assert answer(post_form(form)) == "failure"
    assert Order.objects.get(pk=alipay_order.pk).status == "PENDING"


def test_only_post_reaches_the_notify(alipay_order):
    assert Client().get(NOTIFY_PATH).status_code == 405


# --- refunds' notifies -----------------------------------------------------------------------------


def _paid(order: Order) -> Order:
    assert answer(post_form(signed(pay_notify(order)))) == "success"
    order.refresh_from_db()
    return order


def test_refund_notifies_complete_a_partial_then_a_full_refund(alipay_order):
    order = _paid(alipay_order)
    first = RefundFactory(order=order, amount=800, status="PROCESSING")
    assert answer(post_form(signed(refund_notify(order, first.out_refund_no, 800)))) == "success"
    order.refresh_from_db()
    assert Refund.objects.get(pk=first.pk).status == "SUCCESS"
    assert (order.status, order.refunded_amount) == ("PAID", 800)

    rest = RefundFactory(order=order, amount=1000, status="PROCESSING")
    form = signed(refund_notify(order, rest.out_refund_no, 1800))
    assert form["trade_status"] == "TRADE_CLOSED"
    assert answer(post_form(form)) == "success"
    order.refresh_from_db()
    assert Refund.objects.get(pk=rest.pk).status == "SUCCESS"
    assert (order.status, order.refunded_amount) == ("REFUNDED", 1800)
    # A retry of either changes nothing more.
    before = state(order)
    assert answer(post_form(form)) == "success"
    assert state(order) == before


def test_a_refund_notify_for_a_refund_we_never_asked_for_changes_nothing(alipay_order):
    order = _paid(alipay_order)
    before = state(order)
    assert answer(post_form(signed(refund_notify(order, "R-not-ours", 800)))) == "failure"
    assert state(order) == before


# --- 20 identical notifies at once --------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # real threads, each its own connection: no wrapping transaction
def test_twenty_concurrent_identical_notifies_apply_once(products, buyer, counted):
    order = OrderFactory(
        user=buyer, product=products["coffee"], provider="ALIPAY", api_version="", trade_type="QR", sign_type="RSA2"
    )
    form = signed(pay_notify(order))
    outcomes, transitions = counted
    n = 20
    answers = run_together(lambda: answer(post_form(form, client=Client())), n)
    assert answers == ["success"] * n
    assert sorted(o.value for o in outcomes) == ["APPLIED"] + ["NO_CHANGE"] * (n - 1)
    assert transitions == [(order.out_trade_no, Order.Status.PAID)]
    event = PaymentEvent.objects.get()
    order.refresh_from_db()
    assert order.status == "PAID" and event.event_key == f"alipay:paid:{form['trade_no']}"


# --- the return page -----------------------------------------------------------------------------------


def return_params(order: Order, **changes: str) -> dict[str, str]:
    fields = {
        "charset": "utf-8",
        "out_trade_no": order.out_trade_no,
        "method": "alipay.trade.page.pay.return",
        "total_amount": yuan(order.amount),
        "trade_no": "2026113022001400000000000001",
        "auth_app_id": pay_notify(order)["app_id"],
        "version": "1.0",
        "app_id": pay_notify(order)["app_id"],
        "seller_id": pay_notify(order)["seller_id"],
        "timestamp": "2026-11-30 12:00:00",
    }
    fields.update(changes)
    return fields


def test_a_return_redirect_with_a_tampered_amount_shows_an_error_page_and_changes_nothing(alipay_order):
    params = signed(return_params(alipay_order))
    params["total_amount"] = "0.01"
    before = state(alipay_order)
    response = Client().get(RETURN_PATH, params)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert b"Payment not confirmed" in response.content and b"Traceback" not in response.content
    assert state(alipay_order) == before


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"out_trade_no": "x", "sign": "bm90IGEgc2lnbmF0dXJl"},
    ],
)
def test_a_return_without_a_valid_signature_shows_the_error_page(alipay_order, params):
    response = Client().get(RETURN_PATH, params)
    assert response.status_code == 400 and b"Payment not confirmed" in response.content


def test_a_verified_return_redirects_to_the_front_end_with_the_synced_status(alipay_order, monkeypatch):
    synced: list[str] = []

    def sync(order: Order) -> Order:
        synced.append(order.out_trade_no)
        return order

    monkeypatch.setattr(services, "_sync", sync)
    response = Client().get(RETURN_PATH, signed(return_params(alipay_order)))
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    assert (target.scheme, target.netloc, target.path) == ("http", "localhost:3000", "/paid")
    assert parse_qs(target.query) == {
        "from": ["alipay"],
        "outTradeNo": [alipay_order.out_trade_no],
        "status": ["PENDING"],
    }
    # The state comes from asking Alipay (syncOrder's path), never from the redirect's own fields.
    assert synced == [alipay_order.out_trade_no]


# --- python-alipay-sdk as Alipay --------------------------------------------------------------------


def test_a_notify_signed_by_python_alipay_sdk_is_accepted(alipay_order):
    """python-alipay-sdk holding Alipay's key signs a notify its way (sign_data: sorted, then
    quote_plus-encoded); our view accepts it, as Alipay's own would be."""
    from alipay import AliPay
    from Crypto.PublicKey import RSA

    from tests.payments.alipay_bodies import alipay_key

    as_alipay = AliPay(
        appid="unused",
        app_notify_url=None,
        app_private_key_string=alipay_key(),
        alipay_public_key_string=RSA.import_key(app_key()).public_key().export_key().decode(),
        sign_type="RSA2",
    )
    fields = pay_notify(alipay_order, subject="Coffee + milk & 奶")
    body = as_alipay.sign_data(dict(fields)) + "&sign_type=RSA2"
    assert answer(post_form(body)) == "success"
    alipay_order.refresh_from_db()
    assert alipay_order.status == "PAID" and alipay_order.transaction_id == fields["trade_no"]


@pytest.mark.django_db(transaction=True)  # as in production: no test transaction around the view
def test_statements_of_one_notify(products, buyer, django_assert_num_queries):
    order = OrderFactory(
        user=buyer, product=products["coffee"], provider="ALIPAY", api_version="", trade_type="PAGE", sign_type="RSA2"
    )
    form = signed(pay_notify(order))
    # BEGIN, the order locked, its event stored, the order paid, COMMIT: the same as WeChat Pay's.
    with django_assert_num_queries(5) as captured:
        assert answer(post_form(form)) == "success"
    assert [q["sql"].split()[0] for q in captured.captured_queries] == ["BEGIN", "SELECT", "INSERT", "UPDATE", "COMMIT"]
    assert Order.objects.get(pk=order.pk).status == "PAID"


def test_a_notify_replayed_at_the_return_page_is_not_a_return(alipay_order):
    before = state(alipay_order)
    response = Client().get(RETURN_PATH, signed(pay_notify(alipay_order)))
    assert response.status_code == 400 and b"Payment not confirmed" in response.content
    assert state(alipay_order) == before


def test_the_return_page_is_rate_limited_per_address(alipay_order, settings, monkeypatch):
    settings.RATELIMIT_ALIPAY_RETURN = "2/m"
    monkeypatch.setattr(services, "_sync", lambda order: order)
    params = signed(return_params(alipay_order))
    assert [Client().get(RETURN_PATH, params).status_code for _ in range(3)] == [302, 302, 429]
    assert b"Too many attempts" in Client().get(RETURN_PATH, params).content
