"""The WeChat Pay notify views under pressure: concurrent duplicates, forgeries, hostile bodies, held locks."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.test import Client

from config import providers
from payments import notifies, services
from payments.models import Order, PaymentEvent, Refund
from providers.sandbox.wechatpay import encrypt_refund_info
from providers.wechatpay import v2, v3
from providers.wechatpay.v2_client import SUCCESS_ANSWER

V2_PATH = "/notify/wechatpay/v2/"
V2_REFUND_PATH = "/notify/wechatpay/v2/refund/"
V3_PATH = "/notify/wechatpay/v3/"
JOIN_TIMEOUT = 30


# --- helpers (test_reliability imports some of them) ------------------------------------


def simulator() -> Any:
    return providers.sandbox().providers["wechatpay"]


def create_order(user: Any, version: str, *, sku: str = "coffee", quantity: int = 1) -> Order:
    payment = services.create_wechatpay_order(
        user=user, sku=sku, quantity=quantity, trade_type="NATIVE", api_version=version, client_ip="127.0.0.1"
    )
    return payment.order


def paid_at_sandbox(user: Any, version: str) -> Order:
    """An order the user has paid at the sandbox; its notify has not been sent."""
    order = create_order(user, version)
    simulator().pay(order.out_trade_no)
    return order


def post_notify(url: str, headers: dict[str, str], body: bytes, client: Client | None = None) -> Any:
    """POSTs a notify as WeChat Pay sends it: the headers as HTTP headers, the raw body."""
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k.lower() != "content-type"}
    return (client or Client()).post(
        urlsplit(url).path, body, content_type=headers.get("Content-Type", "application/octet-stream"), **meta
    )


def v2_return_code(response: Any) -> str:
    assert response.status_code == 200, response.content
    return v2.parse_xml(response.content)["return_code"]


def is_success(version: str, response: Any) -> bool:
    if version == "V2":
        return response.status_code == 200 and response.content == SUCCESS_ANSWER
    return response.status_code == 204 and response.content == b""


def state(order: Order) -> tuple[Any, ...]:
    """Everything a refused notify must leave alone."""
    fresh = Order.objects.get(pk=order.pk)
    return (fresh.status, fresh.transaction_id, fresh.paid_at, fresh.refunded_amount, PaymentEvent.objects.count())


def resign_v2(body: bytes, sign_type: str, change: Callable[[dict[str, str]], None]) -> bytes:
    params = v2.parse_xml(body)
    change(params)
    params["sign"] = v2.sign(params, settings.WECHATPAY_API_KEY, sign_type)
    return v2.to_xml(params)


def v3_resource(body: bytes) -> dict[str, Any]:
    resource = json.loads(body)["resource"]
    plain = v3.decrypt_resource(
        settings.WECHATPAY_API_V3_KEY, resource["nonce"], resource["ciphertext"], resource["associated_data"]
    )
    return json.loads(plain)  # type: ignore[no-any-return]


def reencrypt_v3(body: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    envelope = json.loads(body)
    data = v3_resource(body)
    change(data)
    resource = envelope["resource"]
    resource["ciphertext"] = v3.encrypt_resource(
        settings.WECHATPAY_API_V3_KEY,
        resource["nonce"],
        json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        resource["associated_data"],
    )
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


def sign_v3(headers: dict[str, str], body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Signs as the platform does (the sandbox's platform key), with a fresh nonce."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_hex(16)
    platform_key = providers._wechatpay_sandbox_keys()[1]
    signature = v3.sign_message(platform_key, f"{stamp}\n{nonce}\n{body.decode()}\n")
    return {**headers, "Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature}


def flip(text: str, at: int = 10) -> str:
    return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1 :]


def warnings_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


# --- 20 identical notifies at once -----------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["V2", "V3"])
def test_twenty_concurrent_identical_notifies_apply_once(products, django_user_model, monkeypatch, version):
    user = django_user_model.objects.create_user(username="buyer")
    order = paid_at_sandbox(user, version)
    url, headers, body = simulator().pay_notify(order.out_trade_no)
    outcomes: list[services.Outcome] = []
    transitions: list[tuple[str, str]] = []
    real_apply, real_transition = notifies.apply_trade, services.transition

    def counting_apply(trade: Any, *, source: str) -> services.Outcome:
        outcome = real_apply(trade, source=source)
        outcomes.append(outcome)
        return outcome

    def counting_transition(locked: Order, new: str) -> None:
        transitions.append((locked.out_trade_no, new))
        real_transition(locked, new)

    monkeypatch.setattr(notifies, "apply_trade", counting_apply)
    monkeypatch.setattr(services, "transition", counting_transition)
    n = 20
    barrier = threading.Barrier(n)
    responses: list[Any] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            client = Client()
            barrier.wait(timeout=JOIN_TIMEOUT)
            responses.append(post_notify(url, headers, body, client))
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a notify thread hung"
    assert errors == []
    assert len(responses) == n
    assert [is_success(version, r) for r in responses] == [True] * n, [(r.status_code, r.content) for r in responses]
    # One notify changed the order, through transition(); the 19 others found it paid and changed nothing.
    assert sorted(o.value for o in outcomes) == ["APPLIED"] + ["NO_CHANGE"] * (n - 1)
    assert transitions == [(order.out_trade_no, Order.Status.PAID)]
    assert PaymentEvent.objects.count() == 1
    event = PaymentEvent.objects.get()
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert event.order_id == order.pk and event.event_key == f"wechatpay:paid:{order.transaction_id}"
    assert order.transaction_id == simulator().order(order.out_trade_no)["transaction_id"]


# --- forged and mismatching notifies ---------------------------------------------------


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


V2_FORGERIES = ["bad_signature", "wrong_appid", "wrong_mch_id", "amount_plus_1", "amount_minus_1", "unknown_order"]


@pytest.mark.parametrize("case", V2_FORGERIES)
def test_v2_forged_notify_is_refused_logged_and_changes_nothing(
    products, django_user_model, wechatpay_sandbox, caplog, case
):
    user = django_user_model.objects.create_user(username="buyer")
    order = paid_at_sandbox(user, "V2")
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
def test_v2_notify_sign_type_follows_the_order(
    products, django_user_model, wechatpay_sandbox, order_type, notify_type, accepted
):
    user = django_user_model.objects.create_user(username="buyer")
    order = paid_at_sandbox(user, "V2")
    Order.objects.filter(pk=order.pk).update(sign_type=order_type)
    url, headers, body = wechatpay_sandbox.pay_notify(order.out_trade_no)
    signed = resign_v2(body, notify_type, lambda p: p.update(sign_type=notify_type))

    answer = v2_return_code(post_notify(url, headers, signed))

    fresh = Order.objects.get(pk=order.pk)
    if accepted:
        assert answer == "SUCCESS" and fresh.status == "PAID" and PaymentEvent.objects.count() == 1
    else:
        assert answer == "FAIL" and fresh.status == "PENDING" and PaymentEvent.objects.count() == 0


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


V3_FORGERIES = [
    "bad_signature",
    "signtest",
    "stale_timestamp",
    "unknown_serial",
    "wrong_appid",
    "wrong_mch_id",
    "amount_plus_1",
    "amount_minus_1",
    "unknown_order",
]


@pytest.mark.parametrize("case", V3_FORGERIES)
def test_v3_forged_notify_is_refused_logged_and_changes_nothing(
    products, django_user_model, wechatpay_sandbox, caplog, case
):
    user = django_user_model.objects.create_user(username="buyer")
    order = paid_at_sandbox(user, "V3")
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


def test_v3_forged_resource_under_a_genuine_signature_is_refused(products, django_user_model, wechatpay_sandbox):
    """Changing the body after signing (even re-encrypted correctly) breaks the signature over the raw body."""
    user = django_user_model.objects.create_user(username="buyer")
    order = paid_at_sandbox(user, "V3")
    url, headers, body = wechatpay_sandbox.pay_notify(order.out_trade_no)
    forged = reencrypt_v3(body, lambda d: d["amount"].update(total=1))
    before = state(order)
    response = post_notify(url, headers, forged)
    assert response.status_code == 401 and response.json()["code"] == "FAIL"
    assert state(order) == before


# --- hostile bodies --------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<xml><return_code>SUCCESS</return_code><out_trade_no>NUMBER</out_trade_no><attach>&lol9;</attach></xml>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><return_code>SUCCESS</return_code><out_trade_no>NUMBER</out_trade_no><attach>&xxe;</attach></xml>"""


