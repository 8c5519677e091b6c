"""Alipay's open API gateway as the sandbox serves it: signed answers, trade state, cashier, notifies, refunds.

One endpoint, `.../gateway.do`, takes the parameters of its query string and of a form body together, as
the real gateway does (API calls are form POSTs; page and WAP pay URLs are opened by the browser). It
verifies each request's RSA2 `sign` with the app's public key (certificate mode: the app certificate's key,
and the request must name the app certificate's and the root bundle's SNs), and signs what it sends with
the key it plays Alipay with: an answer over the exact text of its `<method>_response` object, written the
way Alipay writes it (`/` as `\\/`, non-ASCII as is), a notify or a return over its sorted parameters.

Trades live in the shared store, keyed by out_trade_no and changed under a lock each. A page, WAP or app
payment or a precreate creates the trade (WAIT_BUYER_PAY); the payer pays it at the sandbox cashier (page
and WAP pay redirect the browser there), the scan page (precreate's qr_code) or the app page (the order
string pasted), and it becomes TRADE_SUCCESS: the async notify follows, retried until our endpoint answers
exactly `success` (core.NotifySender, WeChat Pay's mechanism), and a page or WAP payer's browser goes on to
the return_url with the signed return parameters. An unpaid trade past its time_expire reads TRADE_CLOSED.

Refunds are immediate (fund_change Y) and idempotent per out_request_no (a repeat answers fund_change N);
each sends the trade's notify with the cumulative refund_fee (TRADE_CLOSED once all is refunded). A trade
can be set to answer its next refund with ACQ.SYSTEM_ERROR after moving the money, as Alipay sometimes does.

The pages are Django templates served by web.py under /sandbox/alipay/ (`pages_url`); the simulator only
names their paths: cashier/<out_trade_no>, qr/<code>, error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from providers.alipay import signing
from providers.rsa import sign_sha256, verify_sha256
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

logger = logging.getLogger(__name__)

TRADE_TTL = 7 * 24 * 3600
CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
WIRE_TIME = "%Y-%m-%d %H:%M:%S"
# Seconds between notify attempts after a failed one; Alipay's own run 8 times over about 25 hours.
DEFAULT_RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
NOTIFY_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"

PAGE_METHODS = {"alipay.trade.page.pay": "page", "alipay.trade.wap.pay": "wap", "alipay.trade.app.pay": "app"}
API_METHODS = (
    "alipay.trade.precreate",
    "alipay.trade.query",
    "alipay.trade.close",
    "alipay.trade.refund",
    "alipay.trade.fastpay.refund.query",
)
PRODUCTS = {"page": "电脑网站支付", "wap": "手机网站支付", "app": "APP支付", "precreate": "当面付扫码"}
REFUND_OUTCOMES = ("SUCCESS", "SYSTEM_ERROR")
# The sandbox's one buyer (the Alipay account that pays every sandbox trade).
BUYER_ID = "2088102000000002"
BUYER_LOGON_ID = "sbx***@sandbox.com"
MAX_AMOUNT = 100_000_000_00  # fen: Alipay takes [0.01, 100000000]
OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_\-]{1,64}")

# Gateway errors (answered as `error_response`), as Alipay's public error codes name them.
MISSING = ("40001", "Missing Required Arguments")
INVALID = ("40002", "Invalid Arguments")
INSUFFICIENT = ("40003", "Insufficient Conditions")
BUSINESS = ("40004", "Business Failed")
SIGNATURE_HINT = "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："
# Business errors (sub_code -> sub_msg) of the trade APIs.
SUB_MESSAGES = {
    "ACQ.TRADE_NOT_EXIST": "交易不存在",
    "ACQ.TRADE_STATUS_ERROR": "交易状态不合法",
    "ACQ.TRADE_HAS_SUCCESS": "交易已被支付",
    "ACQ.TRADE_HAS_CLOSE": "交易已经关闭",
    "ACQ.CONTEXT_INCONSISTENT": "交易信息被篡改",
    "ACQ.INVALID_PARAMETER": "参数无效",
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": "退款金额超限",
    "ACQ.SYSTEM_ERROR": "系统错误",
}


@dataclass(frozen=True)
class SandboxAlipayApp:
    app_id: str
    seller_id: str  # the merchant's PID (2088...)
    app_public_key: str  # verifies our requests (certificate mode: the app certificate's key)
    alipay_private_key: str  # signs answers, notifies and returns
    # Certificate mode: the SNs requests must name, and the one answers name.
    app_cert_sn: str = ""
    alipay_root_cert_sn: str = ""
    alipay_cert_sn: str = ""

    @property
    def cert_mode(self) -> bool:
        return bool(self.app_cert_sn)


def _now() -> dt.datetime:
    """The sandbox's clock (tests move it to see a trade expire)."""
    return dt.datetime.now(CHINA).replace(microsecond=0)


