"""Alipay's open API client: the payer-facing pay URLs and order strings, and the calls the payments
service makes of every provider (query, close, refund, query_refund, notifies), in providers.trades' shapes.

CONTRACT (payments/ and the sandbox are written against it; keep the names and types):
- Amounts in and out are integer fen; `total_amount` / `refund_amount` on the wire are Decimal yuan
  with two places ("18.00"), never floats.
- Times on the wire are Asia/Shanghai (`timestamp` "yyyy-MM-dd HH:mm:ss", `time_expire` the same).
- Trade.state in our words: WAIT_BUYER_PAY and an order Alipay never saw (ACQ.TRADE_NOT_EXIST) ->
  "NOTPAY"; TRADE_SUCCESS / TRADE_FINISHED -> "SUCCESS"; TRADE_CLOSED -> "REFUND" when it had been paid
  (fully refunded), else "CLOSED". Trade.appid = app_id, Trade.mchid = seller_id, Trade.transaction_id =
  trade_no, Trade.payer_openid = buyer_open_id or buyer_id, Trade.amount = total_amount in fen.
- RefundState.out_refund_no is our out_request_no; status "SUCCESS" once the money moved (fund_change=Y
  on the refund answer, refund_status=REFUND_SUCCESS on the query), else "PROCESSING".
- ProviderError(errcode=sub_code or code, errmsg=sub_msg or msg) when Alipay answers with a business
  error; ProviderUnavailable for transport failures, 5xx, an unparsable or unverifiable answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import requests

from providers.http import HttpConfig
from providers.trades import Notify, RefundState, Trade

PROVIDER = "alipay"
GATEWAY = "https://openapi.alipay.com/gateway.do"
SANDBOX_GATEWAY = "https://openapi-sandbox.dl.alipaydev.com/gateway.do"
CHINA = dt.timezone(dt.timedelta(hours=8))


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
        raise NotImplementedError

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
        raise NotImplementedError

    def app_order_string(
        self, *, out_trade_no: str, total: int, subject: str, notify_url: str, time_expire: dt.datetime
    ) -> str:
        """alipay.trade.app.pay: the signed, URL-encoded order string the Alipay SDK takes."""
        raise NotImplementedError

    def precreate(
        self, *, out_trade_no: str, total: int, subject: str, notify_url: str, time_expire: dt.datetime
    ) -> str:
        """alipay.trade.precreate: the `qr_code` the payer scans (a call to Alipay)."""
        raise NotImplementedError

    # --- what payments.services asks of every provider --------------------------------------------------
    def query(self, out_trade_no: str) -> Trade:
        """alipay.trade.query."""
        raise NotImplementedError

    def close(self, out_trade_no: str) -> None:
        """alipay.trade.close; an order Alipay never saw (ACQ.TRADE_NOT_EXIST) needs no closing."""
        raise NotImplementedError

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, total: int, amount: int, reason: str, notify_url: str
    ) -> RefundState:
        """alipay.trade.refund with out_request_no = out_refund_no (so a retry is the same refund)."""
        raise NotImplementedError

    def query_refund(self, out_refund_no: str, out_trade_no: str = "") -> RefundState:
        """alipay.trade.fastpay.refund.query (it needs the order's number too)."""
        raise NotImplementedError

    def parse_notify(self, form: Mapping[str, str]) -> Notify:
        """A verified asynchronous notify (a plain dict of the form): event_id = notify_id; `trade` for a
        payment or a close, `refund` (out_refund_no = out_biz_no, SUCCESS) for a refund's notify
        (refund_fee present). InvalidNotify when the signature is not Alipay's or it is malformed."""
        raise NotImplementedError

    def verify_return(self, params: Mapping[str, str]) -> str:
        """The out_trade_no of a verified return redirect (alipay.trade.page.pay.return /
        alipay.trade.wap.pay.return); InvalidNotify otherwise."""
        raise NotImplementedError
