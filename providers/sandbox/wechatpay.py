"""WeChat Pay (v2 and v3) as the sandbox serves it: signed answers, order state, cashier, notifies, refunds.

It verifies what we send exactly as WeChat Pay does (v2 `sign` with the API key, v3
`Authorization` with the merchant's public key, v2 `/secapi/` calls with the merchant's API
certificate) and signs what it sends (v2 with the API key and the order's sign type, v3 with
the platform key).

Apps: the merchant is bound to its appid and `appids` (a mini-program, an official account), and refuses
any other. An order belongs to the app its creating request named; its notifies, and the v2 answers about
it, name that app (a v2 answer about no order names the app the request named).

v3 keys: one platform key, known by two ids: the merchant's PUB_KEY_ID (public-key mode) and the
serial of a platform certificate the sandbox issues for it (GET /v3/certificates serves it,
encrypted with the APIv3 key). An answer names the id the request names in its own
`Wechatpay-Serial` header when that id is ours (clients in public-key mode send their
PUB_KEY_ID), else the certificate's serial, as WeChat Pay does for a merchant that has not told it
it moved to the public key. An order's and a refund's notifies name the id their creating request
was answered with, so each client gets notifies it can verify.

The client certificate of v2 refunds: in-process, the transport hands over the certificate
requests would present (its `cert` argument) and a refund without the merchant's is refused, as the
real `/secapi/` host refuses it. Over plain HTTP (web.py) there is no TLS and so no certificate to
see: those calls are not refused for it (a client's certificate handling is checked in-process).

Failure states on demand (web.py's JSON endpoints): a payment can end USERPAYING or PAYERROR
instead of SUCCESS (`pay(outcome=...)`), a refund CLOSED or ABNORMAL (`set_refund_outcome`, or
`complete_refund(outcome=...)` for one still PROCESSING). `time_expire` is honoured: an unpaid order
reads CLOSED after it.

Notifies are retried as WeChat Pay retries them (15s, 15s, 30s, 3m, 10m, 20m, 30m, ... over about a
day) until our endpoint answers success, on a compressed schedule (`retry_seconds`); every attempt is
recorded (`deliveries`, `refund_deliveries`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from Crypto.Cipher import AES
from Crypto.PublicKey import RSA
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from providers.sandbox.core import (
    Deliver,
    NotifySender,
    OutgoingNotify,
    Sandbox,
    SandboxRequest,
    SandboxResponse,
    Store,
    locked,
)
from providers.wechat.crypto import pkcs7_pad
from providers.wechatpay import v2, v3
from providers.wechatpay.types import CHINA

logger = logging.getLogger(__name__)

ORDER_TTL = 7 * 24 * 3600
# Seconds between notify attempts after a failed one; WeChat Pay's own run for about a day.
DEFAULT_RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)

UNPAID = ("NOTPAY", "USERPAYING", "PAYERROR")
PAY_OUTCOMES = ("SUCCESS", "USERPAYING", "PAYERROR")
# How a refund ends; PROCESSING (as a preset) leaves it to `complete_refund`.
REFUND_OUTCOMES = ("SUCCESS", "CLOSED", "ABNORMAL")
REFUND_PRESETS = (*REFUND_OUTCOMES, "PROCESSING")
# v2 spells two refund states its own way
V2_REFUND_STATUS = {"SUCCESS": "SUCCESS", "PROCESSING": "PROCESSING", "ABNORMAL": "CHANGE", "CLOSED": "REFUNDCLOSE"}
# The trade states as WeChat Pay's documentation describes them (trade_state_desc).
TRADE_STATE_DESC = {
    "SUCCESS": "支付成功",
    "REFUND": "转入退款",
    "NOTPAY": "订单未支付",
    "CLOSED": "订单已关闭",
    "USERPAYING": "用户支付中，需要输入密码",
    "PAYERROR": "支付失败(其他原因，如银行返回失败)",
}
BANK_TYPE = "OTHERS"  # what WeChat Pay reports for a balance (零钱) payment
USER_RECEIVED_ACCOUNT = "支付用户零钱"
# Fields an order stored by an older sandbox may lack.
_ORDER_DEFAULTS = {"attach": "", "time_expire": "", "key_id": "", "refunds": (), "refund_outcome": "SUCCESS"}


@dataclass(frozen=True)
class SandboxMerchant:
    appid: str
    mchid: str
    api_key: str
    api_v3_key: str
    merchant_public_key: str  # verifies our v3 requests and our v2 client certificate
    platform_private_key: str  # signs v3 answers and notifies
    platform_key_id: str  # the merchant's PUB_KEY_ID_... (or a certificate serial)
    # The other apps bound to the merchant (an official account beside the mini-program): an order may
    # name any of them, and its answers and notifies then name that app.
    appids: tuple[str, ...] = ()

    def binds(self, appid: str) -> bool:
        return bool(appid) and (appid == self.appid or appid in self.appids)


@dataclass(frozen=True)
class IssuedCertificate:
    pem: str
    serial: str  # upper-case hex, as WeChat Pay writes serials
    not_before: dt.datetime
    not_after: dt.datetime


def issue_certificate(private_key_pem: str, common_name: str, purpose: str) -> IssuedCertificate:
    """A self-signed X.509 certificate for the key; the same key and purpose give the same certificate
    in every process (serial from the key, validity from the start of this year for five years)."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the sandbox issues certificates for RSA keys only")
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = int.from_bytes(hashlib.sha256(purpose.encode() + public_der).digest()[:20], "big")
    # 40 hex digits like WeChat Pay's serials, and under the 160 bits X.509 allows a serial.
    serial = 2**156 + digest % (7 * 2**156)
    not_before = dt.datetime(_now_china().astimezone(dt.UTC).year, 1, 1, tzinfo=dt.UTC)
    not_after = not_before.replace(year=not_before.year + 5)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wxb sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return IssuedCertificate(pem, f"{serial:X}", not_before, not_after)


def merchant_api_certificate(merchant_private_key_pem: str, mchid: str) -> IssuedCertificate:
    """The merchant's API certificate (apiclient_cert.pem) as the sandbox issues it: v2 refunds present it."""
    return issue_certificate(merchant_private_key_pem, mchid, "merchant")


def _now_china() -> dt.datetime:
    """The sandbox's clock (tests move it to see an order expire)."""
    return dt.datetime.now(CHINA).replace(microsecond=0)