def _wire(moment: dt.datetime) -> str:
    return moment.astimezone(CHINA).strftime(WIRE_TIME)


def _fen(value: object) -> int | None:
    """A yuan amount as Alipay takes it ("18", "18.5", "18.00") in fen; None when it is not one."""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        return None
    fen = int(amount * 100)
    return fen if 0 < fen <= MAX_AMOUNT else None


def _yuan(fen: int) -> str:
    whole, cents = divmod(fen, 100)
    return f"{whole}.{cents:02d}"


def alipay_json(value: Any) -> str:
    """JSON as Alipay writes its answers: compact, non-ASCII as is, and `/` escaped as `\\/` (so a client
    that re-serialises the answer instead of verifying the raw text fails, as it would against Alipay)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), "")


def _error(kind: tuple[str, str], sub_code: str, sub_msg: str) -> dict[str, str]:
    return {"code": kind[0], "msg": kind[1], "sub_code": sub_code, "sub_msg": sub_msg}


def _business(sub_code: str, **extra: Any) -> dict[str, Any]:
    return {**_error(BUSINESS, sub_code, SUB_MESSAGES[sub_code]), **extra}


def _accepted(status: int, body: str) -> bool:
    """Alipay's success test of a notify answer: exactly the seven characters `success`."""
    return status == 200 and body == "success"


