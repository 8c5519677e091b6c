"""The Alipay gateway simulator (providers/sandbox/alipay.py) at the real gateway's contract: in-process through
our client's session, over real HTTP (live server) through our client and python-alipay-sdk 3.4.0, in public-key
and certificate mode; its cashier, scan and app pages; notifies retried until `success`; faults.

The notifies the sandbox sends are caught (`Inbox`) instead of reaching our notify view, so each test reads
them as Alipay sent them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
from alipay import AliPay, DCAliPay
from alipay.exceptions import AliPayException

import providers.sandbox.alipay as sandbox_alipay
from config import providers
from providers.alipay import certs, signing
from providers.alipay.client import AlipayClient
from providers.http import ProviderError, ProviderUnavailable, make_session
from providers.sandbox.alipay import AlipaySimulator, issue_certificates
from providers.sandbox.core import SandboxRequest
from providers.wechatpay.keys import public_key_pem

CHINA = dt.timezone(dt.timedelta(hours=8))
RETRY_SECONDS = (0.05, 0.05, 0.1)
NOTIFY_URL = "http://localhost:8000/notify/alipay/"
RETURN_URL = "http://shop.example/paid?from=alipay"
QUIT_URL = "http://shop.example/cart"
PAGE = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser's form post asks for
MODES = ["public_key", "certificate"]
# python-alipay-sdk 3.4.0 reads certificates with pyOpenSSL's deprecated X509 API.
pytestmark = pytest.mark.filterwarnings("ignore:X509.get_issuer is deprecated:DeprecationWarning")


class Inbox:
    """Stands in for our notify endpoint: keeps each notify's form and answers the next scripted answer,
    else `success`."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.script: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def __call__(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        with self._lock:
            self.received.append((url, dict(headers), body))
            if self.script:
                return self.script.pop(0)
        return 200, "success"

    def forms(self, count: int, timeout: float = 10.0) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} notifies arrived"
            time.sleep(0.02)
        return [dict(parse_qsl(body.decode("ascii"), keep_blank_values=True)) for _, _, body in self.received[:count]]


def _keys() -> tuple[str, str]:
    """(the app's private key, the key the sandbox signs as Alipay with)."""
    return providers.alipay_sandbox_keys()


def _alipay_public_key() -> str:
    return public_key_pem(_keys()[1])


def _number() -> str:
    return "A" + secrets.token_hex(12)