def _ten_megabytes(number: str) -> bytes:
    head = f"<xml><return_code>SUCCESS</return_code><out_trade_no>{number}</out_trade_no><attach>".encode()
    return head + b"A" * (10 * 1024 * 1024) + b"</attach></xml>"


@pytest.mark.parametrize("path", [V2_PATH, V2_REFUND_PATH])
@pytest.mark.parametrize("kind", ["billion_laughs", "xxe", "ten_megabytes"])
def test_hostile_v2_bodies_are_refused_fast(products, django_user_model, wechatpay_sandbox, path, kind):
    user = django_user_model.objects.create_user(username="buyer")
    order = paid_at_sandbox(user, "V2")
    number = order.out_trade_no.encode()
    body = {
        "billion_laughs": BILLION_LAUGHS.replace(b"NUMBER", number),
        "xxe": XXE.replace(b"NUMBER", number),
        "ten_megabytes": _ten_megabytes(order.out_trade_no),
    }[kind]
    before = state(order)
    started = time.monotonic()
    response = Client().post(path, body, content_type="text/xml")
    elapsed = time.monotonic() - started

    assert response.status_code < 500
    if response.status_code == 200:
        assert v2_return_code(response) == "FAIL"
    else:
        assert 400 <= response.status_code < 500
    assert b"root:" not in response.content  # no file content ever reaches the answer
    assert elapsed < 2, f"refusing a hostile body took {elapsed:.2f}s"
    assert state(order) == before
    assert Refund.objects.count() == 0