class AlipaySimulator(NotifySender):
    name = "alipay"

    def __init__(
        self,
        store: Store,
        app: SandboxAlipayApp,
        sandbox: Sandbox,
        deliver: Deliver,
        *,
        pages_url: str,
        retry_seconds: Sequence[float] = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.store = store
        self.app = app
        self.sandbox = sandbox
        self.deliver = deliver
        self.pages_url = pages_url.rstrip("/")  # where web.py serves the Alipay pages (absolute)
        self.retry_seconds = tuple(retry_seconds)
        # Refund and close notifies follow the answer from a thread, as Alipay's come a moment later
        # (False: only when `send_notify` is called).
        self.auto_refund_notify = True

    # --- state -------------------------------------------------------------------------------------------
    def _key(self, suffix: str) -> str:
        return f"sbx:ali:{self.app.app_id}:{suffix}"

    def _locked(self, out_trade_no: str) -> contextlib.AbstractContextManager[None]:
        return locked(self.store, self._key(f"lock:{out_trade_no}"))

    def trade(self, out_trade_no: str) -> dict[str, Any] | None:
        """The trade as Alipay would report it now: an unpaid one past its time_expire is TRADE_CLOSED."""
        value = self.store.get(self._key(f"trade:{out_trade_no}")) if out_trade_no else None
        if not isinstance(value, dict):
            return None
        trade = dict(value)
        trade["refunds"] = dict(trade["refunds"])
        expire = trade["time_expire"]
        if trade["status"] == "WAIT_BUYER_PAY" and expire and _now() >= dt.datetime.fromisoformat(expire):
            trade["status"] = "TRADE_CLOSED"
        return trade

    def trade_by_number(self, trade_no: str) -> dict[str, Any] | None:
        out_trade_no = self.store.get(self._key(f"trade-no:{trade_no}")) if trade_no else None
        return self.trade(out_trade_no) if isinstance(out_trade_no, str) else None

    def _find(self, biz: Mapping[str, Any]) -> dict[str, Any] | None:
        """By trade_no when given (Alipay prefers it), else by out_trade_no."""
        if biz.get("trade_no"):
            return self.trade_by_number(str(biz["trade_no"]))
        return self.trade(str(biz.get("out_trade_no") or ""))

    def _save(self, trade: dict[str, Any]) -> None:
        self.store.set(self._key(f"trade:{trade['out_trade_no']}"), trade, TRADE_TTL)

    def trade_by_qr_code(self, code: str) -> dict[str, Any] | None:
        out_trade_no = self.store.get(self._key(f"qr:{code}")) if code else None
        return self.trade(out_trade_no) if isinstance(out_trade_no, str) else None

    def recent_trades(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest trades still known, newest first (for the sandbox's index page)."""
        newest = int(self.store.get(self._key("created")) or 0)
        found = []
        for number in range(newest, max(newest - limit, 0), -1):
            out_trade_no = self.store.get(self._key(f"seq:{number}"))
            trade = self.trade(out_trade_no) if isinstance(out_trade_no, str) else None
            if trade is not None:
                found.append(trade)
        return found

    def _next_number(self, counter: str) -> int:
        self.store.add(self._key(counter), 0, None)
        return self.store.incr(self._key(counter))  # atomic on every Django cache

    # --- HTTP surface ------------------------------------------------------------------------------------
    def takes_own_faults(self, request: SandboxRequest) -> bool:
        return False

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if not request.path.endswith("/gateway.do"):
            return SandboxResponse(404, b"not found", {"Content-Type": "text/plain"})
        params = _request_params(request)
        method = params.get("method", "")
        error = self._gateway_error(params)
        if method in PAGE_METHODS:
            return self._open_cashier(params, error, request.method)
        if error is not None:
            return self._answer("error_response", error)
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            biz = None
        if not isinstance(biz, dict):
            return self._answer(method, _business("ACQ.INVALID_PARAMETER"))
        handlers: dict[str, Callable[[dict[str, str], dict[str, Any]], dict[str, Any]]] = {
            "alipay.trade.precreate": self.precreate,
            "alipay.trade.query": self.query,
            "alipay.trade.close": self.close,
            "alipay.trade.refund": self.refund,
            "alipay.trade.fastpay.refund.query": self.refund_query,
        }
        return self._answer(method, handlers[method](params, biz))

    def _gateway_error(self, params: Mapping[str, str]) -> dict[str, str] | None:
        """What the gateway refuses before any business is done (None: nothing)."""
        method, app_id = params.get("method", ""), params.get("app_id", "")
        if not method:
            return _error(MISSING, "isv.missing-method", "缺少方法名参数")
        if method not in PAGE_METHODS and method not in API_METHODS:
            return _error(INVALID, "isv.invalid-method", "不存在的方法名")
        if not app_id:
            return _error(MISSING, "isv.missing-app-id", "缺少AppID参数")
        if app_id != self.app.app_id:
            return _error(INVALID, "isv.invalid-app-id", "无效的AppID参数")
        if not params.get("sign"):
            return _error(MISSING, "isv.missing-signature", "缺少签名参数")
        if not params.get("sign_type"):
            return _error(MISSING, "isv.missing-signature-type", "缺少签名类型参数")
        if params["sign_type"] != signing.SIGN_TYPE:
            # The sandbox app has an RSA2 key only.
            return _error(INSUFFICIENT, "isv.missing-signature-config", "验签出错, 未配置对应签名算法的公钥或者证书")
        if params.get("charset", "utf-8").lower() not in ("utf-8", "utf8", "gbk"):
            return _error(INVALID, "isv.invalid-charset", "字符集错误")
        try:
            dt.datetime.strptime(params.get("timestamp", ""), WIRE_TIME)
        except ValueError:
            return _error(INVALID, "isv.invalid-timestamp", "非法的时间戳参数")
        certificate = self._certificate_error(params)
        if certificate is not None:
            return certificate
        content = signing.sign_content(params)
        if not verify_sha256(self.app.app_public_key, content, params["sign"]):
            return _error(INVALID, "isv.invalid-signature", SIGNATURE_HINT + content)
        return None

    def _certificate_error(self, params: Mapping[str, str]) -> dict[str, str] | None:
        app_sn, root_sn = params.get("app_cert_sn", ""), params.get("alipay_root_cert_sn", "")
        if not self.app.cert_mode:
            # The app signs with a public key; a certificate request names a certificate it does not have.
            return _error(INVALID, "isv.app-cert-not-exist", "应用公钥证书不存在") if app_sn else None
        if not app_sn:
            return _error(MISSING, "isv.missing-app-cert-sn", "缺少应用公钥证书序列号")
        if app_sn != self.app.app_cert_sn:
            return _error(INVALID, "isv.app-cert-not-exist", "应用公钥证书不存在")
        if root_sn != self.app.alipay_root_cert_sn:
            return _error(INVALID, "isv.invalid-alipay-root-cert-sn", "无效支付宝根证书序列号")
        return None

    def _sign(self, text: str) -> str:
        signature = sign_sha256(self.app.alipay_private_key, text)
        if self.sandbox.take_fault(self.name, ("bad_signature",)):
            signature = sign_sha256(self.app.alipay_private_key, text + "tampered")
        return signature

    def signed_answer(self, method: str, payload: Mapping[str, Any]) -> str:
        """The whole answer text: `{"<method>_response":{...},("alipay_cert_sn":...,)"sign":...}` with the
        signature over the exact text of the `_response` object."""
        name = method if method == "error_response" else method.replace(".", "_") + "_response"
        text = alipay_json(payload)
        cert = f'"alipay_cert_sn":{json.dumps(self.app.alipay_cert_sn)},' if self.app.cert_mode else ""
        return f'{{"{name}":{text},{cert}"sign":{json.dumps(self._sign(text))}}}'

    def _answer(self, method: str, payload: Mapping[str, Any]) -> SandboxResponse:
        body = self.signed_answer(method, payload).encode("utf-8")
        return SandboxResponse(200, body, {"Content-Type": "application/json;charset=utf-8"})

    def _redirect(self, url: str, request_method: str) -> SandboxResponse:
        # 303 after a browser's form POST: the cashier is then fetched with a GET.
        return SandboxResponse(303 if request_method == "POST" else 302, b"", {"Location": url})

    # --- creating trades -----------------------------------------------------------------------------------
    def _open_cashier(
        self, params: Mapping[str, str], error: dict[str, str] | None, request_method: str
    ) -> SandboxResponse:
        """page / WAP pay (and app pay sent to the gateway): the browser goes on to the cashier, or to the
        error page Alipay shows for a refused request."""
        trade = None
        if error is None:
            trade, error = self._payer_trade(params)
        if trade is None:
            shown = error or _business("ACQ.SYSTEM_ERROR")
            query = urlencode({k: shown[k] for k in ("code", "msg", "sub_code", "sub_msg")})
            return self._redirect(f"{self.pages_url}/error?{query}", request_method)
        cashier = f"{self.pages_url}/cashier/{quote(str(trade['out_trade_no']), safe='')}"
        return self._redirect(cashier, request_method)

    def app_pay(self, order_string: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The Alipay app takes the order string of alipay.trade.app.pay (URL-encoded `k=v&...`): (its trade,
        None) or (None, the error the app shows)."""
        params = dict(parse_qsl(order_string.strip(), keep_blank_values=True))
        error = self._gateway_error(params)
        if error is not None:
            return None, error
        if params["method"] != "alipay.trade.app.pay":
            return None, _error(INVALID, "isv.invalid-method", "不存在的方法名")
        return self._payer_trade(params)

    def _payer_trade(self, params: Mapping[str, str]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            biz = None
        if not isinstance(biz, dict):
            return None, _business("ACQ.INVALID_PARAMETER")
        return self._create(PAGE_METHODS[params["method"]], params, biz)

    def _create(
        self, product: str, params: Mapping[str, str], biz: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Creates the trade, or returns the same one for an identical request; (trade, None) or (None, error)."""
        out_trade_no = str(biz.get("out_trade_no") or "")
        amount = _fen(biz.get("total_amount"))
        subject = str(biz.get("subject") or "")
        if not OUT_TRADE_NO.fullmatch(out_trade_no) or amount is None or not subject or len(subject) > 256:
            return None, _business("ACQ.INVALID_PARAMETER")
        try:
            expire = _time_expire(biz)
        except ValueError:
            return None, _business("ACQ.INVALID_PARAMETER")
        with self._locked(out_trade_no):
            existing = self.trade(out_trade_no)
            if existing is not None:
                if existing["gmt_payment"]:
                    return None, _business("ACQ.TRADE_HAS_SUCCESS", out_trade_no=out_trade_no)
                if existing["status"] == "TRADE_CLOSED":
                    return None, _business("ACQ.TRADE_HAS_CLOSE", out_trade_no=out_trade_no)
                if (existing["amount"], existing["subject"]) != (amount, subject):
                    return None, _business("ACQ.CONTEXT_INCONSISTENT", out_trade_no=out_trade_no)
                return existing, None
            now = _now()
            trade: dict[str, Any] = {
                "app_id": self.app.app_id,
                "out_trade_no": out_trade_no,
                "trade_no": f"{now:%Y%m%d}220014{self._next_number('trade-seq'):014d}",
                "product": product,
                "subject": subject,
                "body": str(biz.get("body") or ""),
                "amount": amount,
                "status": "WAIT_BUYER_PAY",
                "notify_url": params.get("notify_url", ""),
                "return_url": params.get("return_url", ""),
                "quit_url": str(biz.get("quit_url") or ""),
                "passback_params": str(biz.get("passback_params") or ""),
                "time_expire": expire.isoformat() if expire else "",
                "gmt_create": _wire(now),
                "gmt_payment": "",
                "gmt_close": "",
                "buyer_id": "",
                "qr_code": "",
                "refunded": 0,
                "refunds": {},
                "refund_outcome": "SUCCESS",
            }
            if product == "precreate":
                code = "bax" + secrets.token_hex(10)
                trade["qr_code"] = f"{self.pages_url}/qr/{code}"
                self.store.set(self._key(f"qr:{code}"), out_trade_no, TRADE_TTL)
            self._save(trade)
            self.store.set(self._key(f"trade-no:{trade['trade_no']}"), out_trade_no, TRADE_TTL)
            self.store.set(self._key(f"seq:{self._next_number('created')}"), out_trade_no, TRADE_TTL)
            return trade, None

    # --- the API methods -------------------------------------------------------------------------------------
    def precreate(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        trade, error = self._create("precreate", params, biz)
        if trade is None:
            return error or _business("ACQ.SYSTEM_ERROR")
        return {"code": "10000", "msg": "Success", "out_trade_no": trade["out_trade_no"], "qr_code": trade["qr_code"]}

    def query(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return _business("ACQ.TRADE_NOT_EXIST", out_trade_no=str(biz.get("out_trade_no") or ""), **_NO_MONEY)
        answer: dict[str, Any] = {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "trade_status": trade["status"],
            "total_amount": _yuan(trade["amount"]),
        }
        if not trade["gmt_payment"]:
            return {**answer, **_NO_MONEY}
        paid = _yuan(trade["amount"])
        return {
            **answer,
            "buyer_logon_id": BUYER_LOGON_ID,
            "buyer_user_id": trade["buyer_id"],
            "buyer_pay_amount": paid,
            "point_amount": "0.00",
            "invoice_amount": paid,
            "receipt_amount": paid,
            "send_pay_date": trade["gmt_payment"],
            "fund_bill_list": [{"amount": paid, "fund_channel": "ALIPAYACCOUNT"}],
        }

    def close(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        found = self._find(biz)
        if found is None:
            return _business("ACQ.TRADE_NOT_EXIST", out_trade_no=str(biz.get("out_trade_no") or ""))
        with self._locked(found["out_trade_no"]):
            trade = self.trade(found["out_trade_no"])
            if trade is None:
                return _business("ACQ.TRADE_NOT_EXIST", out_trade_no=found["out_trade_no"])
            if trade["status"] != "WAIT_BUYER_PAY":
                # Only a trade waiting for its buyer can be closed (a closed one too is refused).
                return _business("ACQ.TRADE_STATUS_ERROR", out_trade_no=trade["out_trade_no"])
            trade["status"] = "TRADE_CLOSED"
            trade["gmt_close"] = _wire(_now())
            self._save(trade)
        if self.auto_refund_notify:
            self._notify_later(trade["out_trade_no"], "close")
        return {"code": "10000", "msg": "Success", "trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"]}

    def refund(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        found = self._find(biz)
        if found is None:
            return _business("ACQ.TRADE_NOT_EXIST", out_trade_no=str(biz.get("out_trade_no") or ""))
        amount = _fen(biz.get("refund_amount"))
        if amount is None:
            return _business("ACQ.INVALID_PARAMETER")
        request_no = str(biz.get("out_request_no") or found["out_trade_no"])  # Alipay's default
        with self._locked(found["out_trade_no"]):
            trade = self.trade(found["out_trade_no"])
            if trade is None:
                return _business("ACQ.TRADE_NOT_EXIST", out_trade_no=found["out_trade_no"])
            existing = trade["refunds"].get(request_no)
            if existing is not None:
                if existing["amount"] != amount:
                    return _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", out_trade_no=trade["out_trade_no"])
                # The same refund asked again: answered again, no money moves.
                return self._refund_answer(trade, existing, fund_change="N")
            if not trade["gmt_payment"]:
                return _business("ACQ.TRADE_STATUS_ERROR", out_trade_no=trade["out_trade_no"])
            if trade["status"] != "TRADE_SUCCESS":
                return _business("ACQ.TRADE_HAS_CLOSE", out_trade_no=trade["out_trade_no"])
            if trade["refunded"] + amount > trade["amount"]:
                return _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", out_trade_no=trade["out_trade_no"])
            now = dt.datetime.now(CHINA)
            refund = {
                "out_request_no": request_no,
                "amount": amount,
                "reason": str(biz.get("refund_reason") or ""),
                "gmt_refund": f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond // 1000:03d}",
                "refunded_after": trade["refunded"] + amount,  # the trade's cumulative refund_fee after it
            }
            trade["refunds"][request_no] = refund
            trade["refunded"] += amount
            if trade["refunded"] == trade["amount"]:
                trade["status"] = "TRADE_CLOSED"
                trade["gmt_close"] = _wire(now)
            system_error = trade["refund_outcome"] == "SYSTEM_ERROR"
            trade["refund_outcome"] = "SUCCESS"  # the preset answers one refund
            self._save(trade)
        if self.auto_refund_notify:
            self._notify_later(trade["out_trade_no"], f"refund:{request_no}")
        if system_error:
            # The money moved but the answer says to ask again: the same out_request_no then says so.
            return _business("ACQ.SYSTEM_ERROR", out_trade_no=trade["out_trade_no"])
        return self._refund_answer(trade, refund, fund_change="Y")

    def _refund_answer(self, trade: Mapping[str, Any], refund: Mapping[str, Any], fund_change: str) -> dict[str, Any]:
        return {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "buyer_logon_id": BUYER_LOGON_ID,
            "buyer_user_id": trade["buyer_id"],
            "fund_change": fund_change,
            "refund_fee": _yuan(trade["refunded"]),  # cumulative, as Alipay answers it
            "send_back_fee": _yuan(refund["amount"]) if fund_change == "Y" else "0.00",
            "gmt_refund_pay": refund["gmt_refund"][:19],
        }

    def refund_query(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return _business("ACQ.TRADE_NOT_EXIST", out_trade_no=str(biz.get("out_trade_no") or ""))
        request_no = str(biz.get("out_request_no") or "")
        refund = trade["refunds"].get(request_no)
        if refund is None:
            return {"code": "10000", "msg": "Success"}  # Alipay's answer for a refund it does not have
        answer = {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "out_request_no": request_no,
            "total_amount": _yuan(trade["amount"]),
            "refund_amount": _yuan(refund["amount"]),
            "refund_status": "REFUND_SUCCESS",
        }
        if refund["reason"]:
            answer["refund_reason"] = refund["reason"]
        options = biz.get("query_options")
        if isinstance(options, list) and "gmt_refund_pay" in options:
            answer["gmt_refund_pay"] = refund["gmt_refund"][:19]
        return answer

    # --- the payer's side ------------------------------------------------------------------------------------
    def pay(self, out_trade_no: str) -> tuple[dict[str, Any], bool]:
        """The buyer pays at the cashier: (the trade, whether it was paid just now); the notify is sent by
        the caller (`send_pay_notify_later`). LookupError: no such trade; ValueError: it is closed."""
        with self._locked(out_trade_no):
            trade = self.trade(out_trade_no)
            if trade is None:
                raise LookupError("No such trade at the sandbox.")
            if trade["gmt_payment"]:
                return trade, False
            if trade["status"] == "TRADE_CLOSED":
                raise ValueError("This trade is closed (交易已经关闭): it can no longer be paid.")
            trade["status"] = "TRADE_SUCCESS"
            trade["gmt_payment"] = _wire(_now())
            trade["buyer_id"] = BUYER_ID
            self._save(trade)
            return trade, True

    def set_refund_outcome(self, out_trade_no: str, outcome: str) -> dict[str, Any]:
        """How the trade's next refund is answered: SUCCESS, or SYSTEM_ERROR (the money moves, the answer is
        ACQ.SYSTEM_ERROR). LookupError: no such trade; ValueError: no such outcome."""
        if outcome not in REFUND_OUTCOMES:
            raise ValueError(f"outcome must be one of {list(REFUND_OUTCOMES)}")
        with self._locked(out_trade_no):
            trade = self.trade(out_trade_no)
            if trade is None:
                raise LookupError("No such trade at the sandbox.")
            trade["refund_outcome"] = outcome
            self._save(trade)
            return trade

    def return_url(self, out_trade_no: str) -> str:
        """Where the browser goes after paying a page or WAP trade: its return_url with the signed return
        parameters ("" when it has none, or is unpaid)."""
        trade = self.trade(out_trade_no)
        if trade is None or not trade["return_url"] or not trade["gmt_payment"]:
            return ""
        product = "wap" if trade["product"] == "wap" else "page"
        params = {
            "charset": "utf-8",
            "out_trade_no": trade["out_trade_no"],
            "method": f"alipay.trade.{product}.pay.return",
            "total_amount": _yuan(trade["amount"]),
            "trade_no": trade["trade_no"],
            "auth_app_id": self.app.app_id,
            "version": "1.0",
            "app_id": self.app.app_id,
            "sign_type": signing.SIGN_TYPE,
            "seller_id": self.app.seller_id,
            "timestamp": _wire(_now()),
        }
        params["sign"] = self._sign(signing.sign_content(params, for_verification=True))
        url = str(trade["return_url"])
        return url + ("&" if "?" in url else "?") + urlencode(params)

    def app_result(self, out_trade_no: str) -> str:
        """What the Alipay app hands the merchant's app after paying (the SDK's `result`): a signed answer."""
        trade = self.trade(out_trade_no)
        if trade is None or not trade["gmt_payment"]:
            return ""
        payload = {
            "code": "10000",
            "msg": "Success",
            "app_id": self.app.app_id,
            "auth_app_id": self.app.app_id,
            "charset": "utf-8",
            "timestamp": trade["gmt_payment"],
            "out_trade_no": trade["out_trade_no"],
            "total_amount": _yuan(trade["amount"]),
            "trade_no": trade["trade_no"],
            "seller_id": self.app.seller_id,
        }
        return self.signed_answer("alipay.trade.app.pay", payload)

    # --- notifies ----------------------------------------------------------------------------------------------
    def notify_fields(self, out_trade_no: str, event: str = "pay") -> dict[str, str]:
        """The signed form of a notify: `pay`, `close`, or `refund:<out_request_no>` (as Alipay sends it
        for that refund: the cumulative refund_fee then, TRADE_CLOSED once all was refunded)."""
        trade = self.trade(out_trade_no)
        if trade is None:
            raise LookupError("No such trade at the sandbox.")
        fields = {
            "notify_time": _wire(_now()),
            "notify_type": "trade_status_sync",
            "notify_id": hashlib.sha256(f"{trade['trade_no']}:{event}".encode()).hexdigest()[:34],
            "app_id": self.app.app_id,
            "auth_app_id": self.app.app_id,
            "charset": "utf-8",
            "version": "1.0",
            "sign_type": signing.SIGN_TYPE,
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "seller_id": self.app.seller_id,
            "total_amount": _yuan(trade["amount"]),
            "subject": trade["subject"],
            "gmt_create": trade["gmt_create"],
        }
        if trade["body"]:
            fields["body"] = trade["body"]
        if trade["passback_params"]:
            fields["passback_params"] = trade["passback_params"]
        if trade["gmt_payment"]:
            paid = _yuan(trade["amount"])
            fields.update(
                buyer_id=trade["buyer_id"],
                buyer_logon_id=BUYER_LOGON_ID,
                receipt_amount=paid,
                invoice_amount=paid,
                buyer_pay_amount=paid,
                point_amount="0.00",
                gmt_payment=trade["gmt_payment"],
                fund_bill_list=json.dumps([{"amount": paid, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")),
            )
        if event == "pay":
            if not trade["gmt_payment"]:
                raise LookupError("The trade is not paid.")
            fields["trade_status"] = "TRADE_SUCCESS"
        elif event == "close":
            fields.update(trade_status="TRADE_CLOSED", gmt_close=trade["gmt_close"] or _wire(_now()))
        elif event.startswith("refund:"):
            refund = trade["refunds"].get(event[len("refund:") :])
            if refund is None:
                raise LookupError("No such refund at the sandbox.")
            closed = refund["refunded_after"] == trade["amount"]
            fields.update(
                trade_status="TRADE_CLOSED" if closed else "TRADE_SUCCESS",
                refund_fee=_yuan(refund["refunded_after"]),
                out_biz_no=refund["out_request_no"],
                gmt_refund=refund["gmt_refund"],
            )
            if closed:
                fields["gmt_close"] = trade["gmt_close"]
        else:
            raise ValueError(f"unknown notify event {event!r}")
        fields["sign"] = self._sign(signing.sign_content(fields, for_verification=True))
        return fields

    def notify(self, out_trade_no: str, event: str = "pay") -> tuple[str, dict[str, str], bytes]:
        """(url, headers, body) of a notify: a form POST to the trade's notify_url."""
        trade = self.trade(out_trade_no)
        url = trade["notify_url"] if trade else ""
        body = urlencode(self.notify_fields(out_trade_no, event)).encode("ascii")
        return url, {"Content-Type": NOTIFY_CONTENT_TYPE}, body

    def send_notify(self, out_trade_no: str, event: str = "pay") -> tuple[int, str] | None:
        """The notify, retried until our endpoint answers `success`; its first answer (None: the trade has
        no notify_url)."""
        url, headers, body = self.notify(out_trade_no, event)
        if not url:
            return None
        notify = OutgoingNotify(
            record=self._deliveries_key(out_trade_no, event),
            url=url,
            body=body,
            headers=lambda: dict(headers),
            accepted=_accepted,
            alive=lambda: self.trade(out_trade_no) is not None,
        )
        return self._deliver_with_retries(notify, copy=1)

    def send_pay_notify_later(self, out_trade_no: str) -> None:
        """The pay notify from a thread of its own, after the payment (not inside the request that paid,
        which would hold a worker of the server being notified)."""
        self._notify_later(out_trade_no, "pay")

    def _notify_later(self, out_trade_no: str, event: str) -> None:
        def send() -> None:
            try:
                self.send_notify(out_trade_no, event)
            except LookupError:
                logger.warning("sandbox: alipay %s notify of %s not sent", event, out_trade_no, exc_info=True)

        threading.Thread(target=send, daemon=True).start()

    def deliveries(self, out_trade_no: str, event: str = "pay") -> list[dict[str, Any]]:
        """Every attempt to deliver one notify of the trade so far, with our endpoint's answer."""
        value = self.store.get(self._deliveries_key(out_trade_no, event))
        return list(value) if isinstance(value, list) else []

    def _deliveries_key(self, out_trade_no: str, event: str) -> str:
        return self._key(f"delivered:{out_trade_no}:{event}")


_NO_MONEY = {"buyer_pay_amount": "0.00", "point_amount": "0.00", "invoice_amount": "0.00", "receipt_amount": "0.00"}


def _time_expire(biz: Mapping[str, Any]) -> dt.datetime | None:
    """The trade's absolute expiry from time_expire ("yyyy-MM-dd HH:mm:ss", Beijing) or timeout_express
    ("90m", "2h", "1d"); None: none given. ValueError: malformed."""
    if biz.get("time_expire"):
        return dt.datetime.strptime(str(biz["time_expire"]), WIRE_TIME).replace(tzinfo=CHINA)
    express = str(biz.get("timeout_express") or "")
    if not express:
        return None
    match = re.fullmatch(r"([1-9][0-9]{0,4})([mhd])", express)
    if not match:
        raise ValueError("timeout_express")
    unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return _now() + dt.timedelta(**{unit: int(match.group(1))})


def _request_params(request: SandboxRequest) -> dict[str, str]:
    """The query string's and a form body's parameters together, decoded with the request's `charset`."""
    form = "application/x-www-form-urlencoded" in _header(request.headers, "Content-Type").lower()
    body = request.body if form else b""

    def parse(charset: str) -> dict[str, str]:
        def pairs(text: str) -> dict[str, str]:
            return dict(parse_qsl(text, keep_blank_values=True, encoding=charset, errors="replace"))

        query = pairs(request.raw_query) if request.raw_query else dict(request.query)
        return {**query, **pairs(body.decode(charset, errors="replace"))}

    params = parse("utf-8")
    return parse("gbk") if params.get("charset", "").lower() == "gbk" else params


# --- certificate mode ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlipayCertificates:
    """What Alipay's open platform hands an app in certificate mode (PEM): the app's public key certificate
    (appCertPublicKey_*.crt), Alipay's (alipayCertPublicKey_RSA2.crt) and the root bundle (alipayRootCert.crt)."""

    app_cert: str
    alipay_cert: str
    root_bundle: str


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ant Financial Sandbox"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Certification Authority"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: x509.Name,
    public_key: Any,
    issuer: x509.Name,
    issuer_key: Any,
    *,
    ca: bool,
) -> str:
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3 * 365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def issue_certificates(app_private_key_pem: str, alipay_private_key_pem: str) -> AlipayCertificates:
    """A certificate-mode set for the sandbox, built like Alipay's: an RSA root and an RSA class-2 CA (whose
    SNs, joined by `_`, are the root SN) issue the app's and Alipay's certificates; the bundle also holds an
    ECDSA root, which the root SN skips (Alipay's holds SM2 and ECDSA ones)."""

    def private(pem: str) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("certificate mode takes RSA keys")
        return key

    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    class2_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ecdsa_key = ec.generate_private_key(ec.SECP256R1())
    root_name, class2_name = _name("Ant Financial Sandbox Certification Authority R1"), _name("Sandbox Class 2 R1")
    ecdsa_name = _name("Ant Financial Sandbox Certification Authority E1")
    root = _certificate(root_name, root_key.public_key(), root_name, root_key, ca=True)
    class2 = _certificate(class2_name, class2_key.public_key(), root_name, root_key, ca=True)
    ecdsa_root = _certificate(ecdsa_name, ecdsa_key.public_key(), ecdsa_name, ecdsa_key, ca=True)
    app = private(app_private_key_pem).public_key()
    alipay = private(alipay_private_key_pem).public_key()
    return AlipayCertificates(
        app_cert=_certificate(_name("sandbox app"), app, class2_name, class2_key, ca=False),
        alipay_cert=_certificate(_name("支付宝(中国)网络技术有限公司"), alipay, class2_name, class2_key, ca=False),
        # Blank lines between the certificates, as in Alipay's file (some SDKs split on them).
        root_bundle="\n".join([root, ecdsa_root, class2]),
    )
