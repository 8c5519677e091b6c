"""Alipay's open API client: the payer-facing pay URLs and order strings, and the calls the payments
service makes of every provider (query, close, refund, query_refund, notifies), in providers.trades' shapes.

CONTRACT (payments/ and the sandbox are written against it; keep the names and types):
- Amounts in and out are integer fen; `total_amount` / `refund_amount` on the wire are Decimal yuan
  with two places ("18.00"), never floats. An answer's or a notify's amount that is not a non-negative
  number with at most two decimals ("18", "18.5", "18.00") is refused (ProviderUnavailable / InvalidNotify).
- Times on the wire are Asia/Shanghai (`timestamp` "yyyy-MM-dd HH:mm:ss", `time_expire` the same).
- Trade.state in our words: WAIT_BUYER_PAY -> "NOTPAY"; TRADE_SUCCESS / TRADE_FINISHED -> "SUCCESS";
  TRADE_CLOSED -> "REFUND" when it had been paid (the query answer has no paid flag: a closed trade with a
  trade_no and a `send_pay_date` was paid, so it closed by a full refund), else "CLOSED". A pay notify's
  TRADE_CLOSED is "CLOSED" (a full refund's TRADE_CLOSED notify carries out_biz_no and is a refund).
- An order Alipay never saw: query raises ProviderError("ACQ.TRADE_NOT_EXIST") (the payments service
  reads that code as "not found"); close returns None (nothing to close).
- Trade.appid = app_id, Trade.mchid = seller_id, Trade.transaction_id = trade_no, Trade.payer_openid =
  buyer_open_id or buyer_id (the query's buyer_user_id), Trade.amount = total_amount in fen. A query answer
  names neither app nor seller: it answers our signed request, so they are the configured ones.
- RefundState.out_refund_no is our out_request_no; status "SUCCESS" once the money moved (fund_change=Y
  on the refund answer, else what the refund query says; refund_status=REFUND_SUCCESS on the query), else
  "PROCESSING" (also when the query right after a fund_change=N answer does not have the refund yet).
  Alipay numbers no refund: refund_id is the trade's trade_no. refund() reports the amount
  asked for (its answer's refund_fee is the trade's cumulative refund); query_refund reports the refund's.
- query_refund of a refund Alipay does not have (code 10000 with no refund fields) raises
  ProviderError("ACQ.TRADE_NOT_EXIST"): the payments service then sends the same refund again (same
  out_request_no, so Alipay refunds at most once).
- A refund notify (out_biz_no and refund_fee present) is Notify.refund with status "SUCCESS" and amount None
  (refund_fee is cumulative); any other notify is Notify.trade.
- ProviderError(errcode=sub_code or code, errmsg=sub_msg or msg) when Alipay answers with a business
  error; ProviderUnavailable for transport failures, 5xx, an unparsable or unverifiable answer, and in
  certificate mode an answer naming another `alipay_cert_sn`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import requests

from providers.alipay import signing
from providers.compare import constant_time_equal
from providers.http import HttpConfig, ProviderError, ProviderUnavailable, send
from providers.rsa import verify_sha256
from providers.trades import InvalidNotify, Notify, RefundState, Trade

PROVIDER = "alipay"
GATEWAY = "https://openapi.alipay.com/gateway.do"
SANDBOX_GATEWAY = "https://openapi-sandbox.dl.alipaydev.com/gateway.do"
CHINA = dt.timezone(dt.timedelta(hours=8))
WIRE_TIME = "%Y-%m-%d %H:%M:%S"
SUCCESS_CODE = "10000"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
RETURN_METHODS = ("alipay.trade.page.pay.return", "alipay.trade.wap.pay.return")
TRADE_STATES = {"WAIT_BUYER_PAY": "NOTPAY", "TRADE_SUCCESS": "SUCCESS", "TRADE_FINISHED": "SUCCESS"}
_YUAN = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,2})?")

logger = logging.getLogger(__name__)


def now() -> dt.datetime:
    """The request `timestamp`'s clock (tests replace it)."""
    return dt.datetime.now(CHINA)


