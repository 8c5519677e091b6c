"""WeChat Pay API v2 client: unifiedorder, orderquery, closeorder, refund, refundquery, notifies."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

import requests

from providers.compare import constant_time_equal
from providers.http import HttpConfig, ProviderError, ProviderUnavailable, send
from providers.wechat.crypto import DecryptError
from providers.wechatpay import v2
from providers.wechatpay.types import (
    CHINA,
    PROVIDER,
    InvalidNotify,
    Notify,
    Prepay,
    RefundState,
    Trade,
    TradeType,
    WechatPayConfig,
)

logger = logging.getLogger(__name__)

V2_TRADE_TYPES = {"JSAPI": "JSAPI", "NATIVE": "NATIVE", "H5": "MWEB", "APP": "APP"}
# v2 refund states in the names v3 (and our Refund model) use
V2_REFUND_STATUS = {"SUCCESS": "SUCCESS", "PROCESSING": "PROCESSING", "CHANGE": "ABNORMAL", "REFUNDCLOSE": "CLOSED"}
SUCCESS_ANSWER = b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"


def failure_answer(message: str) -> bytes:
    return v2.to_xml({"return_code": "FAIL", "return_msg": message})


def _parse_time(value: str | None, fmt: str = "%Y%m%d%H%M%S") -> dt.datetime | None:
    """v2 times are Beijing local time: time_end as 20141030133525, refund success_time as 2014-10-30 13:35:25."""
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, fmt).replace(tzinfo=CHINA)
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


class WechatPayV2Client:
    version = "V2"

    def __init__(
        self, config: WechatPayConfig, session: requests.Session, http: HttpConfig, sign_type: str = "HMAC-SHA256"
    ) -> None:
        self.config = config
        self.session = session
        self.http = http
        self.sign_type = sign_type

    # --- plumbing ----------------------------------------------------------
    def _appid(self, appid: str) -> str:
        """The app a call names: `appid` (one bound to the merchant), or the merchant's default."""
        appid = appid or self.config.appid
        if not self.config.binds(appid):
            raise ProviderError(PROVIDER, "NOT_CONFIGURED", f"appid {appid[:32]!r} is not bound to this merchant")
        return appid

    def _post(self, path: str, params: dict[str, Any], *, appid: str = "", cert: bool = False) -> dict[str, str]:
        """Every v2 request names an app (`appid`, default the merchant's), and its answer must name the same."""
        if len(self.config.api_key) != 32:
            raise ProviderError(PROVIDER, "NOT_CONFIGURED", "WeChat Pay v2 needs a 32-character API key")
        appid = self._appid(appid)
        body = {
            "appid": appid,
            "mch_id": self.config.mchid,
            "nonce_str": v2.nonce(),
            "sign_type": self.sign_type,
            **params,
        }
        body["sign"] = v2.sign(body, self.config.api_key, self.sign_type)
        extra: dict[str, Any] = {}
        if cert and self.config.client_cert:
            extra["cert"] = (self.config.client_cert, self.config.client_key)
        response = send(
            self.session,
            PROVIDER,
            "POST",
            self.config.base_url + path,
            self.http,
            data=v2.to_xml(body),
            headers={"Content-Type": "text/xml; charset=utf-8"},
            **extra,
        )
        try:
            answer = v2.parse_xml(response.content)
        except v2.XmlError as exc:
            raise ProviderUnavailable(PROVIDER, "unparsable XML answer") from exc
        if answer.get("return_code") != "SUCCESS":
            raise ProviderError(PROVIDER, "FAIL", answer.get("return_msg", ""))
        # WeChat Pay signs every answer it accepted; an unsigned one is not trusted.
        if not v2.verify(answer, self.config.api_key, self.sign_type):
            raise ProviderUnavailable(PROVIDER, "answer signature missing or wrong")
        if answer.get("appid") != appid or answer.get("mch_id") != self.config.mchid:
            raise ProviderUnavailable(PROVIDER, "answer names another appid or mch_id")
        return answer

    @staticmethod
    def _require_success(answer: Mapping[str, str]) -> None:
        if answer.get("result_code") != "SUCCESS":
            raise ProviderError(PROVIDER, answer.get("err_code", "FAIL"), answer.get("err_code_des", ""))

    # --- calls -------------------------------------------------------------
    def create(
        self,
        *,
        trade_type: TradeType,
        out_trade_no: str,
        description: str,
        amount: int,
        notify_url: str,
        expires_at: dt.datetime,
        payer_openid: str = "",
        client_ip: str = "127.0.0.1",
        appid: str = "",
    ) -> Prepay:
        """`appid`: the app the payer's openid belongs to (JSAPI), default the merchant's."""
        params: dict[str, Any] = {
            "body": description[:128],
            "out_trade_no": out_trade_no,
            "total_fee": amount,
            "spbill_create_ip": client_ip,
            "notify_url": notify_url,
            "trade_type": V2_TRADE_TYPES[trade_type],
            "time_expire": expires_at.astimezone(CHINA).strftime("%Y%m%d%H%M%S"),
        }
        if trade_type == "JSAPI":
            params["openid"] = payer_openid
        if trade_type == "H5":
            params["scene_info"] = '{"h5_info": {"type": "Wap"}}'
        answer = self._post("/pay/unifiedorder", params, appid=appid)
        self._require_success(answer)
        return Prepay(
            prepay_id=answer.get("prepay_id", ""),
            code_url=answer.get("code_url", ""),
            h5_url=answer.get("mweb_url", ""),
        )

    def _trade(self, data: Mapping[str, str], state: str) -> Trade:
        return Trade(
            out_trade_no=data.get("out_trade_no", ""),
            state=state,
            appid=data.get("appid", ""),
            mchid=data.get("mch_id", ""),
            amount=_int(data.get("total_fee")),
            transaction_id=data.get("transaction_id", ""),
            payer_openid=data.get("openid", ""),
            success_time=_parse_time(data.get("time_end")),
            raw=dict(data),
        )

    def query(self, out_trade_no: str, *, appid: str = "") -> Trade:
        answer = self._post("/pay/orderquery", {"out_trade_no": out_trade_no}, appid=appid)
        self._require_success(answer)
        return self._trade(answer, answer.get("trade_state", ""))

    def close(self, out_trade_no: str, *, appid: str = "") -> None:
        answer = self._post("/pay/closeorder", {"out_trade_no": out_trade_no}, appid=appid)
        if answer.get("result_code") != "SUCCESS" and answer.get("err_code") != "ORDERCLOSED":
            self._require_success(answer)

    def refund(
        self,
        *,
        out_trade_no: str,
        out_refund_no: str,
        total: int,
        amount: int,
        reason: str,
        notify_url: str,
        appid: str = "",
    ) -> RefundState:
        params = {
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "total_fee": total,
            "refund_fee": amount,
            "refund_desc": reason[:80],
            "notify_url": notify_url,
        }
        answer = self._post("/secapi/pay/refund", params, appid=appid, cert=True)
        self._require_success(answer)
        return RefundState(
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
            status="PROCESSING",
            refund_id=answer.get("refund_id", ""),
            amount=_int(answer.get("refund_fee")),
            total=_int(answer.get("total_fee")),
            raw=answer,
        )

    def query_refund(self, out_refund_no: str, out_trade_no: str = "", *, appid: str = "") -> RefundState:
        """`out_trade_no` is not needed here (Alipay's refund query needs it: one signature for both)."""
        answer = self._post("/pay/refundquery", {"out_refund_no": out_refund_no}, appid=appid)
        self._require_success(answer)
        return RefundState(
            out_trade_no=answer.get("out_trade_no", ""),
            out_refund_no=answer.get("out_refund_no_0", out_refund_no),
            status=V2_REFUND_STATUS.get(answer.get("refund_status_0", ""), answer.get("refund_status_0", "")),
            refund_id=answer.get("refund_id_0", ""),
            amount=_int(answer.get("refund_fee_0")),
            total=_int(answer.get("total_fee")),
            raw=answer,
        )

    # --- front-end parameters ----------------------------------------------
    def jsapi_params(self, prepay_id: str, appid: str = "") -> dict[str, str]:
        """What wx.requestPayment and WeixinJSBridge's getBrandWCPayRequest take; `appid`: the order's app."""
        return v2.jsapi_params(self._appid(appid), prepay_id, self.config.api_key, self.sign_type)

    def app_params(self, prepay_id: str) -> dict[str, str]:
        params = {
            "appid": self.config.appid,
            "partnerid": self.config.mchid,
            "prepayid": prepay_id,
            "package": "Sign=WXPay",
            "noncestr": v2.nonce(),
            "timestamp": str(int(time.time())),
        }
        params["sign"] = v2.sign(params, self.config.api_key, self.sign_type)
        return params

    # --- notifies ----------------------------------------------------------
    def _notify_fields(self, body: bytes | dict[str, str]) -> dict[str, str]:
        """The notify's fields, unverified: callers verify before trusting any of them.

        `body` is the raw XML, or what `v2.parse_xml` made of it (a caller that already read it).
        """
        if len(self.config.api_key) != 32:
            raise InvalidNotify("WeChat Pay v2 is not configured")
        if isinstance(body, dict):
            return self._succeeded(body)
        try:
            data = v2.parse_xml(body)
        except v2.XmlError as exc:
            raise InvalidNotify(str(exc)) from exc
        return self._succeeded(data)

    @staticmethod
    def _succeeded(data: dict[str, str]) -> dict[str, str]:
        if data.get("return_code") != "SUCCESS":
            raise InvalidNotify("return_code is not SUCCESS")
        return data

    def parse_pay_notify(self, body: bytes | dict[str, str], sign_type: str) -> Notify:
        """Verifies a pay notify with `sign_type`; a notify that names another type is refused."""
        data = self._notify_fields(body)
        # Verified with the order's sign type; a notify naming another one is refused, not obeyed.
        if data.get("sign_type", sign_type) != sign_type or not v2.verify(data, self.config.api_key, sign_type):
            raise InvalidNotify("signature does not verify")
        # Its appid and mch_id are matched with the order by the payments service, which records a
        # payment that names our order with another merchant's ids.
        state = "SUCCESS" if data.get("result_code") == "SUCCESS" else "PAYERROR"  # applied as no change
        trade = self._trade(data, state)
        return Notify(event_id=f"pay:{trade.transaction_id or trade.out_trade_no}", trade=trade)

    def parse_refund_notify(self, body: bytes) -> Notify:
        data = self._notify_fields(body)
        self._check_ids(data)
        try:
            info = v2.decrypt_refund_info(data.get("req_info", ""), self.config.api_key)
        except DecryptError as exc:
            # req_info is the only authentication a v2 refund notify has.
            raise InvalidNotify(f"req_info: {exc}") from exc
        status = V2_REFUND_STATUS.get(info.get("refund_status", ""), "")
        refund = RefundState(
            out_trade_no=info.get("out_trade_no", ""),
            out_refund_no=info.get("out_refund_no", ""),
            status=status,
            refund_id=info.get("refund_id", ""),
            amount=_int(info.get("refund_fee")),
            total=_int(info.get("total_fee")),
            appid=data.get("appid", ""),
            mchid=data.get("mch_id", ""),
            success_time=_parse_time(info.get("success_time"), "%Y-%m-%d %H:%M:%S"),
            raw=info,
        )
        return Notify(event_id=f"refund:{refund.refund_id}:{status}", refund=refund)

    def _check_ids(self, data: Mapping[str, str]) -> None:
        """One of our apps and our merchant (the payments service matches the app with the refund's order)."""
        if not self.config.binds(data.get("appid", "")) or not constant_time_equal(
            data.get("mch_id"), self.config.mchid
        ):
            raise InvalidNotify("appid or mch_id is not ours")
