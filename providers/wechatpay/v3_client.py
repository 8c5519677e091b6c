"""WeChat Pay API v3 client: JSON transactions, queries, close, refunds; verified answers and notifies."""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import quote

import requests

from providers.compare import constant_time_equal
from providers.http import HttpConfig, ProviderError, ProviderUnavailable, send
from providers.wechat.crypto import DecryptError
from providers.wechatpay import v3
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

PATHS = {"JSAPI": "jsapi", "NATIVE": "native", "H5": "h5", "APP": "app"}


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def _amount(data: dict[str, Any], key: str) -> int | None:
    amount = data.get("amount")
    value = amount.get(key) if isinstance(amount, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class WechatPayV3Client:
    version = "V3"
    sign_type = "RSA"

    def __init__(self, config: WechatPayConfig, session: requests.Session, http: HttpConfig) -> None:
        self.config = config
        self.session = session
        self.http = http

    # --- plumbing ----------------------------------------------------------
    def _appid(self, appid: str) -> str:
        """The app a call names: `appid` (one bound to the merchant), or the merchant's default."""
        appid = appid or self.config.appid
        if not self.config.binds(appid):
            raise ProviderError(PROVIDER, "NOT_CONFIGURED", f"appid {appid[:32]!r} is not bound to this merchant")
        return appid

    def verify(self, headers: Any, body: str, *, notify: bool = False) -> bool:
        """Checks a v3 answer or notify: signature type, key by serial, fresh timestamp, signature over
        the raw body.

        `Wechatpay-Signature-Type` names WeChat Pay's algorithm; another one is refused. WeChat Pay
        sends it on every answer and notify, so an answer without it is refused too. A notify without
        it is judged by its signature alone: the header is not signed, so requiring it adds no proof,
        and a refused notify would leave a payment to reconciliation."""
        signature_type = headers.get("Wechatpay-Signature-Type")
        if signature_type != v3.SCHEMA and (signature_type is not None or not notify):
            logger.warning("wechatpay v3: signature type %r refused", str(signature_type)[:40])
            return False
        serial = headers.get("Wechatpay-Serial", "")
        timestamp = headers.get("Wechatpay-Timestamp", "")
        nonce = headers.get("Wechatpay-Nonce", "")
        signature = headers.get("Wechatpay-Signature", "")
        key = self.config.platform_keys.get(serial)
        if key is None:
            logger.warning("wechatpay v3: unknown key serial %s", serial[:64])
            return False
        if not v3.timestamp_fresh(timestamp):
            return False
        return v3.verify_signature(key, timestamp, nonce, body, signature)

    def _headers(self, authorization: str) -> dict[str, str]:
        headers = {"Authorization": authorization, "Accept": "application/json", "Content-Type": "application/json"}
        # In public-key mode the request names the key: WeChat Pay then signs its answer with it, not
        # with a platform certificate we may not have.
        public_key_id = next((key_id for key_id in self.config.platform_keys if key_id.startswith("PUB_KEY_ID_")), "")
        if public_key_id:
            headers["Wechatpay-Serial"] = public_key_id
        return headers

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False) if payload is not None else ""
        authorization = v3.authorization(
            mchid=self.config.mchid,
            serial_no=self.config.cert_serial_no,
            private_key_pem=self.config.private_key_pem,
            method=method,
            url_path=path,
            body=body,
        )
        response = send(
            self.session,
            PROVIDER,
            method,
            self.config.base_url + path,
            self.http,
            data=body.encode("utf-8") if body else None,
            headers=self._headers(authorization),
        )
        text = response.content.decode("utf-8", errors="replace")
        if response.status_code == 202:  # accepted but not done, e.g. closing while the user pays
            raise ProviderError(PROVIDER, "USERPAYING", "the user is paying")
        if response.status_code >= 400:
            try:
                error = json.loads(text)
            except ValueError:
                error = {}
            code = error.get("code", response.status_code) if isinstance(error, dict) else response.status_code
            message = error.get("message", "") if isinstance(error, dict) else ""
            raise ProviderError(PROVIDER, code, str(message))
        if not self.verify(response.headers, text):
            raise ProviderUnavailable(PROVIDER, "answer signature does not verify")
        if not text:
            return {}
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProviderUnavailable(PROVIDER, "unparsable JSON answer") from exc
        if not isinstance(data, dict):
            raise ProviderUnavailable(PROVIDER, "unexpected answer shape")
        return data

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
        payload: dict[str, Any] = {
            "appid": self._appid(appid),
            "mchid": self.config.mchid,
            "description": description[:127],
            "out_trade_no": out_trade_no,
            "time_expire": expires_at.astimezone(CHINA).isoformat(timespec="seconds"),
            "notify_url": notify_url,
            "amount": {"total": amount, "currency": "CNY"},
        }
        if trade_type == "JSAPI":
            payload["payer"] = {"openid": payer_openid}
        if trade_type == "H5":
            payload["scene_info"] = {"payer_client_ip": client_ip, "h5_info": {"type": "Wap"}}
        data = self._request("POST", f"/v3/pay/transactions/{PATHS[trade_type]}", payload)
        return Prepay(
            prepay_id=str(data.get("prepay_id", "")),
            code_url=str(data.get("code_url", "")),
            h5_url=str(data.get("h5_url", "")),
        )

    @staticmethod
    def _trade(data: dict[str, Any]) -> Trade:
        payer = data.get("payer")
        return Trade(
            out_trade_no=str(data.get("out_trade_no", "")),
            state=str(data.get("trade_state", "")),
            appid=str(data.get("appid", "")),
            mchid=str(data.get("mchid", "")),
            amount=_amount(data, "total"),
            transaction_id=str(data.get("transaction_id", "") or ""),
            payer_openid=str(payer.get("openid", "")) if isinstance(payer, dict) else "",
            success_time=_parse_time(data.get("success_time")),
            raw=data,
        )

    @staticmethod
    def _refund(data: dict[str, Any]) -> RefundState:
        return RefundState(
            out_trade_no=str(data.get("out_trade_no", "")),
            out_refund_no=str(data.get("out_refund_no", "")),
            status=str(data.get("status") or data.get("refund_status") or ""),
            refund_id=str(data.get("refund_id", "")),
            amount=_amount(data, "refund"),
            total=_amount(data, "total"),
            mchid=str(data.get("mchid", "")),
            success_time=_parse_time(data.get("success_time")),
            raw=data,
        )

    def query(self, out_trade_no: str) -> Trade:
        path = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}?mchid={self.config.mchid}"
        return self._trade(self._request("GET", path))

    def close(self, out_trade_no: str) -> None:
        path = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/close"
        self._request("POST", path, {"mchid": self.config.mchid})

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, total: int, amount: int, reason: str, notify_url: str
    ) -> RefundState:
        payload = {
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "reason": reason[:80],
            "notify_url": notify_url,
            "amount": {"refund": amount, "total": total, "currency": "CNY"},
        }
        return self._refund(self._request("POST", "/v3/refund/domestic/refunds", payload))

    def query_refund(self, out_refund_no: str, out_trade_no: str = "") -> RefundState:
        """`out_trade_no` is not needed here (Alipay's refund query needs it: one signature for both)."""
        return self._refund(self._request("GET", f"/v3/refund/domestic/refunds/{quote(out_refund_no, safe='')}"))

    # --- front-end parameters ----------------------------------------------
    def jsapi_params(self, prepay_id: str, appid: str = "") -> dict[str, str]:
        """What wx.requestPayment and WeixinJSBridge's getBrandWCPayRequest take; `appid`: the order's app."""
        return v3.jsapi_params(self._appid(appid), prepay_id, self.config.private_key_pem)

    def app_params(self, prepay_id: str) -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        message = f"{self.config.appid}\n{timestamp}\n{nonce}\n{prepay_id}\n"
        return {
            "appid": self.config.appid,
            "partnerid": self.config.mchid,
            "prepayid": prepay_id,
            "package": "Sign=WXPay",
            "noncestr": nonce,
            "timestamp": timestamp,
            "sign": v3.sign_message(self.config.private_key_pem, message),
        }

    # --- notifies ----------------------------------------------------------
    def parse_notify(self, headers: Any, body: bytes) -> Notify:
        """Verifies the raw body and decrypts the resource (a refund's must name our merchant)."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidNotify("body is not UTF-8") from exc
        if not self.verify(headers, text, notify=True):
            raise InvalidNotify("signature type, key serial, timestamp or signature does not verify")
        try:
            envelope = json.loads(text)
            resource = envelope["resource"]
            plain = v3.decrypt_resource(
                self.config.api_v3_key,
                str(resource["nonce"]),
                str(resource["ciphertext"]),
                str(resource.get("associated_data", "")),
            )
            data = json.loads(plain)
        except (ValueError, KeyError, TypeError, DecryptError) as exc:
            raise InvalidNotify(f"resource: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidNotify("resource is not an object")
        event_type = str(envelope.get("event_type", ""))
        event_id = str(envelope.get("id", ""))
        if event_type.startswith("TRANSACTION."):
            # Its mchid and appid are matched with the order by the payments service, which records a
            # payment that names our order with another merchant's ids.
            return Notify(event_id=event_id, trade=self._trade(data))
        if event_type.startswith("REFUND."):
            if not constant_time_equal(data.get("mchid"), self.config.mchid):
                raise InvalidNotify(f"mchid is not ours (refund {str(data.get('out_refund_no', ''))[:64]})")
            return Notify(event_id=event_id, refund=self._refund(data))
        raise InvalidNotify(f"unexpected event_type {event_type[:40]!r}")
