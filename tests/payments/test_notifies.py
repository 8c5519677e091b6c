"""payments/notifies.py: what a notify must prove before it changes anything. Forged v2 and v3 pay
notifies are refused, logged and change nothing; a v2 notify's sign type follows its order; a refund
notify with another amount changes nothing. Each is posted to its view, as WeChat Pay posts it."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from payments.models import Order, PaymentEvent, Refund
from providers.sandbox.wechatpay import encrypt_refund_info
from providers.wechatpay import v2
from tests.payments.notify_bodies import (
    V2_REFUND_PATH,
    captured_refund_notify,
    flip,
    is_success,
    paid_at_sandbox,
    post_notify,
    reencrypt_v3,
    refund_in_flight,
    resign_v2,
    sign_v3,
    state,
    v2_return_code,
)


def warnings_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


# --- v2 pay notifies ----------------------------------------------------------------------------


def _v2_forged(case: str, order: Order, body: bytes) -> tuple[bytes, str | None]:
    """(body, order number the warning must name)."""
    number = order.out_trade_no
    if case == "bad_signature":
        params = v2.parse_xml(body)
        params["sign"] = flip(params["sign"], 5)
        return v2.to_xml(params), number
    if case == "wrong_appid":
        return resign_v2(body, order.sign_type, lambda p: p.update(appid="wx0000000000000bad")), number
    if case == "wrong_mch_id":
        return resign_v2(body, order.sign_type, lambda p: p.update(mch_id="1900000999")), number
    if case == "amount_plus_1":
        return resign_v2(body, order.sign_type, lambda p: p.update(total_fee=str(order.amount + 1))), number
    if case == "amount_minus_1":
        return resign_v2(body, order.sign_type, lambda p: p.update(total_fee=str(order.amount - 1))), number
    if case == "unknown_order":
        unknown = "20990101" + secrets.token_hex(12)
        return resign_v2(body, order.sign_type, lambda p: p.update(out_trade_no=unknown)), unknown
    raise AssertionError(case)


# Unverifiable, or naming no order of ours: refused, nothing changes.
V2_FORGERIES = ["bad_signature", "unknown_order"]
# Verified (signed with our key) but naming our order with other facts: recorded, flagged, not applied.
MISMATCHES = ["wrong_appid", "wrong_mch_id", "amount_plus_1", "amount_minus_1"]


@pytest.mark.parametrize("case", V2_FORGERIES)
def test_v2_forged_notify_is_refused_logged_and_changes_nothing(products, buyer, wechatpay_sandbox, caplog, case):
    order = paid_at_sandbox(buyer, "V2")
    url, headers, body = wechatpay_sandbox.pay_notify(order.out_trade_no)
    forged, number = _v2_forged(case, order, body)
    before = state(order)
    assert before == ("PENDING", None, None, 0, 0)

    with caplog.at_level(logging.WARNING):
        response = post_notify(url, headers, forged)

    assert v2_return_code(response) == "FAIL"
    assert state(order) == before
    assert Order.objects.count() == 1
    logged = warnings_text(caplog)
    assert logged, "a refused notify must be logged"
    assert number in logged, logged
    # The genuine notify still works: only the forged field stopped the forgery.
    assert is_success("V2", post_notify(url, headers, body))
    assert Order.objects.get(pk=order.pk).status == "PAID" and PaymentEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("order_type", "notify_type", "accepted"),
    [
        ("MD5", "MD5", True),  # an order placed with MD5 is paid by an MD5-signed notify
        ("MD5", "HMAC-SHA256", True),  # the stronger type, made with the same key
        ("HMAC-SHA256", "MD5", False),  # never a weaker signature than the order was placed with
    ],
)
def test_v2_notify_sign_type_follows_the_order(products, buyer, wechatpay_sandbox, order_type, notify_type, accepted):
    order = paid_at_sandbox(buyer, "V2")
    Order.objects.filter(pk=order.pk).update(sign_type=order_type)
    url, headers, body = wechatpay_sandbox.pay_notify(order.out_trade_no)
    signed = resign_v2(body, notify_type, lambda p: p.update(sign_type=notify_type))

    answer = v2_return_code(post_notify(url, headers, signed))

    fresh = Order.objects.get(pk=order.pk)
    if accepted:
        assert answer == "SUCCESS" and fresh.status == "PAID" and PaymentEvent.objects.count() == 1
    else:
        assert answer == "FAIL" and fresh.status == "PENDING" and PaymentEvent.objects.count() == 0


# --- v3 notifies --------------------------------------------------------------------------------


def _v3_forged(
    case: str, order: Order, headers: dict[str, str], body: bytes
) -> tuple[dict[str, str], bytes, str | None]:
    """(headers, body, order number the warning must name, None when it is not known before verification)."""
    number = order.out_trade_no
    if case == "bad_signature":
        return {**headers, "Wechatpay-Signature": flip(headers["Wechatpay-Signature"], 20)}, body, None
    if case == "signtest":
        return {**headers, "Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]}, body, None
    if case == "stale_timestamp":
        return sign_v3(headers, body, timestamp=int(time.time()) - 6 * 60), body, None
    if case == "unknown_serial":
        return {**headers, "Wechatpay-Serial": "PUB_KEY_ID_0119000001092026112100000000009999"}, body, None

    changes: dict[str, Callable[[dict[str, Any]], None]] = {
        "wrong_appid": lambda d: d.update(appid="wx0000000000000bad"),
        "wrong_mch_id": lambda d: d.update(mchid="1900000999"),
        "amount_plus_1": lambda d: d["amount"].update(total=order.amount + 1, payer_total=order.amount + 1),
        "amount_minus_1": lambda d: d["amount"].update(total=order.amount - 1, payer_total=order.amount - 1),
    }
    if case == "unknown_order":
        number = "20990101" + secrets.token_hex(12)
        changes[case] = lambda d: d.update(out_trade_no=number)
    forged = reencrypt_v3(body, changes[case])
    return sign_v3(headers, forged), forged, number


V3_FORGERIES = ["bad_signature", "signtest", "stale_timestamp", "unknown_serial", "unknown_order"]


@pytest.mark.parametrize("case", V3_FORGERIES)
def test_v3_forged_notify_is_refused_logged_and_changes_nothing(products, buyer, wechatpay_sandbox, caplog, case):
    order = paid_at_sandbox(buyer, "V3")
    url, headers, body = wechatpay_sandbox.pay_notify(order.out_trade_no)
    forged_headers, forged_body, number = _v3_forged(case, order, headers, body)
    before = state(order)
    assert before == ("PENDING", None, None, 0, 0)

    with caplog.at_level(logging.WARNING):
        response = post_notify(url, forged_headers, forged_body)

    assert 400 <= response.status_code < 500, (response.status_code, response.content)
    if case == "unknown_order":
        assert response.status_code == 404  # WeChat Pay retries: the order may not be committed yet
    assert response.json()["code"] == "FAIL" and response.json()["message"]
    assert state(order) == before
    assert Order.objects.count() == 1
    logged = warnings_text(caplog)
    assert logged, "a refused notify must be logged"
    if number is not None:
        assert number in logged, f"the warning should name the order {number}: {logged!r}"
    assert is_success("V3", post_notify(url, headers, body))
    assert Order.objects.get(pk=order.pk).status == "PAID" and PaymentEvent.objects.count() == 1


@pytest.mark.parametrize("version", ["V2", "V3"])
@pytest.mark.parametrize("case", MISMATCHES)
def test_a_verified_notify_that_does_not_fit_its_order_is_recorded_and_flagged(
    products, buyer, wechatpay_sandbox, caplog, django_capture_on_commit_callbacks, version, case
):
    # Money that moved is never silently ignored: one MISMATCH event, the order flagged for a human
    # (logged as an error), nothing applied, and the provider told it failed (it retries: duplicates).
    order = paid_at_sandbox(buyer, version)
    url, headers, body = wechatpay_sandbox.pay_notify(order.out_trade_no)
    if version == "V2":
        forged_headers, (forged, _) = headers, _v2_forged(case, order, body)
    else:
        forged_headers, forged, _ = _v3_forged(case, order, headers, body)

    # The error is logged once the flag is committed (callbacks run here as a commit would run them).
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):  # the first copy and a retry of it
            response = post_notify(url, forged_headers, forged)
            if version == "V2":
                assert v2_return_code(response) == "FAIL"
            else:
                assert response.status_code == 400 and response.json()["code"] == "FAIL"

    assert state(order) == ("PENDING", None, None, 0, 1)
    flagged = Order.objects.get(pk=order.pk)
    assert flagged.needs_attention and "does not match" in flagged.attention_reason
    assert list(PaymentEvent.objects.values_list("outcome", "order_id")) == [("MISMATCH", order.pk)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and order.out_trade_no in errors[0] and "needs attention" in errors[0]
    # The genuine notify still pays it; the flag stays for the human.
    assert is_success(version, post_notify(url, headers, body))
    paid = Order.objects.get(pk=order.pk)
    assert paid.status == "PAID" and paid.needs_attention and PaymentEvent.objects.count() == 2


def test_v3_forged_resource_under_a_genuine_signature_is_refused(products, buyer, wechatpay_sandbox):
    """Changing the body after signing (even re-encrypted correctly) breaks the signature over the raw body."""
    order = paid_at_sandbox(buyer, "V3")
    url, headers, body = wechatpay_sandbox.pay_notify(order.out_trade_no)
    forged = reencrypt_v3(body, lambda d: d["amount"].update(total=1))
    before = state(order)
    response = post_notify(url, headers, forged)
    assert response.status_code == 401 and response.json()["code"] == "FAIL"
    assert state(order) == before


# --- refund notifies (v2 and v3) ----------------------------------------------------------------


@pytest.mark.parametrize("version", ["V2", "V3"])
@pytest.mark.parametrize("delta", [1, -1])
def test_refund_notify_with_a_mismatching_amount_is_recorded_and_flagged(
    products, buyer, staff, wechatpay_sandbox, caplog, django_capture_on_commit_callbacks, version, delta
):
    order, refund = refund_in_flight(wechatpay_sandbox, version, buyer=buyer, staff=staff)
    url, headers, body = captured_refund_notify(wechatpay_sandbox, refund.out_refund_no)
    if version == "V2":
        params = v2.parse_xml(body)
        info = v2.decrypt_refund_info(params["req_info"], settings.WECHATPAY_API_KEY)
        info["refund_fee"] = str(int(info["refund_fee"]) + delta)
        info["settlement_refund_fee"] = info["refund_fee"]
        params["req_info"] = encrypt_refund_info(info, settings.WECHATPAY_API_KEY)
        forged_headers, forged = headers, v2.to_xml(params)
    else:
        forged = reencrypt_v3(body, lambda d: d["amount"].update(refund=d["amount"]["refund"] + delta))
        forged_headers = sign_v3(headers, forged)
    before = (state(order), Refund.objects.get(pk=refund.pk).status)

    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        response = post_notify(url, forged_headers, forged)

    if version == "V2":
        assert urlsplit(url).path == V2_REFUND_PATH
        assert v2_return_code(response) == "FAIL"
    else:
        assert 400 <= response.status_code < 500 and response.json()["code"] == "FAIL"
    # Recorded (one MISMATCH event) and the order flagged; the refund itself unchanged.
    assert (state(order)[:4], Refund.objects.get(pk=refund.pk).status) == (before[0][:4], before[1])
    assert before[1] == "PROCESSING" and before[0][3] == 0
    assert state(order)[4] == before[0][4] + 1
    assert PaymentEvent.objects.filter(order=order, outcome="MISMATCH").count() == 1
    assert Order.objects.get(pk=order.pk).needs_attention
    assert refund.out_refund_no in warnings_text(caplog)
    # The genuine notify applies.
    assert is_success(version, post_notify(url, headers, body))
    assert Refund.objects.get(pk=refund.pk).status == "SUCCESS"
    assert Order.objects.get(pk=order.pk).refunded_amount == 800
