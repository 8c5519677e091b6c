"""The WeChat Pay sandbox driven over real HTTP by third-party clients: wechatpy 1.8.18 (v2) and
wechatpayv3 2.0.4 (v3, in public-key and platform-certificate mode) accept every answer and every
notify it sends. What they refuse, an integration built on them would hit too.

The notifies the sandbox sends are caught (`inbox`) instead of reaching our notify views, so each
client parses them itself."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from Crypto.PublicKey import RSA
from cryptography import x509
from django.conf import settings
from wechatpayv3 import WeChatPay as WechatPayV3
from wechatpayv3 import WeChatPayType
from wechatpayv3.core import Core
from wechatpy.exceptions import InvalidSignatureException, WeChatPayException
from wechatpy.pay import WeChatPay as WechatpyPay

import providers.sandbox.wechatpay as sandbox_wechatpay
from config import providers
from providers.sandbox.transport import SandboxTransport
from providers.sandbox.wechatpay import issue_certificate
from providers.wechatpay import v2, v3
from providers.wechatpay.keys import public_key_pem
from providers.wechatpay.types import CHINA

V2_SUCCESS = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
V2_FAIL = "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[busy]]></return_msg></xml>"
V3_FAIL = '{"code":"FAIL","message":"busy"}'
RETRY_SECONDS = (0.05, 0.05, 0.1)
MODES = ["public_key", "certificate"]


class Inbox:
    """Stands in for our notify endpoint: keeps each notify the sandbox delivers and answers the
    next scripted answer, or success (what WeChat Pay takes as success for the notify's version)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.script: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def __call__(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        with self._lock:
            self.received.append((url, dict(headers), body))
            if self.script:
                return self.script.pop(0)
        return (200, V2_SUCCESS) if body.startswith(b"<xml>") else (204, "")

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[str, dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} notifies arrived"
            time.sleep(0.02)
        return self.received[:count]


@pytest.fixture
def sandbox(live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    settings.SANDBOX_NOTIFY_RETRY_SECONDS = RETRY_SECONDS
    providers.reset()
    simulator = providers.sandbox().providers["wechatpay"]
    inbox = Inbox()
    simulator.deliver = inbox
    return SimpleNamespace(url=live_server.url, api=f"{live_server.url}/sandbox/wechatpay", sim=simulator, inbox=inbox)


def _number() -> str:
    return "T" + secrets.token_hex(12)


def _cashier(sandbox: Any, out_trade_no: str, outcome: str | None = None) -> requests.Response:
    body = {"outcome": outcome} if outcome else None
    return requests.post(f"{sandbox.url}/sandbox/pay/{out_trade_no}", json=body, timeout=10)


def _until(read: Callable[[], list[dict[str, Any]]], count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(seen := read()) < count:
        assert time.monotonic() < deadline, seen
        time.sleep(0.02)
    return seen


def _pay_deliveries(sandbox: Any, out_trade_no: str, count: int) -> list[dict[str, Any]]:
    url = f"{sandbox.url}/sandbox/pay/{out_trade_no}/notifies"
    return _until(lambda: requests.get(url, timeout=10).json()["deliveries"], count)


def _refund_deliveries(sandbox: Any, out_refund_no: str, count: int) -> list[dict[str, Any]]:
    url = f"{sandbox.url}/sandbox/refund/{out_refund_no}"
    return _until(lambda: requests.get(url, timeout=10).json()["deliveries"], count)


# --- v2: wechatpy -------------------------------------------------------------------------


def _wechatpy(base_url: str | None, *, cert: tuple[str, str] | None = None, appid: str = "") -> WechatpyPay:
    client = WechatpyPay(
        appid=appid or settings.WECHATPAY_APPID,
        api_key=settings.WECHATPAY_API_KEY,
        mch_id=settings.WECHATPAY_MCH_ID,
        mch_cert=cert[0] if cert else None,
        mch_key=cert[1] if cert else None,
        timeout=10,
    )
    if base_url:
        client.API_BASE_URL = base_url + "/"  # its documented endpoint base, per instance
    return client


def _merchant_cert() -> tuple[str, str]:
    """apiclient_cert.pem and apiclient_key.pem: the certificate the sandbox issued the merchant."""
    config = providers.wechatpay_config()
    assert config.client_cert and config.client_key
    return config.client_cert, config.client_key


def _v2_order(client: WechatpyPay, sandbox: Any, trade_type: str = "NATIVE", **extra: Any) -> str:
    number = _number()
    answer = client.order.create(
        trade_type=trade_type,
        body="Coffee",
        total_fee=1800,
        notify_url=f"{sandbox.url}/notify/wechatpay/v2/",
        client_ip="127.0.0.1",
        out_trade_no=number,
        attach="cart=7",
        **extra,
    )
    assert answer["result_code"] == "SUCCESS" and client.check_signature(answer), answer
    return number


@pytest.mark.parametrize(
    ("trade_type", "extra", "field"),
    [
        ("JSAPI", {"user_id": "o-alice"}, "prepay_id"),
        ("NATIVE", {"product_id": "coffee"}, "code_url"),
        ("MWEB", {"scene_info": {"h5_info": {"type": "Wap"}}}, "mweb_url"),
        ("APP", {}, "prepay_id"),
    ],
)
def test_wechatpy_unified_order_of_each_trade_type(sandbox, trade_type, extra, field):
    client = _wechatpy(sandbox.api)
    answer = client.order.create(
        trade_type=trade_type,
        body="Coffee",
        total_fee=1800,
        notify_url=f"{sandbox.url}/notify/wechatpay/v2/",
        client_ip="127.0.0.1",
        **extra,
    )
    assert answer["return_code"] == answer["result_code"] == "SUCCESS"
    assert answer[field] and answer["trade_type"] == trade_type
    assert client.check_signature(answer)


def test_wechatpy_queries_by_either_number_and_parses_the_pay_notify(sandbox):
    client = _wechatpy(sandbox.api)
    number = _v2_order(client, sandbox, "JSAPI", user_id="o-alice")
    unpaid = client.order.query(out_trade_no=number)
    assert client.check_signature(unpaid)
    assert (unpaid["trade_state"], unpaid["trade_state_desc"], unpaid["attach"]) == ("NOTPAY", "订单未支付", "cart=7")

    assert _cashier(sandbox, number).status_code == 202
    ((_, _, body),) = sandbox.inbox.wait(1)
    notify = client.parse_payment_result(body)  # raises unless the MD5 signature verifies
    assert notify["result_code"] == "SUCCESS" and notify["out_trade_no"] == number
    assert (notify["total_fee"], notify["cash_fee"], notify["attach"]) == (1800, 1800, "cart=7")
    assert {"bank_type", "fee_type", "is_subscribe", "openid", "time_end", "trade_type"} <= notify.keys()
    assert WechatpyPay.get_payment_data(body)["transaction_id"] == notify["transaction_id"]

    by_number = client.order.query(out_trade_no=number)
    by_transaction = client.order.query(transaction_id=notify["transaction_id"])
    for paid in (by_number, by_transaction):
        assert client.check_signature(paid)
        assert (paid["trade_state"], paid["trade_state_desc"]) == ("SUCCESS", "支付成功")
        assert (paid["out_trade_no"], paid["transaction_id"]) == (number, notify["transaction_id"])
        assert (paid["total_fee"], paid["cash_fee"], paid["fee_type"], paid["attach"]) == (
            "1800",
            "1800",
            "CNY",
            "cart=7",
        )
        assert paid["bank_type"] and paid["is_subscribe"] == "N" and paid["time_end"] == notify["time_end"]
    with pytest.raises(WeChatPayException) as unknown:
        client.order.query(transaction_id="4200000000000000000000000000")
    assert unknown.value.errcode == "ORDERNOTEXIST"


def test_wechatpy_verifies_md5_only_so_hmac_sha256_orders_are_beyond_it(sandbox):
    """wechatpy signs a request with HMAC-SHA256 when asked, but checks answers and notifies with MD5
    only: the sandbox signs them as WeChat Pay does, with the order's type, and wechatpy refuses them."""
    client = _wechatpy(sandbox.api)
    number = _number()
    answer = client.order.create(
        "NATIVE",
        "Coffee",
        1800,
        f"{sandbox.url}/notify/",
        client_ip="127.0.0.1",
        out_trade_no=number,
        sign_type="HMAC-SHA256",
    )
    assert answer["result_code"] == "SUCCESS"
    assert not client.check_signature(answer)
    assert v2.verify(answer, settings.WECHATPAY_API_KEY, "HMAC-SHA256")
    assert _cashier(sandbox, number).status_code == 202
    with pytest.raises(InvalidSignatureException):
        client.parse_payment_result(sandbox.inbox.wait(1)[0][2])


def test_wechatpy_closes_an_unpaid_order_once_and_never_a_paid_one(sandbox):
    client = _wechatpy(sandbox.api)
    number = _v2_order(client, sandbox)
    closed = client.order.close(number)
    assert closed["result_code"] == "SUCCESS" and client.check_signature(closed)
    assert client.order.query(out_trade_no=number)["trade_state"] == "CLOSED"
    with pytest.raises(WeChatPayException) as again:
        client.order.close(number)
    assert again.value.errcode == "ORDERCLOSED"

    paid = _v2_order(client, sandbox)
    assert _cashier(sandbox, paid).status_code == 202
    with pytest.raises(WeChatPayException) as refused:
        client.order.close(paid)
    assert refused.value.errcode == "ORDERPAID"


def test_wechatpy_refunds_with_its_certificate_queries_by_each_id_and_parses_refund_notifies(sandbox):
    client = _wechatpy(sandbox.api, cert=_merchant_cert())
    number = _v2_order(client, sandbox)
    assert _cashier(sandbox, number).status_code == 202
    transaction_id = client.parse_payment_result(sandbox.inbox.wait(1)[0][2])["transaction_id"]

    refund_url = f"{sandbox.url}/notify/wechatpay/v2/refund/"
    first = client.refund.apply(1800, 800, "R1" + number, transaction_id=transaction_id, notify_url=refund_url)
    second = client.refund.apply(1800, 1000, "R2" + number, out_trade_no=number, notify_url=refund_url)
    for answer, amount in ((first, "800"), (second, "1000")):
        assert answer["result_code"] == "SUCCESS" and client.check_signature(answer)
        assert (answer["out_trade_no"], answer["transaction_id"], answer["refund_fee"]) == (
            number,
            transaction_id,
            amount,
        )
        assert answer["refund_id"] and answer["cash_fee"] == "1800"

    # Each refund notifies (a moment later, as WeChat Pay does); wechatpy decrypts req_info.
    notifies = [client.parse_refund_notify_result(body) for _, _, body in sandbox.inbox.wait(3)[1:]]
    assert sorted((n["out_refund_no"], n["refund_status"], n["refund_fee"]) for n in notifies) == [
        ("R1" + number, "SUCCESS", 800),
        ("R2" + number, "SUCCESS", 1000),
    ]
    assert all(n["success_time"] and n["refund_recv_accout"] for n in notifies)

    for query in ({"refund_id": first["refund_id"]}, {"out_refund_no": "R1" + number}):
        one = client.refund.query(**query)
        assert client.check_signature(one)
        assert (one["refund_count"], one["out_refund_no_0"], one["refund_status_0"]) == ("1", "R1" + number, "SUCCESS")
        assert one["refund_success_time_0"] and one["refund_channel_0"] == "ORIGINAL"
    for query in ({"transaction_id": transaction_id}, {"out_trade_no": number}):
        both = client.refund.query(**query)
        assert client.check_signature(both)
        assert both["refund_count"] == "2" and {both["refund_fee_0"], both["refund_fee_1"]} == {"800", "1000"}


def test_wechatpy_as_the_official_account_gets_every_answer_and_notify_named_for_it(sandbox):
    """The merchant's other app: wechatpy configured with the official account's appid (an H5 page's JSAPI
    payment) places, pays, queries and refunds, and everything WeChat Pay sends names that app."""
    oa = settings.WECHAT_OA_APPID
    client = _wechatpy(sandbox.api, cert=_merchant_cert(), appid=oa)
    number = _v2_order(client, sandbox, "JSAPI", user_id="o-h5")
    assert sandbox.sim.order(number)["appid"] == oa
    # Our pay params are wechatpy's, for WeixinJSBridge and (timestamp in lower case) for wx.chooseWXPay.
    prepay_id = sandbox.sim.order(number)["prepay_id"]
    ours = v2.jsapi_params(oa, prepay_id, settings.WECHATPAY_API_KEY, "MD5", nonce_str="n" * 32, timestamp=1414561699)
    assert client.jsapi.get_jsapi_params(prepay_id, timestamp="1414561699", nonce_str="n" * 32) == ours
    choose = client.jsapi.get_jsapi_params(prepay_id, timestamp="1414561699", nonce_str="n" * 32, jssdk=True)
    assert choose == {**{k: v for k, v in ours.items() if k != "timeStamp"}, "timestamp": ours["timeStamp"]}

    assert _cashier(sandbox, number).status_code == 202
    notify = client.parse_payment_result(sandbox.inbox.wait(1)[0][2])
    assert (notify["appid"], notify["openid"]) == (oa, "o-h5")
    queried = client.order.query(out_trade_no=number)
    assert client.check_signature(queried) and queried["appid"] == oa
    refund_url = f"{sandbox.url}/notify/wechatpay/v2/refund/"
    refund = client.refund.apply(1800, 1800, "R" + number, out_trade_no=number, notify_url=refund_url)
    assert refund["result_code"] == "SUCCESS" and refund["appid"] == oa
    refund_notify_body = sandbox.inbox.wait(2)[1][2]
    assert v2.parse_xml(refund_notify_body)["appid"] == oa
    assert client.parse_refund_notify_result(refund_notify_body)["refund_status"] == "SUCCESS"
    assert client.refund.query(out_refund_no="R" + number)["appid"] == oa

    # An appid the merchant is not bound to is refused.
    with pytest.raises(WeChatPayException):
        _v2_order(_wechatpy(sandbox.api, appid="wx0000000000000bad"), sandbox)


def test_v2_refunds_need_the_merchant_certificate_in_process(sandbox, tmp_path):
    """In-process the sandbox sees the certificate requests presents, as the real /secapi/ host does."""
    host = "https://api.mch.weixin.qq.com"

    def in_process(cert: tuple[str, str] | None) -> WechatpyPay:
        client = _wechatpy(None, cert=cert)
        client._http.mount(host, SandboxTransport(providers.sandbox, {host: "wechatpay"}))
        return client

    number = _v2_order(in_process(None), sandbox)
    sandbox.sim.pay(number)
    stranger = RSA.generate(2048).export_key().decode()
    (tmp_path / "cert.pem").write_text(issue_certificate(stranger, settings.WECHATPAY_MCH_ID, "merchant").pem)
    (tmp_path / "key.pem").write_text(stranger)
    for cert in (None, (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))):
        with pytest.raises(WeChatPayException) as refused:
            in_process(cert).refund.apply(1800, 1800, "R" + number, out_trade_no=number)
        assert refused.value.return_code == "FAIL" and "证书" in refused.value.return_msg
    # A key that is not the certificate's fails as TLS would, before anything is sent.
    with pytest.raises(requests.exceptions.SSLError):
        in_process((_merchant_cert()[0], str(tmp_path / "key.pem"))).refund.apply(
            1800, 1800, "R" + number, out_trade_no=number
        )
    assert sandbox.sim.refund("R" + number) is None
    accepted = in_process(_merchant_cert()).refund.apply(1800, 1800, "R" + number, out_trade_no=number)
    assert accepted["result_code"] == "SUCCESS"
    time.sleep(0.2)
    assert sandbox.inbox.received == []  # no notify_url: no refund notify (nor had the payment one)
    # Over plain HTTP there is no TLS to show a certificate: the sandbox does not ask for one there.
    other = _v2_order(in_process(None), sandbox)
    sandbox.sim.pay(other)
    assert _wechatpy(sandbox.api).refund.apply(1800, 1800, "R" + other, out_trade_no=other)["result_code"] == "SUCCESS"


def test_wechatpy_sees_an_expired_order_closed(sandbox, monkeypatch):
    client = _wechatpy(sandbox.api)
    now = dt.datetime.now(CHINA)
    number = _v2_order(client, sandbox, time_expire=now + dt.timedelta(minutes=5))
    assert client.order.query(out_trade_no=number)["trade_state"] == "NOTPAY"
    monkeypatch.setattr(sandbox_wechatpay, "_now_china", lambda: now + dt.timedelta(minutes=6))
    assert client.order.query(out_trade_no=number)["trade_state"] == "CLOSED"
    assert _cashier(sandbox, number).status_code == 409
    with pytest.raises(WeChatPayException) as again:
        client.order.create(
            "NATIVE", "Coffee", 1800, f"{sandbox.url}/notify/", client_ip="127.0.0.1", out_trade_no=number
        )
    assert again.value.errcode == "ORDERCLOSED"


# --- v3: wechatpayv3 ----------------------------------------------------------------------


def _wechatpayv3(sandbox: Any, mode: str, monkeypatch: pytest.MonkeyPatch, appid: str = "") -> WechatPayV3:
    merchant, platform = providers._wechatpay_sandbox_keys()
    options: dict[str, Any] = {
        "wechatpay_type": WeChatPayType.NATIVE,
        "mchid": settings.WECHATPAY_MCH_ID,
        "private_key": RSA.import_key(merchant).export_key(pkcs=8).decode(),  # it reads PKCS#8 only
        "cert_serial_no": settings.WECHATPAY_CERT_SERIAL_NO,
        "appid": appid or settings.WECHATPAY_APPID,
        "apiv3_key": settings.WECHATPAY_API_V3_KEY,
        "notify_url": f"{sandbox.url}/notify/wechatpay/v3/",
        "timeout": 10,
    }
    if mode == "public_key":
        client = WechatPayV3(
            **options, public_key=public_key_pem(platform), public_key_id=settings.WECHATPAY_PUBLIC_KEY_ID
        )
        client._core._gate_way = sandbox.api
        return client
    # Certificate mode downloads the platform certificates while it is built, from the real host: it is
    # built without that step, pointed at the sandbox, and then takes the step (GET /v3/certificates).
    with monkeypatch.context() as patch:
        patch.setattr(Core, "_init_certificates", lambda self: None)
        client = WechatPayV3(**options)
    client._core._gate_way = sandbox.api
    client._core._init_certificates()
    return client


def _v3_order(client: WechatPayV3, pay_type: Any = WeChatPayType.NATIVE, **extra: Any) -> str:
    number = _number()
    code, message = client.pay(
        description="Coffee",
        out_trade_no=number,
        amount={"total": 1800, "currency": "CNY"},
        pay_type=pay_type,
        attach="cart=7",
        **extra,
    )
    assert code == 200, message
    return number


def _ok(answer: tuple[int, Any], code: int = 200) -> dict[str, Any]:
    assert answer[0] == code, answer
    return json.loads(answer[1]) if answer[1] else {}


@pytest.mark.parametrize("mode", MODES)
def test_wechatpayv3_starts_and_places_each_trade_type(sandbox, mode, monkeypatch):
    client = _wechatpayv3(sandbox, mode, monkeypatch)
    if mode == "certificate":
        (certificate,) = client._core._certificates
        assert f"{certificate.serial_number:X}" == sandbox.sim.certificate.serial
    for pay_type, extra, field in (
        (WeChatPayType.JSAPI, {"payer": {"openid": "o-alice"}}, "prepay_id"),
        (WeChatPayType.MINIPROG, {"payer": {"openid": "o-alice"}}, "prepay_id"),
        (WeChatPayType.NATIVE, {}, "code_url"),
        (WeChatPayType.H5, {"scene_info": {"payer_client_ip": "127.0.0.1", "h5_info": {"type": "Wap"}}}, "h5_url"),
        (WeChatPayType.APP, {}, "prepay_id"),
    ):
        code, message = client.pay(
            description="Coffee", out_trade_no=_number(), amount={"total": 1800}, pay_type=pay_type, **extra
        )
        assert code == 200 and json.loads(message)[field], (pay_type, message)
    # Public-key mode never needed a certificate: every answer named its PUB_KEY_ID.
    assert client._core._certificates == [] if mode == "public_key" else len(client._core._certificates) == 1


@pytest.mark.parametrize("mode", MODES)
def test_wechatpayv3_queries_closes_refunds_and_takes_every_notify(sandbox, mode, monkeypatch):
    client = _wechatpayv3(sandbox, mode, monkeypatch)
    expected_serial = settings.WECHATPAY_PUBLIC_KEY_ID if mode == "public_key" else sandbox.sim.certificate.serial
    number = _v3_order(client, time_expire=(dt.datetime.now(CHINA) + dt.timedelta(hours=1)).isoformat("T", "seconds"))
    unpaid = _ok(client.query(out_trade_no=number))
    assert (unpaid["trade_state"], unpaid["trade_state_desc"], unpaid["attach"]) == ("NOTPAY", "订单未支付", "cart=7")

    assert _cashier(sandbox, number).status_code == 202
    ((_, headers, body),) = sandbox.inbox.wait(1)
    assert headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert headers["Wechatpay-Serial"] == expected_serial
    notify = client.callback(headers, body)  # None unless it verifies and decrypts
    assert notify and notify["event_type"] == "TRANSACTION.SUCCESS"
    paid = notify["resource"]
    assert (paid["out_trade_no"], paid["trade_state"], paid["attach"]) == (number, "SUCCESS", "cart=7")

    by_number = _ok(client.query(out_trade_no=number))
    by_id = _ok(client.query(transaction_id=paid["transaction_id"]))
    for answer in (by_number, by_id):
        assert answer == paid
        assert (answer["trade_state_desc"], answer["bank_type"], answer["payer"]["openid"]) == (
            "支付成功",
            "OTHERS",
            "o-sandbox-payer",
        )
        assert answer["success_time"] and answer["amount"] == {
            "total": 1800,
            "payer_total": 1800,
            "currency": "CNY",
            "payer_currency": "CNY",
        }
    assert client.query(transaction_id="4200000000000000000000000000")[0] == 404

    refund_url = f"{sandbox.url}/notify/wechatpay/v3/"
    by_transaction = _ok(
        client.refund(
            "R1" + number,
            {"refund": 800, "total": 1800, "currency": "CNY"},
            transaction_id=paid["transaction_id"],
            notify_url=refund_url,
        )
    )
    by_out_trade_no = _ok(
        client.refund("R2" + number, {"refund": 1000, "total": 1800, "currency": "CNY"}, out_trade_no=number)
    )
    assert by_transaction["status"] == by_out_trade_no["status"] == "PROCESSING"
    assert by_transaction["out_trade_no"] == number and by_out_trade_no["transaction_id"] == paid["transaction_id"]
    assert by_transaction["amount"] == {
        "total": 1800,
        "refund": 800,
        "payer_total": 1800,
        "payer_refund": 800,
        "settlement_total": 1800,
        "settlement_refund": 800,
        "discount_refund": 0,
        "currency": "CNY",
    }
    for field in ("refund_id", "channel", "user_received_account", "funds_account", "create_time"):
        assert by_transaction[field], field
    # Both notify (wechatpayv3 sends its own notify_url when a call names none).
    refund_notifies = {}
    for _, headers, body in sandbox.inbox.wait(3)[1:]:
        assert headers["Wechatpay-Serial"] == expected_serial
        refund_notify = client.callback(headers, body)
        assert refund_notify and refund_notify["event_type"] == "REFUND.SUCCESS"
        refund_notifies[refund_notify["resource"]["out_refund_no"]] = refund_notify["resource"]
    assert refund_notifies["R1" + number]["amount"] == {
        "total": 1800,
        "refund": 800,
        "payer_total": 1800,
        "payer_refund": 800,
    }
    assert refund_notifies["R2" + number]["refund_status"] == "SUCCESS"
    assert refund_notifies["R2" + number]["user_received_account"]
    queried = _ok(client.query_refund("R1" + number))
    assert queried["status"] == "SUCCESS" and queried["success_time"]

    unpaid_number = _v3_order(client)
    _ok(client.close(unpaid_number), 204)
    assert _ok(client.query(out_trade_no=unpaid_number))["trade_state"] == "CLOSED"
    assert client.close(number)[0] == 400  # paid: refused


def test_wechatpayv3_as_the_official_account_gets_its_orders_and_notifies_named_for_it(sandbox, monkeypatch):
    oa = settings.WECHAT_OA_APPID
    client = _wechatpayv3(sandbox, "public_key", monkeypatch, appid=oa)
    number = _v3_order(client, WeChatPayType.JSAPI, payer={"openid": "o-h5"})
    prepay_id = sandbox.sim.order(number)["prepay_id"]
    # Our pay params sign what wechatpayv3 signs for the account's appid (RSA PKCS#1 v1.5 is deterministic).
    merchant, _ = providers._wechatpay_sandbox_keys()
    ours = v3.jsapi_params(oa, prepay_id, merchant, nonce_str="n" * 32, timestamp=1414561699)
    assert ours["paySign"] == client.sign([oa, "1414561699", "n" * 32, f"prepay_id={prepay_id}"])

    assert _cashier(sandbox, number).status_code == 202
    ((_, headers, body),) = sandbox.inbox.wait(1)
    notify = client.callback(headers, body)
    assert notify and (notify["resource"]["appid"], notify["resource"]["payer"]["openid"]) == (oa, "o-h5")
    assert _ok(client.query(out_trade_no=number))["appid"] == oa
    code, message = client.pay(
        description="Coffee", out_trade_no=_number(), amount={"total": 1800}, appid="wx0000000000000bad"
    )
    assert code == 400 and json.loads(message)["code"] == "PARAM_ERROR"


def test_certificates_are_served_encrypted_as_documented(sandbox, monkeypatch):
    client = _wechatpayv3(sandbox, "public_key", monkeypatch)
    code, message = client._core.request("/v3/certificates")  # verified: it names the PUB_KEY_ID
    assert code == 200
    (entry,) = json.loads(message)["data"]
    sealed = entry["encrypt_certificate"]
    assert (sealed["algorithm"], sealed["associated_data"]) == ("AEAD_AES_256_GCM", "certificate")
    pem = v3.decrypt_resource(settings.WECHATPAY_API_V3_KEY, sealed["nonce"], sealed["ciphertext"], "certificate")
    certificate = x509.load_pem_x509_certificate(pem.encode())
    assert f"{certificate.serial_number:X}" == entry["serial_no"] and len(entry["serial_no"]) == 40
    assert dt.datetime.fromisoformat(entry["effective_time"]) == certificate.not_valid_before_utc
    assert dt.datetime.fromisoformat(entry["expire_time"]) == certificate.not_valid_after_utc
    assert certificate.not_valid_before_utc < dt.datetime.now(dt.UTC) < certificate.not_valid_after_utc
    _, platform = providers._wechatpay_sandbox_keys()
    assert public_key_pem(pem) == public_key_pem(platform)


def test_every_v3_answer_names_its_signature_type(sandbox):
    """Errors too: wechatpayv3 checks only 2xx answers, our client only the ones it parses."""
    answer = requests.get(f"{sandbox.api}/v3/pay/transactions/out-trade-no/nope?mchid=1", timeout=10)
    assert answer.status_code == 401
    assert answer.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert answer.headers["Wechatpay-Serial"] == sandbox.sim.certificate.serial


def test_wechatpayv3_sees_an_expired_order_closed(sandbox, monkeypatch):
    client = _wechatpayv3(sandbox, "public_key", monkeypatch)
    now = dt.datetime.now(CHINA)
    number = _v3_order(client, time_expire=(now + dt.timedelta(minutes=5)).isoformat("T", "seconds"))
    monkeypatch.setattr(sandbox_wechatpay, "_now_china", lambda: now + dt.timedelta(minutes=6))
    assert _ok(client.query(out_trade_no=number))["trade_state"] == "CLOSED"
    assert _cashier(sandbox, number).status_code == 409
    code, message = client.pay(description="Coffee", out_trade_no=number, amount={"total": 1800})
    assert code == 403 and json.loads(message)["code"] == "ORDERCLOSED"
    # A time already past is taken (WeChat Pay would want a few minutes): the order is born closed.
    past = (now - dt.timedelta(minutes=1)).isoformat("T", "seconds")
    born_closed = _v3_order(client, time_expire=past)
    assert _ok(client.query(out_trade_no=born_closed))["trade_state"] == "CLOSED"


# --- failure states on demand -------------------------------------------------------------


def test_a_payment_can_be_left_userpaying_or_failed_and_then_paid(sandbox, monkeypatch):
    v3_client = _wechatpayv3(sandbox, "public_key", monkeypatch)
    v2_client = _wechatpy(sandbox.api)
    v3_number, v2_number = _v3_order(v3_client), _v2_order(v2_client, sandbox)

    for number in (v3_number, v2_number):
        answer = _cashier(sandbox, number, "USERPAYING")
        assert (answer.status_code, answer.json()) == (200, {"paid": False, "state": "USERPAYING"})
    assert _ok(v3_client.query(out_trade_no=v3_number))["trade_state"] == "USERPAYING"
    assert v2_client.order.query(out_trade_no=v2_number)["trade_state_desc"] == "用户支付中，需要输入密码"
    # The user is entering the password: not closed (v3 answers 202, v2 USERPAYING).
    assert v3_client.close(v3_number)[0] == 202
    with pytest.raises(WeChatPayException) as paying:
        v2_client.order.close(v2_number)
    assert paying.value.errcode == "USERPAYING"

    for number in (v3_number, v2_number):
        assert _cashier(sandbox, number, "PAYERROR").json() == {"paid": False, "state": "PAYERROR"}
    failed = _ok(v3_client.query(out_trade_no=v3_number))
    assert (failed["trade_state"], failed["trade_state_desc"]) == ("PAYERROR", "支付失败(其他原因，如银行返回失败)")
    assert v2_client.order.query(out_trade_no=v2_number)["trade_state"] == "PAYERROR"
    assert sandbox.inbox.received == []  # WeChat Pay notifies successes only

    for number in (v3_number, v2_number):
        assert _cashier(sandbox, number).status_code == 202  # another card
    assert len(sandbox.inbox.wait(2)) == 2
    assert _ok(v3_client.query(out_trade_no=v3_number))["trade_state"] == "SUCCESS"
    assert _cashier(sandbox, v3_number, "REFUSED").status_code == 400


@pytest.mark.parametrize("outcome", ["CLOSED", "ABNORMAL"])
def test_a_refund_can_end_closed_or_abnormal(sandbox, monkeypatch, outcome):
    client = _wechatpayv3(sandbox, "public_key", monkeypatch)
    number = _v3_order(client)
    assert _cashier(sandbox, number).status_code == 202
    sandbox.inbox.wait(1)
    preset = requests.post(f"{sandbox.url}/sandbox/pay/{number}/refund-outcome", json={"outcome": outcome}, timeout=10)
    assert preset.json() == {"refund_outcome": outcome}

    amount = {"refund": 1800, "total": 1800, "currency": "CNY"}
    _ok(client.refund("R" + number, amount, out_trade_no=number, notify_url=f"{sandbox.url}/notify/wechatpay/v3/"))
    notify = client.callback(*sandbox.inbox.wait(2)[1][1:])
    assert notify and notify["event_type"] == f"REFUND.{outcome}"
    assert notify["resource"]["refund_status"] == outcome
    assert _ok(client.query_refund("R" + number))["status"] == outcome

    refunds = f"{sandbox.url}/sandbox/refund/R{number}"
    if outcome == "CLOSED":
        # A closed refund gave the amount back: it can be refunded again; a closed one cannot succeed.
        assert _ok(client.query(out_trade_no=number))["trade_state"] == "SUCCESS"
        assert requests.post(refunds, json={"outcome": "SUCCESS"}, timeout=10).status_code == 409
    else:
        # An abnormal refund (the card was cancelled) is settled later: it succeeds after all.
        finished = requests.post(refunds, json={"outcome": "SUCCESS"}, timeout=10).json()
        assert finished["status"] == "SUCCESS" and finished["notified"] is True
        assert _ok(client.query_refund("R" + number))["status"] == "SUCCESS"


def test_a_refund_can_wait_processing_until_ended_by_the_json_api(sandbox):
    client = _wechatpy(sandbox.api, cert=_merchant_cert())
    number = _v2_order(client, sandbox)
    assert _cashier(sandbox, number).status_code == 202
    sandbox.inbox.wait(1)
    url = f"{sandbox.url}/sandbox/pay/{number}/refund-outcome"
    assert requests.post(url, json={"outcome": "PROCESSING"}, timeout=10).status_code == 200
    assert requests.post(url, json={"outcome": "LOST"}, timeout=10).status_code == 400
    client.refund.apply(1800, 1800, "R" + number, out_trade_no=number, notify_url=f"{sandbox.url}/notify/v2/refund/")
    time.sleep(0.2)
    assert client.refund.query(out_refund_no="R" + number)["refund_status_0"] == "PROCESSING"
    ended = requests.post(f"{sandbox.url}/sandbox/refund/R{number}", json={"outcome": "ABNORMAL"}, timeout=10)
    assert ended.json()["status"] == "ABNORMAL"
    assert client.refund.query(out_refund_no="R" + number)["refund_status_0"] == "CHANGE"  # v2's name for it
    notify = client.parse_refund_notify_result(sandbox.inbox.wait(2)[1][2])
    assert notify["refund_status"] == "CHANGE"


# --- notify retries -----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_a_notify_not_accepted_is_retried_until_it_is(sandbox, monkeypatch, version):
    if version == "V2":
        client = _wechatpy(sandbox.api)
        number = _v2_order(client, sandbox)
        sandbox.inbox.script = [(500, ""), (200, V2_FAIL)]  # an error, then a FAIL answer: both retried
    else:
        v3_client = _wechatpayv3(sandbox, "public_key", monkeypatch)
        number = _v3_order(v3_client)
        sandbox.inbox.script = [(500, V3_FAIL), (503, "")]
    assert _cashier(sandbox, number).status_code == 202
    deliveries = _pay_deliveries(sandbox, number, 3)
    expected = [(1, 500), (2, 200), (3, 200)] if version == "V2" else [(1, 500), (2, 503), (3, 204)]
    assert [(d["attempt"], d["status"]) for d in deliveries] == expected
    if version == "V2":  # a 200 whose body says FAIL is no success either
        assert "FAIL" in deliveries[1]["body"] and "SUCCESS" in deliveries[2]["body"]
    time.sleep(sum(RETRY_SECONDS) + 0.2)
    assert len(_pay_deliveries(sandbox, number, 3)) == 3  # accepted: no more attempts

    bodies = {body for _, _, body in sandbox.inbox.received}
    assert len(bodies) == 1  # the same notify each time
    if version == "V3":
        # Each attempt is signed anew (a day of retries would outlive one timestamp), and verifies.
        nonces = {headers["Wechatpay-Nonce"] for _, headers, _ in sandbox.inbox.received}
        assert len(nonces) == 3
        assert all(v3_client.callback(headers, body) for _, headers, body in sandbox.inbox.received)
    else:
        assert all(client.parse_payment_result(body) for _, _, body in sandbox.inbox.received)


def test_notify_retries_follow_the_schedule_and_give_up_after_it(sandbox, monkeypatch):
    client = _wechatpayv3(sandbox, "public_key", monkeypatch)
    number = _v3_order(client)
    sandbox.inbox.script = [(500, V3_FAIL)] * 10
    started = time.monotonic()
    assert _cashier(sandbox, number).status_code == 202
    deliveries = _pay_deliveries(sandbox, number, 1 + len(RETRY_SECONDS))
    assert time.monotonic() - started >= sum(RETRY_SECONDS)
    assert [(d["attempt"], d["status"]) for d in deliveries] == [(1, 500), (2, 500), (3, 500), (4, 500)]
    time.sleep(0.3)
    assert len(sandbox.inbox.received) == 1 + len(RETRY_SECONDS)


def test_a_refund_notify_is_retried_and_every_attempt_listed(sandbox, monkeypatch):
    client = _wechatpayv3(sandbox, "public_key", monkeypatch)
    number = _v3_order(client)
    assert _cashier(sandbox, number).status_code == 202
    sandbox.inbox.wait(1)
    sandbox.inbox.script = [(500, V3_FAIL)]
    amount = {"refund": 1800, "total": 1800, "currency": "CNY"}
    _ok(client.refund("R" + number, amount, out_trade_no=number, notify_url=f"{sandbox.url}/notify/wechatpay/v3/"))
    deliveries = _refund_deliveries(sandbox, "R" + number, 2)
    assert [(d["attempt"], d["status"]) for d in deliveries] == [(1, 500), (2, 204)]
    assert client.callback(*sandbox.inbox.received[-1][1:])["event_type"] == "REFUND.SUCCESS"