def test_ten_megabytes_to_v3_is_413(products, django_user_model, wechatpay_sandbox):
    user = django_user_model.objects.create_user(username="buyer")
    order = paid_at_sandbox(user, "V3")
    _, headers, _ = wechatpay_sandbox.pay_notify(order.out_trade_no)
    body = b'{"resource":"' + b"A" * (10 * 1024 * 1024) + b'"}'
    before = state(order)
    started = time.monotonic()
    response = post_notify(V3_PATH, sign_v3(headers, body), body)
    assert time.monotonic() - started < 2
    assert response.status_code == 413
    assert response.json()["code"] == "FAIL"
    assert state(order) == before


@pytest.mark.parametrize("path", [V2_PATH, V2_REFUND_PATH, V3_PATH])
def test_get_on_notify_urls_is_405(db, path):
    response = Client().get(path)
    assert response.status_code == 405
    assert PaymentEvent.objects.count() == 0


@pytest.mark.parametrize("path", [V2_PATH, V2_REFUND_PATH])
def test_v2_garbage_and_empty_bodies_get_the_failure_answer(db, path):
    for body in (b"", b"not xml", b"<xml><a><b>nested</b></a></xml>", b"\xff\xfe\x00<xml>"):
        response = Client().post(path, body, content_type="text/xml")
        assert v2_return_code(response) == "FAIL", body
    assert PaymentEvent.objects.count() == 0


def test_v3_garbage_body_with_no_headers_is_refused(db):
    response = Client().post(V3_PATH, b"{}", content_type="application/json")
    assert response.status_code == 401 and response.json()["code"] == "FAIL"
    assert PaymentEvent.objects.count() == 0


# --- a notify while another transaction holds the order row ----------------------------


def _waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["V2", "V3"])
def test_notify_waits_for_a_transaction_holding_the_order_then_applies_once(products, django_user_model, version):
    user = django_user_model.objects.create_user(username="buyer")
    order = paid_at_sandbox(user, version)
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


# --- refund notifies -------------------------------------------------------------------


def _paid_and_refund_requested(django_user_model: Any, sandbox: Any, version: str) -> tuple[Order, Refund]:
    user = django_user_model.objects.create_user(username="buyer")
    order = paid_at_sandbox(user, version)
    assert is_success(version, post_notify(*sandbox.pay_notify(order.out_trade_no)))
    staff = django_user_model.objects.create_user(username="staff", password="x", is_staff=True)
    refund = services.refund_order(staff=staff, out_trade_no=order.out_trade_no, amount=800, reason="test")
    assert refund.status == "PROCESSING"
    return Order.objects.get(pk=order.pk), refund


def _captured_refund_notify(sandbox: Any, out_refund_no: str) -> tuple[str, dict[str, str], bytes]:
    """Completes the refund at the sandbox and keeps the notify instead of delivering it."""
    captured: list[tuple[str, dict[str, str], bytes]] = []

    def capture(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        captured.append((url, headers, body))
        return 200, ""

    sandbox.deliver = capture
    sandbox.complete_refund(out_refund_no)
    assert len(captured) == 1
    return captured[0]


@pytest.mark.parametrize("version", ["V2", "V3"])
@pytest.mark.parametrize("delta", [1, -1])
def test_refund_notify_with_a_mismatching_amount_changes_nothing(
    products, django_user_model, wechatpay_sandbox, caplog, version, delta
):
    order, refund = _paid_and_refund_requested(django_user_model, wechatpay_sandbox, version)
    url, headers, body = _captured_refund_notify(wechatpay_sandbox, refund.out_refund_no)
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

    with caplog.at_level(logging.WARNING):
        response = post_notify(url, forged_headers, forged)

    if version == "V2":
        assert urlsplit(url).path == V2_REFUND_PATH
        assert v2_return_code(response) == "FAIL"
    else:
        assert 400 <= response.status_code < 500 and response.json()["code"] == "FAIL"
    assert (state(order), Refund.objects.get(pk=refund.pk).status) == before
    assert before[1] == "PROCESSING" and before[0][3] == 0
    assert refund.out_refund_no in warnings_text(caplog)
    # The genuine notify applies.
    assert is_success(version, post_notify(url, headers, body))
    assert Refund.objects.get(pk=refund.pk).status == "SUCCESS"
    assert Order.objects.get(pk=order.pk).refunded_amount == 800
