"""payments/views.py: what the notify endpoints answer. Hostile and garbage bodies, a GET, an
unexpected error (the provider's failure answer, never Django's HTML 500), the statements one notify
costs, 20 identical notifies at once (PostgreSQL, and a runserver on SQLite as `make run` runs it)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.db import OperationalError
from django.test import Client

from payments import notifies
from payments.models import Order, PaymentEvent, Refund
from tests.helpers import CREATE_ORDER, LOGIN, REFRESH, create_order_input, run_together, sandbox_notifies
from tests.payments.notify_bodies import (
    JOIN_TIMEOUT,
    V2_PATH,
    V2_REFUND_PATH,
    V3_PATH,
    captured_refund_notify,
    is_success,
    paid_at_sandbox,
    post_notify,
    refund_in_flight,
    sign_v3,
    simulator,
    state,
    v2_return_code,
)
from tests.processes import clean_env, free_port, run_python, running_server

# --- hostile and garbage bodies -----------------------------------------------------------------

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
def test_hostile_v2_bodies_are_refused_fast(products, buyer, wechatpay_sandbox, path, kind):
    order = paid_at_sandbox(buyer, "V2")
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


def test_ten_megabytes_to_v3_is_413(products, buyer, wechatpay_sandbox):
    order = paid_at_sandbox(buyer, "V3")
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


UNVERIFIABLE_V2 = {
    # compare_digest refuses non-ASCII str: it once raised TypeError (a 500) for these.
    "non-ASCII sign": (V2_PATH, "<xml><return_code>SUCCESS</return_code><sign>é</sign></xml>"),
    "non-ASCII appid": (V2_REFUND_PATH, "<xml><return_code>SUCCESS</return_code><appid>é</appid></xml>"),
    "non-ASCII mch_id": (V2_REFUND_PATH, "<xml><return_code>SUCCESS</return_code><mch_id>ü</mch_id></xml>"),
    # expat raised LookupError for an encoding it does not know.
    "unknown encoding (pay)": (V2_PATH, '<?xml version="1.0" encoding="x-nope"?><xml/>'),
    "unknown encoding (refund)": (V2_REFUND_PATH, '<?xml version="1.0" encoding="x-nope"?><xml/>'),
}


@pytest.mark.parametrize("case", sorted(UNVERIFIABLE_V2))
def test_unverifiable_v2_notifies_are_refused_without_an_error(db, caplog, case):
    path, body = UNVERIFIABLE_V2[case]
    with caplog.at_level(logging.INFO):
        response = Client().post(path, body.encode("utf-8"), content_type="text/xml")
    assert v2_return_code(response) == "FAIL"
    # Refused as unverified (a warning at most), not caught as an unexpected error.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert PaymentEvent.objects.count() == 0


def test_v3_garbage_body_with_no_headers_is_refused(db):
    response = Client().post(V3_PATH, b"{}", content_type="application/json")
    assert response.status_code == 401 and response.json()["code"] == "FAIL"
    assert PaymentEvent.objects.count() == 0


# --- a genuine notify, and what it costs or what goes wrong while it is applied ------------------

NOTIFIES = ["v2-pay", "v2-refund", "v3-pay", "v3-refund"]


def genuine_notify(kind: str, sandbox: Any, buyer: Any, staff: Any) -> tuple[Order, Refund | None, Any]:
    """A fresh pending order paid at the sandbox (pay), or a paid order with a PROCESSING refund
    completed at the sandbox (refund); and the notify WeChat Pay would send for it, not yet sent."""
    version, what = kind.split("-")
    if what == "pay":
        order = paid_at_sandbox(buyer, version.upper())
        return order, None, sandbox.pay_notify(order.out_trade_no)
    order, refund = refund_in_flight(sandbox, version.upper(), buyer=buyer, staff=staff)
    return order, refund, captured_refund_notify(sandbox, refund.out_refund_no)


def _everything(order: Order) -> tuple[Any, ...]:
    return state(order), list(Refund.objects.order_by("pk").values_list("status", "succeeded_at"))


@pytest.mark.parametrize(
    ("error", "message"), [(RuntimeError, "boom"), (OperationalError, "database is locked")], ids=["runtime", "db"]
)
@pytest.mark.parametrize("kind", NOTIFIES)
def test_an_unexpected_error_gets_the_providers_failure_answer_never_an_html_500(
    products, buyer, staff, wechatpay_sandbox, monkeypatch, console_log, kind, error, message
):
    order, refund, (url, headers, body) = genuine_notify(kind, wechatpay_sandbox, buyer, staff)
    before = _everything(order)

    def fails(*args: Any, **kwargs: Any) -> Any:
        raise error(message)

    monkeypatch.setattr(notifies, "apply_refund" if refund else "apply_trade", fails)
    _handler, stream = console_log
    request_id = f"notify-{kind}-0123456789"
    response = post_notify(url, {**headers, "X-Request-ID": request_id}, body)

    # WeChat Pay retries on its failure answer; an HTML page would be a failure it cannot read.
    assert b"<html" not in response.content.lower() and b"Traceback" not in response.content
    if kind.startswith("v2"):
        assert response.status_code == 200 and response["Content-Type"] == "text/xml; charset=utf-8"
        assert v2_return_code(response) == "FAIL"
    else:
        assert 500 <= response.status_code < 600 and response["Content-Type"] == "application/json"
        assert response.json()["code"] == "FAIL" and response.json()["message"]
    assert response["X-Request-ID"] == request_id
    # The operator finds the error by the request id, with its traceback.
    log = stream.getvalue()
    ours = [line for line in log.splitlines() if f" ERROR payments.views [{request_id}] " in line]
    assert len(ours) == 1, log
    assert ours[0].endswith(f" notify {urlsplit(url).path} failed; the provider will retry")
    assert f"{error.__name__}: {message}" in log
    assert _everything(order) == before


# BEGIN, the order locked, its event stored, the order paid, COMMIT.
PAY = ["BEGIN", "SELECT", "INSERT", "UPDATE", "COMMIT"]
# BEGIN, the order and the refund locked, the event stored, the order's refunded amount and the refund's
# status updated, COMMIT.
REFUND = ["BEGIN", "SELECT", "SELECT", "INSERT", "UPDATE", "UPDATE", "COMMIT"]


@pytest.mark.django_db(transaction=True)  # as in production: no test transaction around the view
@pytest.mark.parametrize(
    ("kind", "statements"), [("v2-pay", PAY), ("v3-pay", PAY), ("v2-refund", REFUND), ("v3-refund", REFUND)]
)
def test_statements_of_one_notify(
    products, buyer, staff, wechatpay_sandbox, django_assert_num_queries, kind, statements
):
    order, refund, notify = genuine_notify(kind, wechatpay_sandbox, buyer, staff)
    # The same on PostgreSQL and SQLite (whose BEGIN is BEGIN IMMEDIATE): 5 for a payment, 7 for a refund.
    with django_assert_num_queries(len(statements)) as captured:
        response = post_notify(*notify)
    assert [query["sql"].split()[0] for query in captured.captured_queries] == statements
    assert is_success(kind[:2].upper(), response)
    order.refresh_from_db()
    if refund is None:
        assert order.status == "PAID"
    else:
        assert Refund.objects.get(pk=refund.pk).status == "SUCCESS" and order.refunded_amount == 800


# --- 20 identical notifies at once ---------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["V2", "V3"])
def test_twenty_concurrent_identical_notifies_apply_once(products, buyer, counted, version):
    order = paid_at_sandbox(buyer, version)
    url, headers, body = simulator().pay_notify(order.out_trade_no)
    outcomes, transitions = counted
    n = 20
    responses = run_together(lambda: post_notify(url, headers, body, Client()), n, timeout=JOIN_TIMEOUT)
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


# --- the same against a server run as `make run` runs it (runserver, SQLite, the sandbox) --------

ORDER = "query O($n: String!) { order(outTradeNo: $n) { status transactionId } }"


class Api:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"JWT {token}"} if token else {}
        body = {"query": query, "variables": variables or {}}
        result = requests.post(f"{self.url}/graphql/", json=body, headers=headers, timeout=30).json()
        assert "errors" not in result, result
        return result["data"]


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Path]]:
    """The embedded default: runserver on a SQLite file, no Redis, the sandbox; and that file."""
    database = tmp_path_factory.mktemp("sqlite-server") / "db.sqlite3"
    port = free_port()
    env = clean_env(DATABASE_URL=f"sqlite:///{database}", PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    with running_server(env, port=port) as url:
        seeded = run_python(["manage.py", "seed_demo_products"], env)
        assert seeded.returncode == 0, seeded.stderr
        yield Api(url), database


def _rows(database: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as db:
        return db.execute(sql, params).fetchall()


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_twenty_concurrent_identical_notifies_on_sqlite_all_succeed_and_apply_once(sqlite_server, version):
    api, database = sqlite_server
    token = api(LOGIN, {"code": f"sqlite-{version}"})["wechatLogin"]["token"]
    created = api(CREATE_ORDER, create_order_input(version=version), token)["createWechatPayOrder"]
    number = created["order"]["outTradeNo"]

    # The sandbox cashier pays, then sends the one signed notify 20 times at once over HTTP.
    paid = requests.post(f"{api.url}/sandbox/pay/{number}?duplicates=20", timeout=60)
    assert paid.status_code == 202 and paid.json()["copies"] == 20

    answers = sandbox_notifies(api.url, number, count=20)
    assert len(answers) == 20, answers
    # Each copy was taken at its first attempt: nothing to retry.
    assert sorted((a["copy"], a["attempt"]) for a in answers) == [(n, 1) for n in range(1, 21)], answers
    if version == "V2":
        assert all(a["status"] == 200 and "<return_code><![CDATA[SUCCESS]]>" in a["body"] for a in answers)
    else:
        assert all((a["status"], a["body"]) == (204, "") for a in answers), answers
    order = api(ORDER, {"n": number}, token)["order"]
    assert order["status"] == "PAID" and order["transactionId"]
    events = _rows(
        database,
        "SELECT e.outcome, e.kind FROM payments_paymentevent e JOIN payments_order o ON o.id = e.order_id "
        "WHERE o.out_trade_no = ?",
        number,
    )
    assert events == [("APPLIED", "TRANSACTION.SUCCESS")]


def test_concurrent_logins_and_refreshes_on_sqlite_all_succeed(sqlite_server):
    api, database = sqlite_server
    n = 10
    with ThreadPoolExecutor(max_workers=n) as pool:
        logins = list(pool.map(lambda k: api(LOGIN, {"code": f"queue-{k}"})["wechatLogin"], range(n)))
    assert all(login["created"] for login in logins) and len({login["user"]["id"] for login in logins}) == n
    with ThreadPoolExecutor(max_workers=n) as pool:
        refreshed = list(pool.map(lambda login: api(REFRESH, {"t": login["refreshToken"]}), logins))
    assert len({r["refreshToken"]["refreshToken"] for r in refreshed}) == n
    rotated = _rows(database, "SELECT COUNT(*) FROM accounts_refreshtoken WHERE rotated")
    assert rotated == [(n,)]