def _v2_time(value: str) -> str:
    """An ISO time as v2 writes times: Beijing time, yyyyMMddHHmmss."""
    return dt.datetime.fromisoformat(value).astimezone(CHINA).strftime("%Y%m%d%H%M%S")


def _v2_refund_time(value: str) -> str:
    return dt.datetime.fromisoformat(value).astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def _v2_error(message: str) -> SandboxResponse:
    return SandboxResponse(200, v2.to_xml({"return_code": "FAIL", "return_msg": message}), {"Content-Type": "text/xml"})


def _v2_fail(code: str, description: str = "") -> dict[str, Any]:
    return {"result_code": "FAIL", "err_code": code, "err_code_des": description or code}


def _v3_fail(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"code": code, "message": message}


def _header(headers: dict[str, str], name: str) -> str:
    """A header by name in any case (Django and requests spell them differently)."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), "")


def _same_rsa_key(pem: str, other_pem: str) -> bool:
    try:
        one, other = RSA.import_key(pem), RSA.import_key(other_pem)
    except (ValueError, IndexError, TypeError):
        return False
    return bool((one.n, one.e) == (other.n, other.e))


def _v2_accepted(status: int, body: str) -> bool:
    """WeChat Pay's success test for a v2 notify answer: HTTP 200 carrying return_code SUCCESS."""
    if status != 200:
        return False
    try:
        return v2.parse_xml(body.encode()).get("return_code") == "SUCCESS"
    except v2.XmlError:
        return False


def _v3_accepted(status: int, body: str) -> bool:
    return status in (200, 204)