def yuan(amount: int) -> str:
    """Integer fen as Alipay's yuan string with two places: 1800 -> "18.00"."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError("an amount is a non-negative integer of fen")
    whole, cents = divmod(amount, 100)  # integer arithmetic: no float ever sees the amount
    return f"{whole}.{cents:02d}"


def fen(value: object) -> int:
    """Alipay's yuan string as integer fen ("18" and "18.00" -> 1800); ValueError for anything else."""
    if not isinstance(value, str) or not _YUAN.fullmatch(value):
        raise ValueError("not a yuan amount with at most two decimals")
    return int(Decimal(value) * 100)


def wire_time(moment: dt.datetime) -> str:
    """An aware datetime as Alipay's Asia/Shanghai "yyyy-MM-dd HH:mm:ss"."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a time sent to Alipay must be timezone-aware")
    return moment.astimezone(CHINA).strftime(WIRE_TIME)


def _parse_time(value: object) -> dt.datetime | None:
    """Alipay's Asia/Shanghai times ("2015-04-27 15:45:57", gmt_refund's "2015-04-28 15:45:57.320")."""
    if not isinstance(value, str) or not value:
        return None
    for pattern in (WIRE_TIME, WIRE_TIME + ".%f"):
        try:
            return dt.datetime.strptime(value, pattern).replace(tzinfo=CHINA)
        except ValueError:
            continue
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class AlipayConfig:
    app_id: str
    private_key_pem: str  # the app's private key (signs requests)
    # verifies answers, notifies and returns (cert mode: the Alipay public certificate's key)
    alipay_public_key_pem: str
    seller_id: str = ""  # the merchant's PID (2088...), checked on notifies
    gateway: str = GATEWAY
    # Certificate mode: all three set (providers.alipay.certs computes them from the PEMs).
    app_cert_sn: str = ""
    alipay_root_cert_sn: str = ""
    alipay_cert_sn: str = ""  # the Alipay public certificate's SN, which answers name

    @property
    def cert_mode(self) -> bool:
        return bool(self.app_cert_sn)

    def __repr__(self) -> str:  # keys never reach a log line
        return f"AlipayConfig(app_id={self.app_id!r}, seller_id={self.seller_id!r}, gateway={self.gateway!r})"


class AlipayClient:
    provider = PROVIDER

    def __init__(self, config: AlipayConfig, session: requests.Session, http: HttpConfig) -> None:
        self.config = config
        self.session = session
        self.http = http

    # --- what the payer opens (no call to Alipay) ------------------------------------------------------
    def page_pay_url(
        self, *, out_trade_no: str, total: int, subject: str, return_url: str, notify_url: str, time_expire: dt.datetime
    ) -> str:
        """alipay.trade.page.pay (FAST_INSTANT_TRADE_PAY): the signed gateway URL the browser opens (GET)."""
        biz = self._order(out_trade_no, total, subject, "FAST_INSTANT_TRADE_PAY", time_expire)
        params = self._signed("alipay.trade.page.pay", biz, notify_url=notify_url, return_url=return_url)
        return self._url(params)

    def wap_pay_url(
        self,
        *,
        out_trade_no: str,
        total: int,
        subject: str,
        return_url: str,
        notify_url: str,
        time_expire: dt.datetime,
        quit_url: str,
    ) -> str:
        """alipay.trade.wap.pay (QUICK_WAP_WAY): the signed gateway URL a phone browser opens."""
        biz = self._order(out_trade_no, total, subject, "QUICK_WAP_WAY", time_expire)
        if quit_url:
            biz["quit_url"] = quit_url
        params = self._signed("alipay.trade.wap.pay", biz, notify_url=notify_url, return_url=return_url)
        return self._url(params)

    def app_order_string(
        self, *, out_trade_no: str, total: int, subject: str, notify_url: str, time_expire: dt.datetime
    ) -> str:
        """alipay.trade.app.pay: the signed, URL-encoded order string the Alipay SDK takes."""
        biz = self._order(out_trade_no, total, subject, "QUICK_MSECURITY_PAY", time_expire)
        return self._encoded(self._signed("alipay.trade.app.pay", biz, notify_url=notify_url))

    def precreate(
        self, *, out_trade_no: str, total: int, subject: str, notify_url: str, time_expire: dt.datetime
    ) -> str:
        """alipay.trade.precreate: the `qr_code` the payer scans (a call to Alipay)."""
        biz: dict[str, object] = {
            "out_trade_no": out_trade_no,
            "total_amount": yuan(total),
            "subject": subject,
            "time_expire": wire_time(time_expire),
        }
        answer = self._call("alipay.trade.precreate", biz, notify_url=notify_url)
        self._same_order(answer, out_trade_no, "alipay.trade.precreate")
        qr_code = _text(answer.get("qr_code"))
        if not qr_code:
            raise self._unusable("alipay.trade.precreate", "answer has no qr_code")
        return qr_code

    # --- what payments.services asks of every provider --------------------------------------------------
    def query(self, out_trade_no: str) -> Trade:
        """alipay.trade.query; an order Alipay never saw raises ProviderError("ACQ.TRADE_NOT_EXIST")."""
        method = "alipay.trade.query"
        answer = self._call(method, {"out_trade_no": out_trade_no})
        self._same_order(answer, out_trade_no, method)
        status = _text(answer.get("trade_status"))
        if status == "TRADE_CLOSED":
            # No paid flag on a closed trade: a payment date means it was paid, then fully refunded.
            paid = bool(_text(answer.get("trade_no")) and _text(answer.get("send_pay_date")))
            state = "REFUND" if paid else "CLOSED"
        elif status in TRADE_STATES:
            state = TRADE_STATES[status]
        else:
            raise self._unusable(method, f"unknown trade_status {status[:32]!r}")
        try:
            amount = fen(answer.get("total_amount"))
        except ValueError as exc:
            raise self._unusable(method, "total_amount is not a yuan amount") from exc
        return Trade(
            out_trade_no=out_trade_no,
            state=state,
            appid=self.config.app_id,  # the answer names no app: it answers our app's signed request
            mchid=_text(answer.get("seller_id")) or self.config.seller_id,
            amount=amount,
            transaction_id=_text(answer.get("trade_no")),
            payer_openid=_text(answer.get("buyer_open_id")) or _text(answer.get("buyer_user_id")),
            success_time=_parse_time(answer.get("send_pay_date")),
            raw=answer,
        )

    def close(self, out_trade_no: str) -> None:
        """alipay.trade.close; an order Alipay never saw (ACQ.TRADE_NOT_EXIST) needs no closing."""
        try:
            self._call("alipay.trade.close", {"out_trade_no": out_trade_no})
        except ProviderError as exc:
            if exc.errcode != TRADE_NOT_EXIST:
                raise

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, total: int, amount: int, reason: str, notify_url: str
    ) -> RefundState:
        """alipay.trade.refund with out_request_no = out_refund_no (so a retry is the same refund).

        Only fund_change=Y says the money moved (code 10000 does not): otherwise the refund query decides."""
        method = "alipay.trade.refund"
        biz: dict[str, object] = {
            "out_trade_no": out_trade_no,
            "refund_amount": yuan(amount),
            "out_request_no": out_refund_no,
        }
        if reason:
            biz["refund_reason"] = reason
        answer = self._call(method, biz, notify_url=notify_url)
        self._same_order(answer, out_trade_no, method)
        if _text(answer.get("fund_change")) != "Y":
            try:
                return self.query_refund(out_refund_no, out_trade_no)
            except ProviderError as exc:
                if exc.errcode != TRADE_NOT_EXIST:
                    raise
                # Alipay accepted it but its query lags (it asks for ~10 s): in flight, never "no such refund".
                return RefundState(
                    out_trade_no=out_trade_no,
                    out_refund_no=out_refund_no,
                    status="PROCESSING",
                    refund_id=_text(answer.get("trade_no")),
                    amount=amount,
                    total=total,
                    appid=self.config.app_id,
                    mchid=self.config.seller_id,
                    raw=answer,
                )
        return RefundState(
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
            status="SUCCESS",
            refund_id=_text(answer.get("trade_no")),  # Alipay numbers no refund: the trade's number
            amount=amount,  # the answer's refund_fee is the trade's cumulative refund, not this one
            total=total,
            appid=self.config.app_id,
            mchid=self.config.seller_id,
            success_time=_parse_time(answer.get("gmt_refund_pay")),
            raw=answer,
        )

    def query_refund(self, out_refund_no: str, out_trade_no: str = "") -> RefundState:
        """alipay.trade.fastpay.refund.query (it needs the order's number too). A refund Alipay does not
        have (10000 without refund fields) raises ProviderError("ACQ.TRADE_NOT_EXIST"): resending the same
        out_request_no is then safe."""
        method = "alipay.trade.fastpay.refund.query"
        biz: dict[str, object] = {
            "out_trade_no": out_trade_no,
            "out_request_no": out_refund_no,
            "query_options": ["gmt_refund_pay"],
        }
        answer = self._call(method, biz)
        if "refund_amount" not in answer:
            raise ProviderError(PROVIDER, TRADE_NOT_EXIST, "Alipay has no such refund")
        self._same_order(answer, out_trade_no, method)
        answered_request = _text(answer.get("out_request_no"))
        if answered_request and answered_request != out_refund_no:
            raise self._unusable(method, "answer names another out_request_no")
        try:
            amount = fen(answer.get("refund_amount"))
            total = fen(answer["total_amount"]) if "total_amount" in answer else None
        except ValueError as exc:
            raise self._unusable(method, "refund_amount or total_amount is not a yuan amount") from exc
        success = _text(answer.get("refund_status")) == "REFUND_SUCCESS"
        return RefundState(
            out_trade_no=_text(answer.get("out_trade_no")) or out_trade_no,
            out_refund_no=out_refund_no,
            status="SUCCESS" if success else "PROCESSING",
            refund_id=_text(answer.get("trade_no")),
            amount=amount,
            total=total,
            appid=self.config.app_id,
            mchid=self.config.seller_id,
            success_time=_parse_time(answer.get("gmt_refund_pay")) if success else None,
            raw=answer,
        )

    def parse_notify(self, form: Mapping[str, str]) -> Notify:
        """A verified asynchronous notify (a plain dict of the form): event_id = notify_id; `trade` for a
        payment or a close, `refund` (out_refund_no = out_biz_no, SUCCESS) for a refund's notify
        (refund_fee present). InvalidNotify when the signature is not Alipay's or it is malformed."""
        fields = self._verified_form(form, "notify")
        missing = [name for name in ("notify_id", "out_trade_no", "trade_status", "app_id") if not fields.get(name)]
        if missing:
            raise InvalidNotify(f"notify lacks {', '.join(missing)}")
        try:
            total = fen(fields.get("total_amount"))
        except ValueError as exc:
            raise InvalidNotify("total_amount is not a yuan amount") from exc
        out_trade_no = fields["out_trade_no"]
        if fields.get("out_biz_no") and fields.get("refund_fee"):
            # A refund names no order of ours to match its ids with (the service matches a payment's):
            # it must be for our app and, when configured, our seller.
            if not constant_time_equal(fields["app_id"], self.config.app_id) or (
                self.config.seller_id and not constant_time_equal(fields.get("seller_id"), self.config.seller_id)
            ):
                raise InvalidNotify(f"refund notify of {out_trade_no[:64]} names another app or seller")
            try:
                fen(fields["refund_fee"])
            except ValueError as exc:
                raise InvalidNotify("refund_fee is not a yuan amount") from exc
            refund = RefundState(
                out_trade_no=out_trade_no,
                out_refund_no=fields["out_biz_no"],
                status="SUCCESS",
                refund_id=fields.get("trade_no", ""),
                amount=None,  # refund_fee is the trade's cumulative refund, not this refund's
                total=total,
                appid=fields["app_id"],
                mchid=fields.get("seller_id", ""),
                success_time=_parse_time(fields.get("gmt_refund")),
                raw=fields,
            )
            return Notify(event_id=fields["notify_id"], refund=refund)
        status = fields["trade_status"]
        if status == "TRADE_CLOSED":
            state = "CLOSED"
        elif status in TRADE_STATES:
            state = TRADE_STATES[status]
        else:
            raise InvalidNotify(f"unknown trade_status {status[:32]!r}")
        # Its app_id and seller_id are matched with the order by the payments service, which records a
        # payment that names our order with another merchant's ids.
        trade = Trade(
            out_trade_no=out_trade_no,
            state=state,
            appid=fields["app_id"],
            mchid=fields.get("seller_id", ""),
            amount=total,
            transaction_id=fields.get("trade_no", ""),
            payer_openid=fields.get("buyer_open_id") or fields.get("buyer_id", ""),
            success_time=_parse_time(fields.get("gmt_payment")),
            raw=fields,
        )
        return Notify(event_id=fields["notify_id"], trade=trade)

    def verify_return(self, params: Mapping[str, str]) -> str:
        """The out_trade_no of a verified return redirect (alipay.trade.page.pay.return /
        alipay.trade.wap.pay.return); InvalidNotify otherwise."""
        # The documented rule leaves sign_type out; returns signed by Alipay's own sandbox keep it in
        # (tests/providers/alipay/vectors/SOURCES.md). Either way the whole redirect is Alipay's.
        fields = self._verified_form(params, "return", sign_type_signed_too=True)
        if not constant_time_equal(fields.get("app_id"), self.config.app_id):
            raise InvalidNotify("return names another app")
        if fields.get("method") not in RETURN_METHODS:
            raise InvalidNotify("not a pay return (its method is not page or WAP pay's return)")
        out_trade_no = fields.get("out_trade_no", "")
        if not out_trade_no:
            raise InvalidNotify("return has no out_trade_no")
        return out_trade_no

    # --- plumbing ---------------------------------------------------------------------------------------
    @staticmethod
    def _order(
        out_trade_no: str, total: int, subject: str, product_code: str, time_expire: dt.datetime
    ) -> dict[str, object]:
        return {
            "subject": subject,
            "out_trade_no": out_trade_no,
            "total_amount": yuan(total),
            "product_code": product_code,
            "time_expire": wire_time(time_expire),
        }

    def _signed(self, method: str, biz: Mapping[str, object], **optional: str) -> dict[str, str]:
        """The common parameters, `biz_content` and `sign` of one request."""
        params = {
            "app_id": self.config.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": signing.SIGN_TYPE,
            "timestamp": now().astimezone(CHINA).strftime(WIRE_TIME),
            "version": "1.0",
            **{name: value for name, value in optional.items() if value},
            "biz_content": signing.compact_json(biz),
        }
        if self.config.cert_mode:
            params["app_cert_sn"] = self.config.app_cert_sn
            params["alipay_root_cert_sn"] = self.config.alipay_root_cert_sn
        params["sign"] = signing.sign(params, self.config.private_key_pem)
        return params

    @staticmethod
    def _encoded(params: Mapping[str, str]) -> str:
        """`k=v&...` URL-encoded, sorted, `sign` last (the order python-alipay-sdk writes)."""
        return urlencode([*sorted((k, v) for k, v in params.items() if k != "sign"), ("sign", params["sign"])])

    def _url(self, params: Mapping[str, str]) -> str:
        gateway = self.config.gateway
        return gateway + ("&" if "?" in gateway else "?") + self._encoded(params)

    def _unusable(self, method: str, reason: str) -> ProviderUnavailable:
        logger.warning("alipay %s: %s", method, reason)
        return ProviderUnavailable(PROVIDER, f"{method}: {reason}")

    def _call(self, method: str, biz: Mapping[str, object], *, notify_url: str = "") -> dict[str, Any]:
        """POSTs one signed request; the verified `<method>_response` of a code 10000 answer."""
        params = self._signed(method, biz, notify_url=notify_url)
        response = send(
            self.session,
            PROVIDER,
            "POST",
            self.config.gateway,
            self.http,
            data=self._encoded(params).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
        )
        if response.status_code != 200:
            raise self._unusable(method, f"HTTP {response.status_code}")
        try:
            text = response.content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._unusable(method, "answer is not UTF-8") from exc
        answer = self._verified_answer(text, method)
        code = str(answer.get("code", ""))
        if code != SUCCESS_CODE:
            errcode = _text(answer.get("sub_code")) or code or "UNKNOWN"
            errmsg = _text(answer.get("sub_msg")) or _text(answer.get("msg"))
            raise ProviderError(PROVIDER, errcode, errmsg)
        return answer

    def _verified_answer(self, text: str, method: str) -> dict[str, Any]:
        if self.config.cert_mode:
            try:
                whole = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise self._unusable(method, "unparsable answer") from exc
            named = whole.get("alipay_cert_sn") if isinstance(whole, dict) else None
            # Absent on some gateway errors; when present it names the certificate that signed.
            if named is not None and named != self.config.alipay_cert_sn:
                raise self._unusable(method, f"answer signed with another certificate ({str(named)[:40]!r})")
        try:
            return signing.verify_response(text, method, self.config.alipay_public_key_pem)
        except signing.ResponseError as exc:
            raise self._unusable(method, f"unusable answer: {exc}{self._unsigned_code(text, method)}") from exc

    @staticmethod
    def _unsigned_code(text: str, method: str) -> str:
        """The code of an answer that did not verify, for the log only (gateway errors come unsigned)."""
        try:
            part, _ = signing.signed_part(text, method)
            answer = json.loads(part)
        except (signing.ResponseError, ValueError, RecursionError):
            return ""
        if not isinstance(answer, dict):
            return ""
        return f" (unverified code {str(answer.get('code', ''))[:8]!r} {str(answer.get('sub_code', ''))[:64]!r})"

    def _same_order(self, answer: Mapping[str, Any], out_trade_no: str, method: str) -> None:
        named = answer.get("out_trade_no")
        if named is not None and out_trade_no and named != out_trade_no:
            raise self._unusable(method, "answer names another out_trade_no")

    def _verified_form(
        self, form: Mapping[str, str], what: str, *, sign_type_signed_too: bool = False
    ) -> dict[str, str]:
        """A notify's or a return's parameters, once their `sign` proves them Alipay's (a notify's with
        sign_type left out of the signed string; `sign_type_signed_too` also takes it left in)."""
        fields = dict(form)
        if not all(isinstance(name, str) and isinstance(value, str) for name, value in fields.items()):
            raise InvalidNotify(f"{what} parameters must be text")
        if fields.get("sign_type", signing.SIGN_TYPE) != signing.SIGN_TYPE:
            raise InvalidNotify(f"{what} sign_type is not {signing.SIGN_TYPE}")
        if not signing.verify(fields, self.config.alipay_public_key_pem) and not (
            sign_type_signed_too
            and "sign_type" in fields
            and verify_sha256(self.config.alipay_public_key_pem, signing.sign_content(fields), fields.get("sign", ""))
        ):
            logger.warning(
                "alipay %s: signature missing or not Alipay's (out_trade_no %s)",
                what,
                fields.get("out_trade_no", "")[:64],
            )
            raise InvalidNotify(f"{what} signature missing or not Alipay's")
        return fields