def _until(read: Callable[[], list[Any]], count: int, timeout: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(seen := read()) < count:
        assert time.monotonic() < deadline, seen
        time.sleep(0.02)
    return seen


def _expire(minutes: int = 30) -> dt.datetime:
    return dt.datetime.now(CHINA) + dt.timedelta(minutes=minutes)


@pytest.fixture(scope="module")
def certificates() -> Any:
    """A certificate-mode set for the sandbox's keys (as Alipay's open platform hands it out)."""
    return issue_certificates(*_keys())


def _use_certificates(settings: Any, certificates: Any) -> None:
    settings.ALIPAY_APP_CERT = certificates.app_cert
    settings.ALIPAY_PUBLIC_CERT = certificates.alipay_cert
    settings.ALIPAY_ROOT_CERT = certificates.root_bundle


@pytest.fixture(params=MODES)
def mode(request: Any, settings: Any, certificates: Any) -> str:
    if request.param == "certificate":
        _use_certificates(settings, certificates)
    providers.reset()
    return str(request.param)


@pytest.fixture
def sim(settings: Any) -> Any:
    """The simulator in-process (our client's session reaches it through the sandbox transport)."""
    settings.SANDBOX_NOTIFY_RETRY_SECONDS = RETRY_SECONDS
    providers.reset()
    simulator = providers.sandbox().providers["alipay"]
    assert isinstance(simulator, AlipaySimulator)
    inbox = Inbox()
    simulator.deliver = inbox
    return SimpleNamespace(sim=simulator, inbox=inbox, client=providers.alipay())


@pytest.fixture
def live(live_server: Any, settings: Any) -> Any:
    """The simulator over real HTTP: our client (no sandbox transport) and python-alipay-sdk aim at its gateway."""
    settings.PUBLIC_BASE_URL = live_server.url
    settings.SANDBOX_NOTIFY_RETRY_SECONDS = RETRY_SECONDS
    providers.reset()
    simulator = providers.sandbox().providers["alipay"]
    inbox = Inbox()
    simulator.deliver = inbox
    gateway = f"{live_server.url}/sandbox/alipay/gateway.do"
    config = dataclasses.replace(providers.alipay_config(), gateway=gateway)
    client = AlipayClient(config, make_session(providers.http_config()), providers.http_config())
    return SimpleNamespace(url=live_server.url, gateway=gateway, sim=simulator, inbox=inbox, client=client)


def _signed_request(method: str, biz: dict[str, Any], **extra: str) -> dict[str, str]:
    """A request as an Alipay SDK signs it, with the app's key (certificate mode: naming the SNs)."""
    config = providers.alipay_config()
    params = {
        "app_id": config.app_id,
        "method": method,
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": dt.datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
        "biz_content": signing.compact_json(biz),
    }
    if config.cert_mode:
        params.update(app_cert_sn=config.app_cert_sn, alipay_root_cert_sn=config.alipay_root_cert_sn)
    params.update(extra)
    params["sign"] = signing.sign(params, _keys()[0])
    return params


def _gateway(params: dict[str, str], *, sign: str | None = None) -> str:
    """POSTs `params` to the simulator in-process as a form; the raw answer text."""
    if sign is not None:
        params = {**params, "sign": sign}
    request = SandboxRequest(
        method="POST",
        path="/sandbox/alipay/gateway.do",
        headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
        body=urlencode(params).encode("ascii"),
    )
    answer = providers.sandbox().handle("alipay", request)
    assert answer.status == 200, answer
    return answer.body.decode("utf-8")


def _verified(text: str, method: str) -> dict[str, Any]:
    return signing.verify_response(text, method, _alipay_public_key())


def _precreate(client: AlipayClient, number: str, total: int = 1800, subject: str = "Coffee") -> str:
    return client.precreate(
        out_trade_no=number, total=total, subject=subject, notify_url=NOTIFY_URL, time_expire=_expire()
    )


def _paid(sim: Any, number: str, total: int = 1800) -> None:
    _precreate(sim.client, number, total)
    trade, now = sim.sim.pay(number)
    assert now and trade["status"] == "TRADE_SUCCESS"


# --- the gateway in-process, through our client ------------------------------------------------------------------


def test_precreate_answers_a_scan_page_and_query_follows_the_trade_to_paid(mode, sim, settings):
    number = _number()
    qr_code = _precreate(sim.client, number)
    assert qr_code.startswith(f"{settings.PUBLIC_BASE_URL}/sandbox/alipay/qr/bax")
    unpaid = sim.client.query(number)
    assert (unpaid.state, unpaid.amount, unpaid.payer_openid, unpaid.success_time) == ("NOTPAY", 1800, "", None)
    assert re.fullmatch(r"20\d{6}22001\d{15}", unpaid.transaction_id)
    assert unpaid.raw["trade_status"] == "WAIT_BUYER_PAY" and "send_pay_date" not in unpaid.raw

    sim.sim.pay(number)
    paid = sim.client.query(number)
    assert (paid.state, paid.amount, paid.transaction_id) == ("SUCCESS", 1800, unpaid.transaction_id)
    assert paid.payer_openid.startswith("2088") and len(paid.payer_openid) == 16 and paid.success_time
    assert paid.raw["buyer_logon_id"] and paid.raw["receipt_amount"] == paid.raw["total_amount"] == "18.00"
    # The same precreate again gives the same code; once paid it is refused as Alipay refuses it.
    with pytest.raises(ProviderError) as again:
        _precreate(sim.client, number)
    assert again.value.errcode == "ACQ.TRADE_HAS_SUCCESS"


def test_a_repeated_precreate_is_the_same_trade_and_a_changed_one_is_refused(sim):
    number = _number()
    assert _precreate(sim.client, number) == _precreate(sim.client, number)
    for changed in ({"total": 1900}, {"subject": "Tea"}):
        with pytest.raises(ProviderError) as refused:
            _precreate(sim.client, number, **changed)
        assert (refused.value.errcode, refused.value.errmsg) == ("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
    assert sim.client.query(number).amount == 1800


def test_answers_escape_slashes_keep_chinese_and_are_signed_over_their_raw_text(mode, sim, certificates):
    number = _number()
    subject = "咖啡 1/2 杯+奶"
    text = _gateway(
        _signed_request("alipay.trade.precreate", {"out_trade_no": number, "total_amount": "0.01", "subject": subject})
    )
    assert '"qr_code":"http:\\/\\/localhost:8000\\/sandbox\\/alipay\\/qr\\/bax' in text
    answer = _verified(text, "alipay.trade.precreate")
    assert answer["qr_code"].startswith("http://localhost:8000/sandbox/alipay/qr/")
    # What the gateway signed is the text as sent: re-serialised JSON (no `\/`) does not verify.
    whole = json.loads(text)
    reserialised = json.dumps(whole, ensure_ascii=False, separators=(",", ":"))
    with pytest.raises(signing.ResponseError):
        _verified(reserialised, "alipay.trade.precreate")
    if mode == "certificate":
        assert whole["alipay_cert_sn"] == certs.cert_sn(certificates.alipay_cert)
        assert list(whole) == ["alipay_trade_precreate_response", "alipay_cert_sn", "sign"]
    else:
        assert list(whole) == ["alipay_trade_precreate_response", "sign"]
    sim.sim.pay(number)
    queried = _gateway(_signed_request("alipay.trade.query", {"out_trade_no": number}))
    assert "咖啡" not in queried  # a query answer names no subject
    form = sim.sim.notify_fields(number)
    assert form["subject"] == subject and signing.verify(form, _alipay_public_key())


def test_a_gbk_request_is_read_in_gbk(sim):
    number = _number()
    params = _signed_request(
        "alipay.trade.precreate", {"out_trade_no": number, "total_amount": "1.00", "subject": "咖啡"}, charset="GBK"
    )
    request = SandboxRequest(
        method="POST",
        path="/gateway.do",
        headers={"content-type": "application/x-www-form-urlencoded; charset=GBK"},
        body=urlencode(params, encoding="gbk").encode("ascii"),
    )
    answer = providers.sandbox().handle("alipay", request)
    assert _verified(answer.body.decode(), "alipay.trade.precreate")["code"] == "10000"
    assert sim.sim.trade(number)["subject"] == "咖啡"


@pytest.mark.parametrize(
    ("case", "code", "sub_code"),
    [
        ("another app_id", "40002", "isv.invalid-app-id"),
        ("no app_id", "40001", "isv.missing-app-id"),
        ("another key", "40002", "isv.invalid-signature"),
        ("tampered", "40002", "isv.invalid-signature"),
        ("no sign", "40001", "isv.missing-signature"),
        ("RSA", "40003", "isv.missing-signature-config"),
        ("unknown method", "40002", "isv.invalid-method"),
        ("bad timestamp", "40002", "isv.invalid-timestamp"),
        ("app_cert_sn in public-key mode", "40002", "isv.app-cert-not-exist"),
    ],
)
def test_the_gateway_refuses_what_alipay_refuses_with_a_signed_error_response(sim, case, code, sub_code):
    params = _signed_request("alipay.trade.query", {"out_trade_no": "A1"})
    sign: str | None = None
    if case == "another app_id":
        params = _signed_request("alipay.trade.query", {"out_trade_no": "A1"}, app_id="2021000000000000")
    elif case == "no app_id":
        params = {k: v for k, v in params.items() if k != "app_id"}
    elif case == "another key":
        sign = signing.sign({k: v for k, v in params.items() if k != "sign"}, _keys()[1])
    elif case == "tampered":
        params = {**params, "biz_content": '{"out_trade_no":"A2"}'}
    elif case == "no sign":
        sign = ""
    elif case == "RSA":
        params = _signed_request("alipay.trade.query", {"out_trade_no": "A1"}, sign_type="RSA")
    elif case == "unknown method":
        params = _signed_request("alipay.trade.pay.everything", {})
    elif case == "bad timestamp":
        params = _signed_request("alipay.trade.query", {"out_trade_no": "A1"}, timestamp="yesterday")
    else:
        params = _signed_request("alipay.trade.query", {"out_trade_no": "A1"}, app_cert_sn="0" * 32)
    text = _gateway(params, sign=sign)
    assert text.startswith('{"error_response":{')
    error = _verified(text, "alipay.trade.query")  # the error answer is signed too
    assert (error["code"], error["sub_code"]) == (code, sub_code), error
    assert error["msg"] == {"40001": "Missing Required Arguments", "40002": "Invalid Arguments"}.get(
        code, "Insufficient Conditions"
    )
    if case == "tampered":
        # Alipay names the string it verified, so a developer sees what differs.
        assert error["sub_msg"].startswith("验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配")
        assert 'biz_content={"out_trade_no":"A2"}' in error["sub_msg"]


@pytest.mark.parametrize(
    ("change", "sub_code"),
    [
        ({"app_cert_sn": ""}, "isv.missing-app-cert-sn"),
        ({"app_cert_sn": "0" * 32}, "isv.app-cert-not-exist"),
        ({"alipay_root_cert_sn": "0" * 32}, "isv.invalid-alipay-root-cert-sn"),
    ],
)
def test_certificate_mode_refuses_a_request_naming_other_certificates(sim, settings, certificates, change, sub_code):
    _use_certificates(settings, certificates)
    providers.reset()
    params = {k: v for k, v in _signed_request("alipay.trade.query", {"out_trade_no": "A1"}).items() if k != "sign"}
    params = {k: v for k, v in {**params, **change}.items() if v}
    params["sign"] = signing.sign(params, _keys()[0])
    error = _verified(_gateway(params), "alipay.trade.query")
    assert error["sub_code"] == sub_code, error
    # The SNs the sandbox expects are python-alipay-sdk's for the same files.
    assert providers.alipay_config().app_cert_sn == DCAliPay.get_cert_sn(certificates.app_cert)
    assert providers.alipay_config().alipay_root_cert_sn == DCAliPay.get_root_cert_sn(certificates.root_bundle)


def test_a_certificate_set_is_built_like_alipays(certificates):
    # Two RSA CAs make the root SN; the ECDSA root in the bundle is skipped.
    assert len(certificates.root_bundle.split("\n\n")) == 3
    assert len(certs.root_cert_sn(certificates.root_bundle).split("_")) == 2
    assert public_key_pem(certificates.app_cert) == public_key_pem(_keys()[0])
    assert public_key_pem(certificates.alipay_cert) == _alipay_public_key()


def test_query_and_close_of_an_unknown_trade_and_close_of_a_paid_one(mode, sim):
    with pytest.raises(ProviderError) as unknown:
        sim.client.query("A-never-seen")
    assert (unknown.value.errcode, unknown.value.errmsg) == ("ACQ.TRADE_NOT_EXIST", "交易不存在")
    assert sim.client.close("A-never-seen") is None  # our client: nothing to close
    text = _gateway(_signed_request("alipay.trade.close", {"out_trade_no": "A-never-seen"}))
    assert _verified(text, "alipay.trade.close")["sub_code"] == "ACQ.TRADE_NOT_EXIST"

    number = _number()
    _paid(sim, number)
    with pytest.raises(ProviderError) as paid:
        sim.client.close(number)
    assert (paid.value.errcode, paid.value.errmsg) == ("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
    assert sim.client.query(number).state == "SUCCESS"


def test_close_ends_an_unpaid_trade_notifies_trade_closed_and_the_cashier_can_no_longer_pay(sim, client):
    number = _number()
    _precreate(sim.client, number)
    assert sim.client.close(number) is None
    closed = sim.client.query(number)
    assert (closed.state, closed.raw["trade_status"]) == ("CLOSED", "TRADE_CLOSED")
    (form,) = sim.inbox.forms(1)
    assert (form["trade_status"], form["out_trade_no"]) == ("TRADE_CLOSED", number)
    assert form["gmt_close"] and "gmt_payment" not in form and signing.verify(form, _alipay_public_key())
    with pytest.raises(ProviderError) as again:
        sim.client.close(number)
    assert again.value.errcode == "ACQ.TRADE_STATUS_ERROR"
    pressed = client.post(f"/sandbox/alipay/cashier/{number}", **PAGE)
    assert pressed.status_code == 409 and "交易已经关闭" in pressed.content.decode()


def test_time_expire_is_honoured(sim, monkeypatch, client):
    number = _number()
    _precreate(sim.client, number)
    assert sim.sim.trade(number)["time_expire"]
    later = dt.datetime.now(CHINA) + dt.timedelta(minutes=31)
    monkeypatch.setattr(sandbox_alipay, "_now", lambda: later)
    assert sim.client.query(number).state == "CLOSED"
    with pytest.raises(ValueError, match="closed"):
        sim.sim.pay(number)
    assert client.post(f"/sandbox/alipay/cashier/{number}").status_code == 409


def test_refunds_partial_repeated_over_the_amount_and_full(mode, sim):
    number = _number()
    _paid(sim, number)

    def refund(request_no: str, amount: int) -> Any:
        return sim.client.refund(
            out_trade_no=number, out_refund_no=request_no, total=1800, amount=amount, reason="", notify_url=""
        )

    first = refund("R1", 500)
    assert (first.status, first.amount, first.raw["fund_change"], first.raw["refund_fee"]) == (
        "SUCCESS",
        500,
        "Y",
        "5.00",
    )
    # The same out_request_no again: the same refund, no money moves (our client then asks the refund query).
    again = _verified(
        _gateway(
            _signed_request(
                "alipay.trade.refund", {"out_trade_no": number, "refund_amount": "5.00", "out_request_no": "R1"}
            )
        ),
        "alipay.trade.refund",
    )
    assert (again["code"], again["fund_change"], again["refund_fee"], again["send_back_fee"]) == (
        "10000",
        "N",
        "5.00",
        "0.00",
    )
    assert refund("R1", 500).status == "SUCCESS"
    with pytest.raises(ProviderError) as too_much:
        refund("R2", 1301)
    assert too_much.value.errcode == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    assert sim.client.query(number).state == "SUCCESS"

    last = refund("R2", 1300)
    assert (last.raw["fund_change"], last.raw["refund_fee"]) == ("Y", "18.00")
    closed = sim.client.query(number)
    assert (closed.raw["trade_status"], closed.state) == ("TRADE_CLOSED", "REFUND")  # paid, then all refunded
    with pytest.raises(ProviderError) as after:
        refund("R3", 1)
    assert after.value.errcode == "ACQ.TRADE_HAS_CLOSE"
    queried = sim.client.query_refund("R1", number)
    assert (queried.status, queried.amount, queried.total, queried.success_time is not None) == (
        "SUCCESS",
        500,
        1800,
        True,
    )
    assert queried.raw["refund_status"] == "REFUND_SUCCESS" and "gmt_refund_pay" in queried.raw

    # Each refund notified the trade's notify_url, as Alipay does: cumulative refund_fee, TRADE_CLOSED at the end.
    forms = sim.inbox.forms(2)
    by_request = {form["out_biz_no"]: form for form in forms}
    assert (by_request["R1"]["trade_status"], by_request["R1"]["refund_fee"]) == ("TRADE_SUCCESS", "5.00")
    assert (by_request["R2"]["trade_status"], by_request["R2"]["refund_fee"]) == ("TRADE_CLOSED", "18.00")
    for form in forms:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", form["gmt_refund"])
        assert form["gmt_payment"] and form["total_amount"] == "18.00" and signing.verify(form, _alipay_public_key())
    assert len(sim.inbox.received) == 2  # the repeated R1 sent no notify


def test_a_refund_query_alipay_cannot_answer_is_code_10000_without_refund_fields(sim):
    number = _number()
    _paid(sim, number)
    text = _gateway(
        _signed_request("alipay.trade.fastpay.refund.query", {"out_trade_no": number, "out_request_no": "R-none"})
    )
    assert _verified(text, "alipay.trade.fastpay.refund.query") == {"code": "10000", "msg": "Success"}
    with pytest.raises(ProviderError) as missing:
        sim.client.query_refund("R-none", number)
    assert missing.value.errcode == "ACQ.TRADE_NOT_EXIST"


def test_an_unpaid_trade_cannot_be_refunded(sim):
    number = _number()
    _precreate(sim.client, number)
    with pytest.raises(ProviderError) as refused:
        sim.client.refund(out_trade_no=number, out_refund_no="R1", total=1800, amount=100, reason="", notify_url="")
    assert refused.value.errcode == "ACQ.TRADE_STATUS_ERROR"


def test_a_refund_answered_system_error_moved_the_money_and_the_same_request_says_so(sim, client):
    number = _number()
    _paid(sim, number)
    preset = client.post(
        f"/sandbox/alipay/cashier/{number}/refund-outcome", {"outcome": "SYSTEM_ERROR"}, content_type="application/json"
    )
    assert preset.json() == {"refund_outcome": "SYSTEM_ERROR"}
    with pytest.raises(ProviderError) as failed:
        sim.client.refund(out_trade_no=number, out_refund_no="R1", total=1800, amount=600, reason="", notify_url="")
    assert failed.value.errcode == "ACQ.SYSTEM_ERROR"
    again = _signed_request(
        "alipay.trade.refund", {"out_trade_no": number, "refund_amount": "6.00", "out_request_no": "R1"}
    )
    assert _verified(_gateway(again), "alipay.trade.refund")["fund_change"] == "N"
    retried = sim.client.refund(
        out_trade_no=number, out_refund_no="R1", total=1800, amount=600, reason="", notify_url=""
    )
    assert (retried.status, retried.amount, retried.raw["refund_status"]) == ("SUCCESS", 600, "REFUND_SUCCESS")
    assert sim.sim.trade(number)["refunded"] == 600  # once, though asked three times
    assert sim.inbox.forms(1)[0]["refund_fee"] == "6.00"


def test_concurrent_refunds_never_refund_more_than_was_paid(sim, run_together):
    number = _number()
    _paid(sim, number)
    numbers = iter(range(100))
    lock = threading.Lock()

    def refund() -> str:
        with lock:
            request_no = f"R{next(numbers)}"
        params = _signed_request(
            "alipay.trade.refund", {"out_trade_no": number, "refund_amount": "5.00", "out_request_no": request_no}
        )
        answer = _verified(_gateway(params), "alipay.trade.refund")
        return str(answer.get("fund_change") or answer["sub_code"])

    results = run_together(refund, 8)
    assert sorted(results) == ["ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"] * 5 + ["Y"] * 3
    assert sim.sim.trade(number)["refunded"] == 1500


def test_a_pay_at_two_cashiers_at_once_pays_once(sim, run_together):
    number = _number()
    _precreate(sim.client, number)
    results = run_together(lambda: sim.sim.pay(number)[1], 8)
    assert sorted(results) == [False] * 7 + [True]


# --- notifies -----------------------------------------------------------------------------------------------------


def test_the_pay_notify_is_the_form_alipay_posts_and_verifies(mode, sim):
    number = _number()
    _precreate(sim.client, number, subject="A+B 咖啡/1")
    sim.sim.pay(number)
    sim.sim.send_pay_notify_later(number)
    sim.inbox.forms(1)
    url, headers, body = sim.inbox.received[0]
    assert url == NOTIFY_URL and headers == {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    form = dict(parse_qsl(body.decode("ascii")))
    assert b"A%2BB" in body and form["subject"] == "A+B 咖啡/1"  # a `+` stays a `+`
    expected = {
        "notify_type": "trade_status_sync",
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        "trade_status": "TRADE_SUCCESS",
        "out_trade_no": number,
        "total_amount": "18.00",
        "receipt_amount": "18.00",
        "app_id": providers.alipay_config().app_id,
        "auth_app_id": providers.alipay_config().app_id,
        "seller_id": providers.alipay_config().seller_id,
    }
    assert {name: form[name] for name in expected} == expected
    for name in ("notify_time", "notify_id", "trade_no", "buyer_id", "gmt_create", "gmt_payment", "sign"):
        assert form[name], name
    assert signing.verify(form, _alipay_public_key())
    # python-alipay-sdk verifies it as Alipay's too (it takes the form without `sign`).
    sdk = AliPay(appid=form["app_id"], app_private_key_string=_keys()[0], alipay_public_key_string=_alipay_public_key())
    signature = form.pop("sign")
    assert sdk.verify(form, signature)
    # Our client reads it as the payment of the order.
    notify = sim.client.parse_notify(dict(parse_qsl(body.decode("ascii"))))
    assert notify.trade and (notify.trade.state, notify.trade.amount) == ("SUCCESS", 1800)


def test_a_notify_is_retried_until_the_answer_is_exactly_success(sim):
    number = _number()
    _precreate(sim.client, number)
    sim.sim.pay(number)
    sim.inbox.script = [(200, "fail"), (200, "success\n"), (500, "success")]
    first = sim.sim.send_notify(number)
    assert first == (200, "fail")
    deliveries = _until(lambda: sim.sim.deliveries(number), 4)
    assert [(d["attempt"], d["status"], d["body"]) for d in deliveries] == [
        (1, 200, "fail"),
        (2, 200, "success\n"),
        (3, 500, "success"),
        (4, 200, "success"),
    ]
    forms = sim.inbox.forms(4)
    assert len({form["notify_id"] for form in forms}) == 1  # one notify, sent four times
    time.sleep(0.3)
    assert len(sim.sim.deliveries(number)) == 4  # accepted: no more attempts


def test_a_trade_without_notify_url_sends_no_notify(sim):
    number = _number()
    params = _signed_request("alipay.trade.precreate", {"out_trade_no": number, "total_amount": "1", "subject": "x"})
    _verified(_gateway(params), "alipay.trade.precreate")
    sim.sim.pay(number)
    assert sim.sim.send_notify(number) is None and sim.inbox.received == []


# --- faults ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["timeout", "http_500", "malformed", "bad_signature"])
def test_faults_set_through_the_faults_endpoint_reach_our_client_once(sim, client, settings, fault):
    settings.PROVIDER_READ_TIMEOUT = 0.2  # the timeout fault stalls longer than our client waits
    providers.reset()
    sandbox = providers.sandbox()
    sandbox.timeout_delay = 0.5
    simulator = sandbox.providers["alipay"]
    simulator.deliver = sim.inbox
    number = _number()
    _precreate(providers.alipay(), number)
    set_fault = client.post("/sandbox/faults", {"provider": "alipay", "fault": fault, "count": 1}, "application/json")
    assert set_fault.json() == {"pending": {"alipay": {"fault": fault, "count": 1}}}
    with pytest.raises(ProviderUnavailable):
        providers.alipay().query(number)
    assert providers.alipay().query(number).state == "NOTPAY"  # one fault, then the real answer


def test_a_bad_signature_fault_spoils_the_next_notify(sim):
    number = _number()
    _paid(sim, number)
    providers.sandbox().set_fault("alipay", "bad_signature", 1)
    sim.sim.send_notify(number)
    (spoiled,) = sim.inbox.forms(1)
    assert not signing.verify(spoiled, _alipay_public_key())
    sim.sim.send_notify(number)
    assert signing.verify(sim.inbox.forms(2)[1], _alipay_public_key())


# --- the payer's pages (Django's test client) -------------------------------------------------------------------


def _page_pay_url(client: AlipayClient, number: str, *, wap: bool = False, total: int = 1800) -> str:
    common = {
        "out_trade_no": number,
        "total": total,
        "subject": "Coffee",
        "return_url": RETURN_URL,
        "notify_url": NOTIFY_URL,
        "time_expire": _expire(),
    }
    if wap:
        return client.wap_pay_url(**common, quit_url=QUIT_URL)
    return client.page_pay_url(**common)


def _form_actions(page: str) -> list[str]:
    return [html.unescape(action) for action in re.findall(r'<form[^>]* method="post" action="([^"]*)">', page)]


def _open(url: str) -> Any:
    """What the browser gets opening a gateway URL in-process (the sandbox's answer)."""
    split = urlsplit(url)
    request = SandboxRequest("GET", split.path, dict(parse_qsl(split.query)), raw_query=split.query)
    return providers.sandbox().handle("alipay", request)


def test_page_pay_opens_the_cashier_and_pay_returns_to_the_shop_signed(mode, sim, client):
    number = _number()
    opened = _open(_page_pay_url(sim.client, number))
    assert opened.status == 302
    cashier = opened.headers["Location"]
    assert cashier == f"http://localhost:8000/sandbox/alipay/cashier/{number}"
    page = client.get(urlsplit(cashier).path)
    text = page.content.decode()
    assert page.status_code == 200 and '<meta name="viewport"' in text
    assert '<b id="subject">Coffee</b>' in text and '<div class="amount" id="amount">¥18.00</div>' in text
    assert "电脑网站支付" in text and 'id="state">WAIT_BUYER_PAY</span>' in text
    assert _form_actions(text) == [f"/sandbox/alipay/cashier/{number}", f"/sandbox/alipay/cashier/{number}/cancel"]

    pressed = client.post(f"/sandbox/alipay/cashier/{number}", **PAGE)
    assert pressed.status_code == 303
    back = urlsplit(pressed["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "http://shop.example/paid"
    params = dict(parse_qsl(back.query))
    assert params.pop("from") == "alipay"  # the return_url's own query is kept
    assert params["method"] == "alipay.trade.page.pay.return"
    assert (params["out_trade_no"], params["total_amount"]) == (number, "18.00")
    assert {"trade_no", "seller_id", "app_id", "auth_app_id", "charset", "timestamp", "version", "sign_type"} <= set(
        params
    )
    assert sim.client.verify_return(params) == number
    signature = params.pop("sign")
    assert AliPay(
        appid=params["app_id"], app_private_key_string=_keys()[0], alipay_public_key_string=_alipay_public_key()
    ).verify(params, signature)
    (form,) = sim.inbox.forms(1)
    assert form["trade_status"] == "TRADE_SUCCESS" and form["trade_no"] == params["trade_no"]
    # Pressing Pay again (a reload) pays nothing twice and sends no second notify.
    assert client.post(f"/sandbox/alipay/cashier/{number}", **PAGE).status_code == 303
    time.sleep(0.2)
    assert len(sim.inbox.received) == 1


def test_a_browser_form_post_to_the_gateway_opens_the_cashier_too(sim):
    number = _number()
    url = _page_pay_url(sim.client, number)
    split = urlsplit(url)
    request = SandboxRequest(
        "POST", split.path, headers={"Content-Type": "application/x-www-form-urlencoded"}, body=split.query.encode()
    )
    opened = providers.sandbox().handle("alipay", request)
    assert opened.status == 303 and opened.headers["Location"].endswith(f"/sandbox/alipay/cashier/{number}")


def test_wap_pay_shows_the_quit_url_and_cancel_goes_back_unpaid(sim, client):
    number = _number()
    cashier = urlsplit(_open(_page_pay_url(sim.client, number, wap=True)).headers["Location"]).path
    text = client.get(cashier).content.decode()
    assert "手机网站支付" in text and f'<a id="quit" href="{QUIT_URL}">' in text
    cancelled = client.post(f"{cashier}/cancel", **PAGE)
    assert cancelled.status_code == 303 and cancelled["Location"] == QUIT_URL
    assert sim.client.query(number).state == "NOTPAY" and sim.inbox.received == []
    pressed = client.post(cashier, **PAGE)
    assert dict(parse_qsl(urlsplit(pressed["Location"]).query))["method"] == "alipay.trade.wap.pay.return"


def test_a_refused_page_pay_shows_alipays_error_page(sim, client):
    url = _page_pay_url(sim.client, _number())
    opened = _open(url.replace("Coffee", "Coffees"))  # tampered after signing
    assert opened.status == 302
    page = client.get(urlsplit(opened.headers["Location"]).path + "?" + urlsplit(opened.headers["Location"]).query)
    text = page.content.decode()
    assert page.status_code == 400 and '<code id="sub-code">isv.invalid-signature</code>' in text
    # A trade reopened with another amount is refused as tampered.
    number = _number()
    _open(_page_pay_url(sim.client, number))
    again = _open(_page_pay_url(sim.client, number, total=1))
    assert "ACQ.CONTEXT_INCONSISTENT" in again.headers["Location"]


def test_the_scan_page_pays_a_precreated_trade(sim, client):
    number = _number()
    qr_code = _precreate(sim.client, number)
    text = client.get(urlsplit(qr_code).path).content.decode()
    assert "<h1>Scanned with Alipay</h1>" in text and "当面付扫码" in text and "¥18.00" in text
    pressed = client.post(f"/sandbox/alipay/cashier/{number}", **PAGE)
    # No return_url: the payer sees the result and our server's answer to the notify.
    assert pressed.status_code == 303 and pressed["Location"] == f"/sandbox/alipay/cashier/{number}/result"
    sim.inbox.forms(1)
    _until(lambda: sim.sim.deliveries(number), 1)
    result = client.get(pressed["Location"]).content.decode()
    assert "<h1>Paid</h1>" in result and "HTTP 200 <code>success</code>" in result
    assert client.get("/sandbox/alipay/qr/bax-unknown").status_code == 404


def test_the_app_page_takes_a_pasted_order_string_and_pays_it(mode, sim, client):
    number = _number()
    order_string = sim.client.app_order_string(
        out_trade_no=number, total=1800, subject="Coffee", notify_url=NOTIFY_URL, time_expire=_expire()
    )
    assert "<h1>Alipay app</h1>" in client.get("/sandbox/alipay/app").content.decode()
    tampered = client.post("/sandbox/alipay/app", {"order_string": order_string.replace("Coffee", "Tea")}, **PAGE)
    assert tampered.status_code == 400 and "isv.invalid-signature" in tampered.content.decode()
    assert sim.sim.trade(number) is None
    opened = client.post("/sandbox/alipay/app", {"order_string": order_string}, **PAGE)
    assert opened.status_code == 303 and opened["Location"] == f"/sandbox/alipay/cashier/{number}"
    assert "<h1>Alipay app</h1>" in client.get(opened["Location"]).content.decode()
    pressed = client.post(opened["Location"], **PAGE)
    result = client.get(pressed["Location"]).content.decode()
    (app_result,) = re.findall(r'<code id="app-result">([^<]*)</code>', result)
    answer = _verified(html.unescape(app_result), "alipay.trade.app.pay")
    assert (answer["out_trade_no"], answer["total_amount"], answer["code"]) == (number, "18.00", "10000")
    assert sim.inbox.forms(1)[0]["trade_status"] == "TRADE_SUCCESS"


def test_the_json_api_of_the_cashier_and_its_notifies(sim, client):
    number = _number()
    _open(_page_pay_url(sim.client, number))
    assert client.post(f"/sandbox/alipay/cashier/{number}/cancel").json() == {"trade_status": "WAIT_BUYER_PAY"}
    paid = client.post(f"/sandbox/alipay/cashier/{number}")
    assert paid.status_code == 202
    body = paid.json()
    assert body["paid"] is True and body["trade_status"] == "TRADE_SUCCESS"
    assert body["return_url"].startswith(RETURN_URL + "&") and body["notifies"].endswith("/notifies")
    seen = _until(lambda: client.get(body["notifies"]).json()["deliveries"], 1)
    assert seen[0]["status"] == 200 and seen[0]["body"] == "success"
    for path in ("/sandbox/alipay/cashier/nope", "/sandbox/alipay/cashier/nope/notifies"):
        assert client.get(path).status_code == 404
    assert client.post("/sandbox/alipay/cashier/nope").status_code == 404
    assert (
        client.post(
            f"/sandbox/alipay/cashier/{number}/refund-outcome", {"outcome": "MAYBE"}, "application/json"
        ).status_code
        == 400
    )


def test_the_index_lists_alipay_trades_linking_to_their_cashiers(sim, client):
    text = client.get("/sandbox/").content.decode()
    assert "No Alipay trades yet." in text and 'href="/sandbox/alipay/app"' in text
    first, second = _number(), _number()
    _precreate(sim.client, first)
    _open(_page_pay_url(sim.client, second))
    text = client.get("/sandbox/").content.decode()
    assert re.findall(r'<a class="number" href="/sandbox/alipay/cashier/([^"]+)">', text) == [second, first]
    assert "<code>/sandbox/alipay/gateway.do</code>" in text and "Provider sandbox" in text


# --- over real HTTP -------------------------------------------------------------------------------------------------


def test_our_client_over_http_precreates_queries_refunds_and_closes(mode, live):
    number = _number()
    qr_code = _precreate(live.client, number)
    assert qr_code.startswith(f"{live.url}/sandbox/alipay/qr/")
    scan = requests.get(qr_code, timeout=10)
    assert scan.status_code == 200 and "Scanned with Alipay" in scan.text
    paid = requests.post(f"{live.url}/sandbox/alipay/cashier/{number}", timeout=10)
    assert paid.status_code == 202 and paid.json()["return_url"] == ""
    assert live.client.query(number).state == "SUCCESS"
    refund = live.client.refund(
        out_trade_no=number, out_refund_no="R1", total=1800, amount=1800, reason="", notify_url=""
    )
    assert refund.status == "SUCCESS" and live.client.query(number).state == "REFUND"
    assert live.client.query_refund("R1", number).amount == 1800
    by_kind = {"refund" if "out_biz_no" in form else "pay": form for form in live.inbox.forms(2)}
    assert (by_kind["pay"]["trade_status"], by_kind["refund"]["trade_status"]) == ("TRADE_SUCCESS", "TRADE_CLOSED")
    other = _number()
    _precreate(live.client, other)
    assert live.client.close(other) is None and live.client.query(other).state == "CLOSED"


def test_page_pay_over_http_redirects_the_browser_to_the_cashier(live):
    number = _number()
    url = _page_pay_url(live.client, number)
    assert url.startswith(live.gateway + "?")
    opened = requests.get(url, allow_redirects=False, timeout=10)
    assert opened.status_code == 302 and opened.headers["Location"] == f"{live.url}/sandbox/alipay/cashier/{number}"
    cashier = requests.get(url, timeout=10)  # followed, as a browser does
    assert cashier.status_code == 200 and "Alipay cashier" in cashier.text and "¥18.00" in cashier.text


def test_faults_over_http(live):
    number = _number()
    _precreate(live.client, number)
    assert requests.post(
        f"{live.url}/sandbox/faults", json={"provider": "alipay", "fault": "http_500", "count": 2}, timeout=10
    ).json() == {"pending": {"alipay": {"fault": "http_500", "count": 2}}}
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            live.client.query(number)
    assert live.client.query(number).state == "NOTPAY"


def _sdk(live: Any, mode: str, certificates: Any) -> Any:
    """python-alipay-sdk with the app's key, aimed at the sandbox's gateway (it sends GET requests)."""
    app_id = providers.alipay_config().app_id
    if mode == "certificate":
        sdk = DCAliPay(
            appid=app_id,
            app_private_key_string=_keys()[0],
            app_public_key_cert_string=certificates.app_cert,
            alipay_public_key_cert_string=certificates.alipay_cert,
            alipay_root_cert_string=certificates.root_bundle,
        )
    else:
        sdk = AliPay(appid=app_id, app_private_key_string=_keys()[0], alipay_public_key_string=_alipay_public_key())
    sdk._gateway = live.gateway  # its only gateway setting is this attribute (debug=True names Alipay's own sandbox)
    return sdk


def test_python_alipay_sdk_accepts_every_answer_and_verifies_notifies_and_returns(mode, live, certificates):
    sdk = _sdk(live, mode, certificates)
    number = _number()
    created = sdk.api_alipay_trade_precreate(
        subject="咖啡/Coffee", out_trade_no=number, total_amount="18.00", notify_url=f"{live.url}/notify/alipay/"
    )
    assert created["code"] == "10000" and created["qr_code"].startswith(f"{live.url}/sandbox/alipay/qr/")
    waiting = sdk.api_alipay_trade_query(out_trade_no=number)
    assert (waiting["code"], waiting["trade_status"], waiting["total_amount"]) == ("10000", "WAIT_BUYER_PAY", "18.00")
    assert requests.post(f"{live.url}/sandbox/alipay/cashier/{number}", timeout=10).status_code == 202
    (form,) = live.inbox.forms(1)
    signature = form.pop("sign")
    assert sdk.verify(form, signature) and form["trade_status"] == "TRADE_SUCCESS"
    paid = sdk.api_alipay_trade_query(trade_no=form["trade_no"])
    assert (paid["trade_status"], paid["out_trade_no"]) == ("TRADE_SUCCESS", number)

    refund = sdk.api_alipay_trade_refund(refund_amount="8.00", out_trade_no=number, out_request_no="R1")
    assert (refund["code"], refund["fund_change"], refund["refund_fee"]) == ("10000", "Y", "8.00")
    repeat = sdk.api_alipay_trade_refund(refund_amount="8.00", out_trade_no=number, out_request_no="R1")
    assert (repeat["fund_change"], repeat["refund_fee"]) == ("N", "8.00")
    queried = sdk.api_alipay_trade_fastpay_refund_query("R1", out_trade_no=number)
    assert (queried["refund_status"], queried["refund_amount"]) == ("REFUND_SUCCESS", "8.00")
    assert sdk.api_alipay_trade_fastpay_refund_query("R9", out_trade_no=number) == {"code": "10000", "msg": "Success"}
    closing = sdk.api_alipay_trade_close(out_trade_no=number)
    assert (closing["code"], closing["sub_code"]) == ("40004", "ACQ.TRADE_STATUS_ERROR")
    unpaid = _number()
    sdk.api_alipay_trade_precreate(subject="Tea", out_trade_no=unpaid, total_amount=1)
    closed = sdk.api_alipay_trade_close(out_trade_no=unpaid)
    assert (closed["code"], closed["out_trade_no"]) == ("10000", unpaid)
    # A gateway refusal reaches it as Alipay's error_response.
    stranger = AliPay(
        appid="2021000000000000", app_private_key_string=_keys()[0], alipay_public_key_string=_alipay_public_key()
    )
    stranger._gateway = live.gateway
    with pytest.raises(AliPayException) as refused:
        stranger.api_alipay_trade_query(out_trade_no=number)
    assert "code:40002" in str(refused.value) and "isv.invalid-app-id" in str(refused.value)

    # Its page pay URL opens our cashier; the return it is sent back with verifies with it.
    page = _number()
    query = sdk.api_alipay_trade_page_pay(
        subject="Coffee",
        out_trade_no=page,
        total_amount="0.01",
        return_url=RETURN_URL,
        notify_url=f"{live.url}/notify/alipay/",
    )
    opened = requests.get(f"{live.gateway}?{query}", allow_redirects=False, timeout=10)
    assert opened.headers["Location"] == f"{live.url}/sandbox/alipay/cashier/{page}"
    back = requests.post(f"{live.url}/sandbox/alipay/cashier/{page}", timeout=10).json()["return_url"]
    params = dict(parse_qsl(urlsplit(back).query))
    params.pop("from")
    signature = params.pop("sign")
    assert sdk.verify(params, signature)


def test_python_alipay_sdk_app_order_string_is_taken_by_the_app_page(live):
    sdk = _sdk(live, "public_key", None)
    number = _number()
    order_string = sdk.api_alipay_trade_app_pay(
        subject="Coffee", out_trade_no=number, total_amount="0.5", notify_url=f"{live.url}/notify/alipay/"
    )
    opened = requests.post(f"{live.url}/sandbox/alipay/app", data={"order_string": order_string}, timeout=10)
    assert opened.status_code == 200 and opened.url == f"{live.url}/sandbox/alipay/cashier/{number}"
    assert "¥0.50" in opened.text