class WechatPaySimulator(NotifySender):
    name = "wechatpay"

    def __init__(
        self,
        store: Store,
        merchant: SandboxMerchant,
        sandbox: Sandbox,
        deliver: Deliver,
        retry_seconds: Sequence[float] = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.store = store
        self.m = merchant
        self.sandbox = sandbox
        self.deliver = deliver
        self.retry_seconds = tuple(retry_seconds)
        # Refund notifies follow the refund answer on a thread, as WeChat Pay's come later.
        self.auto_refund_notify = True

    @functools.cached_property
    def certificate(self) -> IssuedCertificate:
        """The platform certificate of the platform key (certificate mode's name for it)."""
        return issue_certificate(self.m.platform_private_key, "WeChat Pay sandbox platform", "platform")

    # --- state -------------------------------------------------------------------
    def _locked(self, number: str) -> contextlib.AbstractContextManager[None]:
        """Held while an order or refund is read and changed: concurrent requests take turns."""
        return locked(self.store, f"sbx:wxp:lock:{self.m.mchid}:{number}")

    def _key(self, out_trade_no: str) -> str:
        return f"sbx:wxp:order:{self.m.mchid}:{out_trade_no}"

    def _transaction_key(self, transaction_id: str) -> str:
        return f"sbx:wxp:txn:{self.m.mchid}:{transaction_id}"

    def _refund_id_key(self, refund_id: str) -> str:
        return f"sbx:wxp:refund-id:{self.m.mchid}:{refund_id}"

    def order(self, out_trade_no: str) -> dict[str, Any] | None:
        """The order as WeChat Pay would report it now: an unpaid one past its time_expire is CLOSED."""
        value = self.store.get(self._key(out_trade_no))
        if not isinstance(value, dict):
            return None
        order = {**_ORDER_DEFAULTS, **value}
        order["refunds"] = list(order["refunds"])
        expire = order["time_expire"]
        if order["state"] in UNPAID and expire and _now_china() >= dt.datetime.fromisoformat(expire):
            order["state"] = "CLOSED"
        return order

    def order_by_transaction(self, transaction_id: str) -> dict[str, Any] | None:
        out_trade_no = self.store.get(self._transaction_key(transaction_id)) if transaction_id else None
        return self.order(out_trade_no) if isinstance(out_trade_no, str) else None

    def _find_order(self, transaction_id: str, out_trade_no: str) -> dict[str, Any] | None:
        """By transaction_id when given (WeChat Pay prefers it), else by out_trade_no."""
        if transaction_id:
            return self.order_by_transaction(transaction_id)
        return self.order(out_trade_no) if out_trade_no else None

    def _save(self, order: dict[str, Any]) -> None:
        self.store.set(self._key(order["out_trade_no"]), order, ORDER_TTL)

    def refund(self, out_refund_no: str) -> dict[str, Any] | None:
        value = self.store.get(f"sbx:wxp:refund:{self.m.mchid}:{out_refund_no}")
        return dict(value) if isinstance(value, dict) else None

    def refund_by_id(self, refund_id: str) -> dict[str, Any] | None:
        out_refund_no = self.store.get(self._refund_id_key(refund_id)) if refund_id else None
        return self.refund(out_refund_no) if isinstance(out_refund_no, str) else None

    def _save_refund(self, refund: dict[str, Any]) -> None:
        self.store.set(f"sbx:wxp:refund:{self.m.mchid}:{refund['out_refund_no']}", refund, ORDER_TTL)

    def orders_created(self) -> int:
        return int(self.store.get(f"sbx:wxp:created:{self.m.mchid}") or 0)

    def _count_created(self, out_trade_no: str) -> None:
        self.store.add(f"sbx:wxp:created:{self.m.mchid}", 0, None)
        # Numbered in creation order (incr is atomic), so the newest are found without listing keys.
        number = self.store.incr(f"sbx:wxp:created:{self.m.mchid}")
        self.store.set(f"sbx:wxp:seq:{self.m.mchid}:{number}", out_trade_no, ORDER_TTL)

    def recent_orders(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest orders still known, newest first (for the sandbox's index page)."""
        newest = self.orders_created()
        found = []
        for number in range(newest, max(newest - limit, 0), -1):
            out_trade_no = self.store.get(f"sbx:wxp:seq:{self.m.mchid}:{number}")
            order = self.order(out_trade_no) if isinstance(out_trade_no, str) else None
            if order is not None:
                found.append(order)
        return found

    # --- HTTP surface ------------------------------------------------------------
    def takes_own_faults(self, request: SandboxRequest) -> bool:
        return False

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path.startswith("/v3/"):
            return self._handle_v3(request)
        routes = {
            "/pay/unifiedorder": self.v2_unifiedorder,
            "/pay/orderquery": self.v2_orderquery,
            "/pay/closeorder": self.v2_closeorder,
            "/secapi/pay/refund": self.v2_refund,
            "/pay/refundquery": self.v2_refundquery,
        }
        handler = routes.get(request.path)
        if handler is None or request.method != "POST":
            return SandboxResponse(404, b"not found")
        if request.path.startswith("/secapi/") and request.cert_visible and not self._merchant_cert(request):
            return _v2_error("证书校验错误：此接口需要商户API证书")
        try:
            params = v2.parse_xml(request.body)
        except v2.XmlError:
            return _v2_error("XML parse error")
        if not self.m.binds(params.get("appid", "")) or params.get("mch_id") != self.m.mchid:
            return _v2_error("appid and mch_id do not match")
        sign_type = params.get("sign_type") or "MD5"
        if sign_type not in v2.SIGN_TYPES or not v2.verify(params, self.m.api_key, sign_type):
            return _v2_error("签名错误")
        answer = handler(params)
        answer.setdefault("return_code", "SUCCESS")
        answer.setdefault("return_msg", "OK")
        # The app the request named; an answer about an order names the order's app.
        answer.setdefault("appid", params["appid"])
        answer.update({"mch_id": self.m.mchid, "nonce_str": v2.nonce()})
        answer["sign"] = self._v2_sign(answer, sign_type)
        return SandboxResponse(200, v2.to_xml(answer), {"Content-Type": "text/xml"})

    def _merchant_cert(self, request: SandboxRequest) -> bool:
        """Whether the client certificate presented is the merchant's (its key is the merchant's)."""
        return bool(request.client_cert) and _same_rsa_key(request.client_cert or "", self.m.merchant_public_key)

    def _v2_sign(self, params: dict[str, Any], sign_type: str) -> str:
        signature = v2.sign(params, self.m.api_key, sign_type)
        if self.sandbox.take_fault(self.name, ("bad_signature",)):
            signature = "0" * len(signature)
        return signature

    # --- orders (both versions) ----------------------------------------------------
    def _create(
        self,
        *,
        version: str,
        out_trade_no: str,
        amount: int,
        trade_type: str,
        description: str,
        notify_url: str,
        payer_openid: str,
        sign_type: str,
        appid: str,
        attach: str = "",
        time_expire: dt.datetime | None = None,
        key_id: str = "",
    ) -> tuple[dict[str, Any] | None, str]:
        """Creates the order, or returns the same one for an identical retry; (order, error code). A
        time_expire already past is taken (WeChat Pay wants a few minutes): the order is closed at once."""
        with self._locked(out_trade_no):
            existing = self.order(out_trade_no)
            if existing is not None:
                if existing["state"] in ("SUCCESS", "REFUND"):
                    return None, "ORDERPAID"
                if existing["state"] == "CLOSED":
                    return None, "ORDERCLOSED"
                same = (existing["amount"], existing["trade_type"], existing["version"], existing["appid"]) == (
                    amount,
                    trade_type,
                    version,
                    appid,
                )
                return (existing, "") if same else (None, "OUT_TRADE_NO_USED")
            prepay_id = "wx" + _now_china().strftime("%d%H%M%S") + secrets.token_hex(12)
            order = {
                "version": version,
                "appid": appid,
                "mchid": self.m.mchid,
                "out_trade_no": out_trade_no,
                "amount": amount,
                "trade_type": trade_type,
                "description": description,
                "notify_url": notify_url,
                "payer_openid": payer_openid,
                "sign_type": sign_type,
                "attach": attach,
                "time_expire": time_expire.isoformat() if time_expire else "",
                "key_id": key_id,
                "state": "NOTPAY",
                "transaction_id": "",
                "success_time": "",
                "prepay_id": prepay_id,
                "code_url": f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(8)}",
                "h5_url": f"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={prepay_id}&package={secrets.randbelow(10**10)}",
                "refunded": 0,
                "refunds": [],
                "refund_outcome": "SUCCESS",
            }
            self._save(order)
            self._count_created(out_trade_no)
            return order, ""

    def _close(self, out_trade_no: str) -> tuple[dict[str, Any] | None, str]:
        """Closes an unpaid order; (the order, error code). A user entering the password is not cut off."""
        with self._locked(out_trade_no):
            order = self.order(out_trade_no)
            if order is None:
                return None, "ORDERNOTEXIST"
            if order["state"] in ("SUCCESS", "REFUND"):
                return order, "ORDERPAID"
            if order["state"] == "USERPAYING":
                return order, "USERPAYING"
            if order["state"] == "CLOSED":
                return order, "ORDERCLOSED"
            order["state"] = "CLOSED"
            self._save(order)
            return order, ""

    # --- v2 ----------------------------------------------------------------------
    def v2_unifiedorder(self, p: dict[str, str]) -> dict[str, Any]:
        trade_type = {"MWEB": "H5"}.get(p.get("trade_type", ""), p.get("trade_type", ""))
        try:
            amount = int(p.get("total_fee", ""))
        except ValueError:
            return _v2_fail("PARAM_ERROR", "total_fee")
        if trade_type not in ("JSAPI", "NATIVE", "H5", "APP") or amount <= 0 or not p.get("notify_url"):
            return _v2_fail("PARAM_ERROR", "参数错误")
        if trade_type == "JSAPI" and not p.get("openid"):
            return _v2_fail("PARAM_ERROR", "JSAPI支付必须传openid")
        time_expire = None
        if p.get("time_expire"):
            try:
                time_expire = dt.datetime.strptime(p["time_expire"], "%Y%m%d%H%M%S").replace(tzinfo=CHINA)
            except ValueError:
                return _v2_fail("PARAM_ERROR", "time_expire格式错误")
        order, error = self._create(
            version="V2",
            out_trade_no=p.get("out_trade_no", ""),
            amount=amount,
            trade_type=trade_type,
            description=p.get("body", ""),
            notify_url=p["notify_url"],
            payer_openid=p.get("openid", ""),
            sign_type=p.get("sign_type") or "MD5",
            appid=p["appid"],
            attach=p.get("attach", ""),
            time_expire=time_expire,
        )
        if order is None:
            return _v2_fail(error)
        answer: dict[str, Any] = {
            "result_code": "SUCCESS",
            "trade_type": p["trade_type"],
            "prepay_id": order["prepay_id"],
        }
        if trade_type == "NATIVE":
            answer["code_url"] = order["code_url"]
        if trade_type == "H5":
            answer["mweb_url"] = order["h5_url"]
        return answer

    def _v2_trade_fields(self, order: dict[str, Any]) -> dict[str, Any]:
        """What an order query and a pay notify say of a paid order (the documented fields)."""
        return {
            "out_trade_no": order["out_trade_no"],
            "transaction_id": order["transaction_id"],
            "attach": order["attach"] or None,
            "openid": order["payer_openid"] or "o-sandbox-payer",
            "is_subscribe": "N",
            "trade_type": {"H5": "MWEB"}.get(order["trade_type"], order["trade_type"]),
            "bank_type": BANK_TYPE,
            "total_fee": order["amount"],
            "fee_type": "CNY",
            "cash_fee": order["amount"],
            "cash_fee_type": "CNY",
            "time_end": _v2_time(order["success_time"]),
        }

    def v2_orderquery(self, p: dict[str, str]) -> dict[str, Any]:
        order = self._find_order(p.get("transaction_id", ""), p.get("out_trade_no", ""))
        if order is None:
            return _v2_fail("ORDERNOTEXIST", "订单不存在")
        answer = {
            "appid": order["appid"],
            "result_code": "SUCCESS",
            "trade_state": order["state"],
            "trade_state_desc": TRADE_STATE_DESC[order["state"]],
        }
        if order["transaction_id"]:
            return {**answer, **self._v2_trade_fields(order)}
        # Unpaid: WeChat Pay returns only these.
        return {**answer, "out_trade_no": order["out_trade_no"], "attach": order["attach"] or None}

    def v2_closeorder(self, p: dict[str, str]) -> dict[str, Any]:
        order, error = self._close(p.get("out_trade_no", ""))
        descriptions = {
            "ORDERNOTEXIST": "订单不存在",
            "ORDERPAID": "订单已支付",
            "ORDERCLOSED": "订单已关闭",
            "USERPAYING": "用户支付中",
        }
        answer = _v2_fail(error, descriptions[error]) if error else {"result_code": "SUCCESS"}
        return {**answer, "appid": order["appid"]} if order else answer

    def v2_refund(self, p: dict[str, str]) -> dict[str, Any]:
        refund, error = self._create_refund(
            version="V2",
            out_trade_no=p.get("out_trade_no", ""),
            transaction_id=p.get("transaction_id", ""),
            out_refund_no=p.get("out_refund_no", ""),
            total=p.get("total_fee", ""),
            amount=p.get("refund_fee", ""),
            notify_url=p.get("notify_url", ""),
        )
        if refund is None:
            return _v2_fail(error)
        return {
            "appid": refund.get("appid") or self.m.appid,
            "result_code": "SUCCESS",
            "transaction_id": refund["transaction_id"],
            "out_trade_no": refund["out_trade_no"],
            "out_refund_no": refund["out_refund_no"],
            "refund_id": refund["refund_id"],
            "refund_fee": refund["amount"],
            "settlement_refund_fee": refund["amount"],
            "total_fee": refund["total"],
            "fee_type": "CNY",
            "cash_fee": refund["total"],
            "cash_refund_fee": refund["amount"],
        }

    def v2_refundquery(self, p: dict[str, str]) -> dict[str, Any]:
        """By refund_id, out_refund_no, transaction_id or out_trade_no (WeChat Pay's order of preference);
        by an order's number it lists all of the order's refunds."""
        if p.get("refund_id") or p.get("out_refund_no"):
            found = self.refund_by_id(p["refund_id"]) if p.get("refund_id") else self.refund(p["out_refund_no"])
            refunds = [found] if found else []
        else:
            order = self._find_order(p.get("transaction_id", ""), p.get("out_trade_no", ""))
            numbers = order["refunds"] if order else []
            refunds = [refund for refund in map(self.refund, numbers) if refund]
        if not refunds:
            return _v2_fail("REFUNDNOTEXIST", "退款单不存在")
        first = refunds[0]
        answer: dict[str, Any] = {
            "appid": first.get("appid") or self.m.appid,
            "result_code": "SUCCESS",
            "transaction_id": first["transaction_id"],
            "out_trade_no": first["out_trade_no"],
            "total_fee": first["total"],
            "fee_type": "CNY",
            "cash_fee": first["total"],
            "refund_count": len(refunds),
        }
        for n, refund in enumerate(refunds):
            answer.update(
                {
                    f"out_refund_no_{n}": refund["out_refund_no"],
                    f"refund_id_{n}": refund["refund_id"],
                    f"refund_channel_{n}": "ORIGINAL",
                    f"refund_fee_{n}": refund["amount"],
                    f"settlement_refund_fee_{n}": refund["amount"],
                    f"refund_status_{n}": V2_REFUND_STATUS[refund["status"]],
                    f"refund_account_{n}": "REFUND_SOURCE_UNSETTLED_FUNDS",
                    f"refund_recv_accout_{n}": USER_RECEIVED_ACCOUNT,  # sic: WeChat Pay's spelling
                    f"refund_success_time_{n}": _v2_refund_time(refund["success_time"])
                    if refund["success_time"]
                    else None,
                }
            )
        return answer

    # --- refunds (both versions) ---------------------------------------------------------
    def _create_refund(
        self,
        *,
        version: str,
        out_trade_no: str,
        out_refund_no: str,
        total: Any,
        amount: Any,
        notify_url: str,
        transaction_id: str = "",
        key_id: str = "",
    ) -> tuple[dict[str, Any] | None, str]:
        """A refund of the order named by transaction_id (preferred) or out_trade_no. Without a
        notify_url no refund notify is sent (WeChat Pay would use one set in the merchant platform)."""
        found = self._find_order(transaction_id, out_trade_no)
        if found is None:
            return None, "ORDERNOTEXIST"
        with self._locked(found["out_trade_no"]):
            existing = self.refund(out_refund_no)
            if existing is not None:
                return existing, ""  # WeChat Pay treats a repeated out_refund_no as the same refund
            order = self.order(found["out_trade_no"])
            if order is None:
                return None, "ORDERNOTEXIST"
            try:
                total, amount = int(total), int(amount)
            except (TypeError, ValueError):
                return None, "PARAM_ERROR"
            if order["state"] not in ("SUCCESS", "REFUND"):
                return None, "TRADE_STATE_ERROR"
            if total != order["amount"] or amount <= 0 or order["refunded"] + amount > order["amount"]:
                return None, "INVALID_REQUEST"
            refund = {
                "version": version,
                "appid": order["appid"],
                "out_trade_no": order["out_trade_no"],
                "transaction_id": order["transaction_id"],
                "out_refund_no": out_refund_no,
                "refund_id": "50" + secrets.token_hex(14),
                "amount": amount,
                "total": total,
                "status": "PROCESSING",
                "outcome": order["refund_outcome"],
                "notify_url": notify_url,
                "key_id": key_id,
                "create_time": _now_china().isoformat(),
                "success_time": "",
            }
            order["refunded"] += amount
            order["state"] = "REFUND"
            order["refunds"] = [*order["refunds"], out_refund_no]
            self._save(order)
            self._save_refund(refund)
            self.store.set(self._refund_id_key(refund["refund_id"]), out_refund_no, ORDER_TTL)
            if self.auto_refund_notify and refund["outcome"] != "PROCESSING":
                threading.Timer(0.05, self._finish_refund_later, args=(out_refund_no, refund["outcome"])).start()
            return refund, ""

    def set_refund_outcome(self, out_trade_no: str, outcome: str) -> dict[str, Any]:
        """How the order's refunds made from now on end: SUCCESS (the default), CLOSED, ABNORMAL, or
        PROCESSING (until `complete_refund`)."""
        if outcome not in REFUND_PRESETS:
            raise ValueError(f"outcome must be one of {list(REFUND_PRESETS)}")
        with self._locked(out_trade_no):
            order = self.order(out_trade_no)
            if order is None:
                raise LookupError("no such order at the sandbox")
            order["refund_outcome"] = outcome
            self._save(order)
            return order

    def _finish_refund_later(self, out_refund_no: str, outcome: str) -> None:
        try:
            self.complete_refund(out_refund_no, outcome)
        except (LookupError, ValueError):
            logger.warning("sandbox: refund %s not finished as %s", out_refund_no, outcome, exc_info=True)

    def complete_refund(self, out_refund_no: str, outcome: str = "SUCCESS") -> tuple[int, str] | None:
        """The refund ends SUCCESS, CLOSED or ABNORMAL (an ABNORMAL one can still end SUCCESS or
        CLOSED) and its notify is sent; returns our endpoint's first answer (None: no notify_url, or not
        delivered). A closed refund's amount can be refunded again. LookupError: no such refund;
        ValueError: it cannot end that way."""
        if outcome not in REFUND_OUTCOMES:
            raise ValueError(f"outcome must be one of {list(REFUND_OUTCOMES)}")
        refund = self.refund(out_refund_no)
        if refund is None:
            raise LookupError("no such refund at the sandbox")
        with self._locked(refund["out_trade_no"]):
            refund = self.refund(out_refund_no)
            order = self.order(refund["out_trade_no"]) if refund else None
            if refund is None or order is None:
                raise LookupError("no such refund at the sandbox")
            allowed = {"PROCESSING": REFUND_OUTCOMES, "ABNORMAL": ("SUCCESS", "CLOSED")}.get(refund["status"], ())
            if refund["status"] != outcome:
                if outcome not in allowed:
                    raise ValueError(f"a {refund['status']} refund cannot end {outcome}")
                refund["status"] = outcome
                if outcome == "SUCCESS":
                    refund["success_time"] = _now_china().isoformat()
                if outcome == "CLOSED":
                    order["refunded"] -= refund["amount"]
                    if order["refunded"] == 0:
                        order["state"] = "SUCCESS"
                    self._save(order)
                self._save_refund(refund)
        return self.send_refund_notify(out_refund_no)

    # --- v3 --------------------------------------------------------------------------
    def _v3_answer(self, status: int, payload: dict[str, Any] | None, key_id: str = "") -> SandboxResponse:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")) if payload is not None else ""
        headers = self.v3_signed_headers(body, key_id)
        headers["Content-Type"] = "application/json"
        return SandboxResponse(status, body.encode("utf-8"), headers)

    def v3_signed_headers(self, body: str, key_id: str = "") -> dict[str, str]:
        """The headers WeChat Pay signs an answer or notify with; `key_id` names the key (the merchant's
        PUB_KEY_ID when not given)."""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = v3.sign_message(self.m.platform_private_key, f"{timestamp}\n{nonce}\n{body}\n")
        if self.sandbox.take_fault(self.name, ("bad_signature",)):
            signature = v3.sign_message(self.m.platform_private_key, f"{timestamp}\n{nonce}\ntampered\n")
        return {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Signature-Type": v3.SCHEMA,
            "Wechatpay-Serial": key_id or self.m.platform_key_id,
            "Request-ID": secrets.token_hex(16),
        }

    def _answer_key_id(self, request: SandboxRequest) -> str:
        named = _header(request.headers, "Wechatpay-Serial")
        return named if named in (self.m.platform_key_id, self.certificate.serial) else self.certificate.serial

    def _v3_authorized(self, request: SandboxRequest) -> bool:
        header = _header(request.headers, "Authorization")
        if not header.startswith(v3.SCHEMA + " "):
            return False
        fields = {}
        for part in header[len(v3.SCHEMA) + 1 :].split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value.strip('"')
        if fields.get("mchid") != self.m.mchid or not v3.timestamp_fresh(fields.get("timestamp", "")):
            return False
        url = request.path + ("?" + request.raw_query if request.raw_query else "")
        message = v3.request_message(
            request.method, url, fields.get("timestamp", ""), fields.get("nonce_str", ""), request.body.decode()
        )
        # verify_signature checks "a\nb\nc\n"; a request message is "m\nu\nt\nn\nbody\n".
        method, url_path, rest = message.split("\n", 2)
        return v3.verify_signature(self.m.merchant_public_key, method, url_path, rest[:-1], fields.get("signature", ""))

    def _handle_v3(self, request: SandboxRequest) -> SandboxResponse:
        key_id = self._answer_key_id(request)
        if not self._v3_authorized(request):
            return self._v3_answer(*_v3_fail(401, "SIGN_ERROR", "签名错误"), key_id)
        body = request.json() if request.body else {}
        if not isinstance(body, dict):
            return self._v3_answer(*_v3_fail(400, "PARAM_ERROR", "invalid JSON"), key_id)
        return self._v3_answer(*self._route_v3(request, body, key_id), key_id)

    def _route_v3(
        self, request: SandboxRequest, body: dict[str, Any], key_id: str
    ) -> tuple[int, dict[str, Any] | None]:
        path, method = request.path, request.method
        prefix = "/v3/pay/transactions/"
        if method == "POST" and path.startswith(prefix) and path[len(prefix) :] in ("jsapi", "native", "h5", "app"):
            return self.v3_create(path[len(prefix) :].upper(), body, key_id)
        for by in ("out-trade-no/", "id/"):
            if not path.startswith(prefix + by):
                continue
            number = unquote(path[len(prefix + by) :])
            if method == "POST" and by == "out-trade-no/" and number.endswith("/close"):
                if body.get("mchid") != self.m.mchid:
                    return _v3_fail(400, "PARAM_ERROR", "mchid与请求方不一致")
                return self.v3_close(number[: -len("/close")])
            if method == "GET":
                if request.query.get("mchid") != self.m.mchid:
                    return _v3_fail(400, "PARAM_ERROR", "缺少或错误的mchid")
                found = self.order(number) if by == "out-trade-no/" else self.order_by_transaction(number)
                return self.v3_query(found)
        if path == "/v3/refund/domestic/refunds" and method == "POST":
            return self.v3_refund(body, key_id)
        if path.startswith("/v3/refund/domestic/refunds/") and method == "GET":
            return self.v3_query_refund(unquote(path.rsplit("/", 1)[1]))
        if path == "/v3/certificates" and method == "GET":
            return 200, self.v3_certificates()
        return _v3_fail(404, "NOT_FOUND", "no such API")

    def v3_create(self, trade_type: str, body: dict[str, Any], key_id: str = "") -> tuple[int, dict[str, Any]]:
        amount = body.get("amount", {}).get("total") if isinstance(body.get("amount"), dict) else None
        if not self.m.binds(str(body.get("appid", ""))) or body.get("mchid") != self.m.mchid:
            return _v3_fail(400, "PARAM_ERROR", "appid和mch_id不匹配")
        if not isinstance(amount, int) or amount <= 0 or not body.get("notify_url") or not body.get("out_trade_no"):
            return _v3_fail(400, "PARAM_ERROR", "参数错误")
        payer: dict[str, Any] = body["payer"] if isinstance(body.get("payer"), dict) else {}
        if trade_type == "JSAPI" and not payer.get("openid"):
            return _v3_fail(400, "PARAM_ERROR", "缺少payer.openid")
        time_expire = None
        if body.get("time_expire"):
            try:
                time_expire = dt.datetime.fromisoformat(str(body["time_expire"]))
            except ValueError:
                time_expire = None
            if time_expire is None or time_expire.tzinfo is None:
                return _v3_fail(400, "PARAM_ERROR", "time_expire不是rfc3339格式")
        order, error = self._create(
            version="V3",
            out_trade_no=str(body["out_trade_no"]),
            amount=amount,
            trade_type=trade_type,
            description=str(body.get("description", "")),
            notify_url=str(body["notify_url"]),
            payer_openid=str(payer.get("openid", "")),
            sign_type="RSA",
            appid=str(body["appid"]),
            attach=str(body.get("attach", "")),
            time_expire=time_expire,
            key_id=key_id,
        )
        if order is None:
            return _v3_fail(403 if error in ("ORDERPAID", "ORDERCLOSED") else 400, error, error)
        if trade_type == "NATIVE":
            return 200, {"code_url": order["code_url"]}
        if trade_type == "H5":
            return 200, {"h5_url": order["h5_url"]}
        return 200, {"prepay_id": order["prepay_id"]}

    def v3_transaction(self, order: dict[str, Any]) -> dict[str, Any]:
        """An order as a v3 query answers it and a pay notify carries it."""
        data: dict[str, Any] = {
            "appid": order["appid"],
            "mchid": order["mchid"],
            "out_trade_no": order["out_trade_no"],
            "trade_state": order["state"],
            "trade_state_desc": TRADE_STATE_DESC[order["state"]],
            "trade_type": {"H5": "MWEB"}.get(order["trade_type"], order["trade_type"]),
            "amount": {"total": order["amount"], "currency": "CNY"},
        }
        if order["attach"]:
            data["attach"] = order["attach"]
        if order["transaction_id"]:
            data.update(
                transaction_id=order["transaction_id"],
                bank_type=BANK_TYPE,
                success_time=order["success_time"],
                payer={"openid": order["payer_openid"] or "o-sandbox-payer"},
            )
            data["amount"].update(payer_total=order["amount"], payer_currency="CNY")
        return data

    def v3_query(self, order: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        if order is None:
            return _v3_fail(404, "ORDER_NOT_EXIST", "订单不存在")
        return 200, self.v3_transaction(order)

    def v3_close(self, out_trade_no: str) -> tuple[int, dict[str, Any] | None]:
        _, error = self._close(out_trade_no)
        if error == "ORDERNOTEXIST":
            return _v3_fail(404, "ORDER_NOT_EXIST", "订单不存在")
        if error == "ORDERPAID":
            return _v3_fail(400, "ORDERPAID", "订单已支付")
        if error == "USERPAYING":
            return 202, None  # accepted but not done: WeChat Pay's answer while the user pays
        return 204, None  # closing a closed order is no error in v3

    def _v3_refund_amount(self, refund: dict[str, Any]) -> dict[str, Any]:
        return {
            "total": refund["total"],
            "refund": refund["amount"],
            "payer_total": refund["total"],
            "payer_refund": refund["amount"],
            "settlement_total": refund["total"],
            "settlement_refund": refund["amount"],
            "discount_refund": 0,
            "currency": "CNY",
        }

    def _v3_refund_body(self, refund: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "mchid": self.m.mchid,
            "refund_id": refund["refund_id"],
            "out_refund_no": refund["out_refund_no"],
            "transaction_id": refund["transaction_id"],
            "out_trade_no": refund["out_trade_no"],
            "channel": "ORIGINAL",
            "user_received_account": USER_RECEIVED_ACCOUNT,
            "create_time": refund.get("create_time") or _now_china().isoformat(),
            "status": refund["status"],
            "funds_account": "AVAILABLE",
            "amount": self._v3_refund_amount(refund),
            "promotion_detail": [],
        }
        if refund["success_time"]:
            body["success_time"] = refund["success_time"]
        return body

    def v3_refund(self, body: dict[str, Any], key_id: str = "") -> tuple[int, dict[str, Any]]:
        amount: dict[str, Any] = body["amount"] if isinstance(body.get("amount"), dict) else {}
        refund, error = self._create_refund(
            version="V3",
            out_trade_no=str(body.get("out_trade_no", "")),
            transaction_id=str(body.get("transaction_id", "")),
            out_refund_no=str(body.get("out_refund_no", "")),
            total=amount.get("total"),
            amount=amount.get("refund"),
            notify_url=str(body.get("notify_url", "")),
            key_id=key_id,
        )
        if refund is None:
            return _v3_fail(404 if error == "ORDERNOTEXIST" else 400, error, error)
        return 200, self._v3_refund_body(refund)

    def v3_query_refund(self, out_refund_no: str) -> tuple[int, dict[str, Any]]:
        refund = self.refund(out_refund_no)
        if refund is None:
            return _v3_fail(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return 200, self._v3_refund_body(refund)

    def v3_certificates(self) -> dict[str, Any]:
        """GET /v3/certificates: the platform certificate, encrypted with the APIv3 key as documented."""
        nonce = secrets.token_hex(6)
        certificate = self.certificate
        return {
            "data": [
                {
                    "serial_no": certificate.serial,
                    "effective_time": certificate.not_before.astimezone(CHINA).isoformat(),
                    "expire_time": certificate.not_after.astimezone(CHINA).isoformat(),
                    "encrypt_certificate": {
                        "algorithm": "AEAD_AES_256_GCM",
                        "nonce": nonce,
                        "associated_data": "certificate",
                        "ciphertext": v3.encrypt_resource(self.m.api_v3_key, nonce, certificate.pem, "certificate"),
                    },
                }
            ]
        }

    # --- the cashier and notifies --------------------------------------------------------
    def pay(self, out_trade_no: str, payer_openid: str = "", outcome: str = "SUCCESS") -> dict[str, Any]:
        """The user pays: the order succeeds (once), or with `outcome` is left USERPAYING (entering the
        password) or PAYERROR (the bank refused); either can still be paid. The pay notify is sent
        by the caller (`send_pay_notify_later`). LookupError: no such order; ValueError: closed."""
        if outcome not in PAY_OUTCOMES:
            raise ValueError(f"outcome must be one of {list(PAY_OUTCOMES)}")
        with self._locked(out_trade_no):
            order = self.order(out_trade_no)
            if order is None:
                raise LookupError("no such order at the sandbox")
            if order["state"] == "CLOSED":
                raise ValueError("this order is closed")
            if order["state"] in UNPAID and order["state"] != outcome:
                order["state"] = outcome
                order["payer_openid"] = order["payer_openid"] or payer_openid
                if outcome == "SUCCESS":
                    order["transaction_id"] = "4200" + _now_china().strftime("%Y%m%d") + secrets.token_hex(7)
                    order["success_time"] = _now_china().isoformat()
                    self.store.set(self._transaction_key(order["transaction_id"]), out_trade_no, ORDER_TTL)
                self._save(order)
            return order

    def close_at_cashier(self, out_trade_no: str) -> dict[str, Any]:
        with self._locked(out_trade_no):
            order = self.order(out_trade_no)
            if order is None:
                raise LookupError("no such order at the sandbox")
            if order["state"] in UNPAID:
                order["state"] = "CLOSED"
                self._save(order)
            return order

    def _pay_notify(self, out_trade_no: str) -> tuple[str, bytes, Callable[[], dict[str, str]]]:
        """(url, body, headers): `headers()` signs anew, as each retry of a v3 notify is."""
        order = self.order(out_trade_no)
        if order is None or not order["transaction_id"]:
            raise LookupError("the order is not paid")
        if order["version"] == "V2":
            params: dict[str, Any] = {
                "return_code": "SUCCESS",
                "result_code": "SUCCESS",
                "appid": order["appid"],
                "mch_id": self.m.mchid,
                "nonce_str": v2.nonce(),
                **self._v2_trade_fields(order),
            }
            params["sign"] = self._v2_sign(params, order["sign_type"])
            return order["notify_url"], v2.to_xml(params), lambda: {"Content-Type": "text/xml"}
        body = v3_notify_body(self.m.api_v3_key, "TRANSACTION.SUCCESS", "transaction", self.v3_transaction(order))
        return order["notify_url"], body.encode("utf-8"), self._v3_notify_headers(body, order["key_id"])

    def _v3_notify_headers(self, body: str, key_id: str) -> Callable[[], dict[str, str]]:
        def headers() -> dict[str, str]:
            signed = self.v3_signed_headers(body, key_id)
            signed["Content-Type"] = "application/json"
            return signed

        return headers

    def pay_notify(self, out_trade_no: str) -> tuple[str, dict[str, str], bytes]:
        """(url, headers, body) of the pay notify for a paid order."""
        url, body, headers = self._pay_notify(out_trade_no)
        return url, headers(), body

    def refund_notify(self, out_refund_no: str) -> tuple[str, dict[str, str], bytes]:
        url, body, headers = self._refund_notify(out_refund_no)
        return url, headers(), body

    def _refund_notify(self, out_refund_no: str) -> tuple[str, bytes, Callable[[], dict[str, str]]]:
        refund = self.refund(out_refund_no)
        if refund is None:
            raise LookupError("no such refund")
        if refund["version"] == "V2":
            info = {
                "out_trade_no": refund["out_trade_no"],
                "transaction_id": refund["transaction_id"],
                "out_refund_no": refund["out_refund_no"],
                "refund_id": refund["refund_id"],
                "total_fee": refund["total"],
                "refund_fee": refund["amount"],
                "settlement_refund_fee": refund["amount"],
                "refund_status": V2_REFUND_STATUS[refund["status"]],
                "success_time": _v2_refund_time(refund["success_time"]) if refund["success_time"] else "",
                "refund_recv_accout": USER_RECEIVED_ACCOUNT,
                "refund_account": "REFUND_SOURCE_UNSETTLED_FUNDS",
                "refund_request_source": "API",
            }
            params = {
                "return_code": "SUCCESS",
                "appid": refund.get("appid") or self.m.appid,  # the refunded order's app
                "mch_id": self.m.mchid,
                "nonce_str": v2.nonce(),
                "req_info": encrypt_refund_info(info, self.m.api_key),
            }
            return refund["notify_url"], v2.to_xml(params), lambda: {"Content-Type": "text/xml"}
        event = {"SUCCESS": "REFUND.SUCCESS", "CLOSED": "REFUND.CLOSED"}.get(refund["status"], "REFUND.ABNORMAL")
        resource = {
            "mchid": self.m.mchid,
            "out_trade_no": refund["out_trade_no"],
            "transaction_id": refund["transaction_id"],
            "out_refund_no": refund["out_refund_no"],
            "refund_id": refund["refund_id"],
            "refund_status": refund["status"],
            "success_time": refund["success_time"] or None,
            "user_received_account": USER_RECEIVED_ACCOUNT,
            "amount": {  # what the documented refund notify carries
                "total": refund["total"],
                "refund": refund["amount"],
                "payer_total": refund["total"],
                "payer_refund": refund["amount"],
            },
        }
        body = v3_notify_body(self.m.api_v3_key, event, "refund", resource)
        return refund["notify_url"], body.encode("utf-8"), self._v3_notify_headers(body, refund.get("key_id", ""))

    def send_pay_notify(self, out_trade_no: str) -> tuple[int, str]:
        """One delivery of the pay notify, not recorded and not retried: our endpoint's answer."""
        url, headers, body = self.pay_notify(out_trade_no)
        return self.deliver(url, headers, body)

    def send_pay_notify_copies(self, out_trade_no: str, copies: int) -> list[tuple[int, str]]:
        """One pay notify sent `copies` times at once, as WeChat Pay's deliveries over different links
        can arrive together; each copy not answered with success is retried on `retry_seconds` from a
        thread of its own. Returns our endpoint's answers to the first attempts; every attempt is
        recorded (`deliveries`), one that cannot be delivered as status 0 with the reason."""
        url, body, headers = self._pay_notify(out_trade_no)
        order = self.order(out_trade_no)
        accepted = _v2_accepted if order and order["version"] == "V2" else _v3_accepted
        together = threading.Barrier(copies)
        notify = OutgoingNotify(
            record=self._deliveries_key(out_trade_no),
            url=url,
            body=body,
            headers=headers,
            accepted=accepted,
            alive=lambda: self.store.get(self._key(out_trade_no)) is not None,
        )

        def send(copy: int) -> tuple[int, str]:
            try:
                together.wait(timeout=10)
            except threading.BrokenBarrierError as exc:
                answer = (0, f"not delivered: {exc}")
                self._record_delivery(notify.record, answer, attempt=1, copy=copy)
                return answer
            return self._deliver_with_retries(notify, copy)

        with ThreadPoolExecutor(max_workers=copies) as pool:
            return list(pool.map(send, range(1, copies + 1)))

    def send_pay_notify_later(self, out_trade_no: str, copies: int = 1) -> None:
        """Sends the pay notify from a thread of its own, as WeChat Pay sends it: after the payment, not
        inside the request that paid (which would hold a worker of the server being notified)."""
        threading.Thread(target=self.send_pay_notify_copies, args=(out_trade_no, copies), daemon=True).start()

    def send_refund_notify(self, out_refund_no: str) -> tuple[int, str] | None:
        """The refund's notify, retried like a pay notify; our endpoint's first answer (None when the
        refund has no notify_url, or the notify could not be delivered)."""
        url, body, headers = self._refund_notify(out_refund_no)
        refund = self.refund(out_refund_no)
        if not url or refund is None:
            return None
        notify = OutgoingNotify(
            record=self._refund_deliveries_key(out_refund_no),
            url=url,
            body=body,
            headers=headers,
            accepted=_v2_accepted if refund["version"] == "V2" else _v3_accepted,
            alive=lambda: self.refund(out_refund_no) is not None,
        )
        answer = self._deliver_with_retries(notify, copy=1)
        return None if answer[0] == 0 else answer

    def deliveries(self, out_trade_no: str) -> list[dict[str, Any]]:
        """Every attempt to deliver the order's pay notify so far, with our endpoint's answer."""
        value = self.store.get(self._deliveries_key(out_trade_no))
        return list(value) if isinstance(value, list) else []

    def refund_deliveries(self, out_refund_no: str) -> list[dict[str, Any]]:
        """Every attempt to deliver the refund's notify so far, with our endpoint's answer."""
        value = self.store.get(self._refund_deliveries_key(out_refund_no))
        return list(value) if isinstance(value, list) else []

    def _deliveries_key(self, out_trade_no: str) -> str:
        return f"sbx:wxp:delivered:{self.m.mchid}:{out_trade_no}"

    def _refund_deliveries_key(self, out_refund_no: str) -> str:
        return f"sbx:wxp:refund-delivered:{self.m.mchid}:{out_refund_no}"


def v3_notify_body(api_v3_key: str, event_type: str, kind: str, resource: dict[str, Any]) -> str:
    """A v3 notify's JSON body, as WeChat Pay builds it: the resource AES-256-GCM encrypted."""
    nonce = secrets.token_hex(6)
    plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
    envelope = {
        "id": secrets.token_hex(16),
        "create_time": _now_china().isoformat(),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功" if kind == "transaction" else "退款状态变更",
        "resource": {
            "original_type": kind,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": v3.encrypt_resource(api_v3_key, nonce, plaintext, kind),
            "associated_data": kind,
            "nonce": nonce,
        },
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))


def encrypt_refund_info(info: dict[str, Any], api_key: str) -> str:
    """What WeChat Pay does to a v2 refund notify's req_info."""
    xml = v2.to_xml(info).replace(b"<xml>", b"<root>").replace(b"</xml>", b"</root>")
    key = hashlib.md5(api_key.encode(), usedforsecurity=False).hexdigest().encode()  # noqa: S324 (the protocol)
    return base64.b64encode(AES.new(key, AES.MODE_ECB).encrypt(pkcs7_pad(xml))).decode()  # noqa: S305
