"""WeChat Pay (v2 and v3) as the sandbox serves it: signed answers, order state, cashier, notifies, refunds.

It verifies what we send exactly as WeChat Pay does (v2 `sign` with the API key, v3
`Authorization` with the merchant's public key) and signs what it sends (v2 with the
API key and the order's sign type, v3 with the platform key named by its serial).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from providers.sandbox.core import Sandbox, SandboxRequest, SandboxResponse, Store, locked
from providers.wechatpay import v2, v3
from providers.wechatpay.types import CHINA

logger = logging.getLogger(__name__)

ORDER_TTL = 7 * 24 * 3600
# (status, body) of our notify endpoint's answer
Deliver = Callable[[str, dict[str, str], bytes], tuple[int, str]]


@dataclass(frozen=True)
class SandboxMerchant:
    appid: str
    mchid: str
    api_key: str
    api_v3_key: str
    merchant_public_key: str  # verifies our v3 requests
    platform_private_key: str  # signs v3 answers and notifies
    platform_key_id: str  # Wechatpay-Serial: a PUB_KEY_ID_... or a certificate serial


def _now_china() -> dt.datetime:
    return dt.datetime.now(CHINA).replace(microsecond=0)


def _v2_error(message: str) -> SandboxResponse:
    return SandboxResponse(200, v2.to_xml({"return_code": "FAIL", "return_msg": message}), {"Content-Type": "text/xml"})


class WechatPaySimulator:
    name = "wechatpay"

    def __init__(self, store: Store, merchant: SandboxMerchant, sandbox: Sandbox, deliver: Deliver) -> None:
        self.store = store
        self.m = merchant
        self.sandbox = sandbox
        self.deliver = deliver
        # Refund notifies follow the refund answer on a thread, as WeChat Pay's come later.
        self.auto_refund_notify = True

    # --- state -------------------------------------------------------------------
    def _locked(self, number: str) -> contextlib.AbstractContextManager[None]:
        """Held while an order or refund is read and changed: concurrent requests take turns."""
        return locked(self.store, f"sbx:wxp:lock:{self.m.mchid}:{number}")

    def _key(self, out_trade_no: str) -> str:
        return f"sbx:wxp:order:{self.m.mchid}:{out_trade_no}"

    def order(self, out_trade_no: str) -> dict[str, Any] | None:
        value = self.store.get(self._key(out_trade_no))
        return dict(value) if isinstance(value, dict) else None

    def _save(self, order: dict[str, Any]) -> None:
        self.store.set(self._key(order["out_trade_no"]), order, ORDER_TTL)

    def refund(self, out_refund_no: str) -> dict[str, Any] | None:
        value = self.store.get(f"sbx:wxp:refund:{self.m.mchid}:{out_refund_no}")
        return dict(value) if isinstance(value, dict) else None

    def _save_refund(self, refund: dict[str, Any]) -> None:
        self.store.set(f"sbx:wxp:refund:{self.m.mchid}:{refund['out_refund_no']}", refund, ORDER_TTL)

    def orders_created(self) -> int:
        return int(self.store.get(f"sbx:wxp:created:{self.m.mchid}") or 0)

    def _count_created(self) -> None:
        self.store.add(f"sbx:wxp:created:{self.m.mchid}", 0, None)
        self.store.incr(f"sbx:wxp:created:{self.m.mchid}")

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
        try:
            params = v2.parse_xml(request.body)
        except v2.XmlError:
            return _v2_error("XML parse error")
        if params.get("appid") != self.m.appid or params.get("mch_id") != self.m.mchid:
            return _v2_error("appid and mch_id do not match")
        sign_type = params.get("sign_type") or "MD5"
        if sign_type not in v2.SIGN_TYPES or not v2.verify(params, self.m.api_key, sign_type):
            return _v2_error("签名错误")
        answer = handler(params)
        answer.setdefault("return_code", "SUCCESS")
        answer.setdefault("return_msg", "OK")
        answer.update({"appid": self.m.appid, "mch_id": self.m.mchid, "nonce_str": v2.nonce()})
        answer["sign"] = self._v2_sign(answer, sign_type)
        return SandboxResponse(200, v2.to_xml(answer), {"Content-Type": "text/xml"})

    def _v2_sign(self, params: dict[str, Any], sign_type: str) -> str:
        signature = v2.sign(params, self.m.api_key, sign_type)
        if self.sandbox.take_fault(self.name, ("bad_signature",)):
            signature = "0" * len(signature)
        return signature

    # --- v2 ----------------------------------------------------------------------
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
    ) -> tuple[dict[str, Any] | None, str]:
        """Creates the order, or returns the same one for an identical retry; (order, error code)."""
        with self._locked(out_trade_no):
            existing = self.order(out_trade_no)
            if existing is not None:
                if existing["state"] == "SUCCESS":
                    return None, "ORDERPAID"
                if existing["state"] == "CLOSED":
                    return None, "ORDERCLOSED"
                same = (existing["amount"], existing["trade_type"], existing["version"]) == (
                    amount,
                    trade_type,
                    version,
                )
                return (existing, "") if same else (None, "OUT_TRADE_NO_USED")
            prepay_id = "wx" + _now_china().strftime("%d%H%M%S") + secrets.token_hex(12)
            order = {
                "version": version,
                "appid": self.m.appid,
                "mchid": self.m.mchid,
                "out_trade_no": out_trade_no,
                "amount": amount,
                "trade_type": trade_type,
                "description": description,
                "notify_url": notify_url,
                "payer_openid": payer_openid,
                "sign_type": sign_type,
                "state": "NOTPAY",
                "transaction_id": "",
                "success_time": "",
                "prepay_id": prepay_id,
                "code_url": f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(8)}",
                "h5_url": f"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={prepay_id}&package={secrets.randbelow(10**10)}",
                "refunded": 0,
            }
            self._save(order)
            self._count_created()
            return order, ""

    def v2_unifiedorder(self, p: dict[str, str]) -> dict[str, Any]:
        trade_type = {"MWEB": "H5"}.get(p.get("trade_type", ""), p.get("trade_type", ""))
        try:
            amount = int(p.get("total_fee", ""))
        except ValueError:
            return {"result_code": "FAIL", "err_code": "PARAM_ERROR", "err_code_des": "total_fee"}
        if trade_type not in ("JSAPI", "NATIVE", "H5", "APP") or amount <= 0 or not p.get("notify_url"):
            return {"result_code": "FAIL", "err_code": "PARAM_ERROR", "err_code_des": "参数错误"}
        if trade_type == "JSAPI" and not p.get("openid"):
            return {"result_code": "FAIL", "err_code": "PARAM_ERROR", "err_code_des": "JSAPI支付必须传openid"}
        order, error = self._create(
            version="V2",
            out_trade_no=p.get("out_trade_no", ""),
            amount=amount,
            trade_type=trade_type,
            description=p.get("body", ""),
            notify_url=p["notify_url"],
            payer_openid=p.get("openid", ""),
            sign_type=p.get("sign_type") or "MD5",
        )
        if order is None:
            return {"result_code": "FAIL", "err_code": error, "err_code_des": error}
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
        fields = {
            "out_trade_no": order["out_trade_no"],
            "total_fee": order["amount"],
            "trade_type": {"H5": "MWEB"}.get(order["trade_type"], order["trade_type"]),
            "openid": order["payer_openid"] or "o-sandbox-payer",
            "fee_type": "CNY",
            "cash_fee": order["amount"],
        }
        if order["transaction_id"]:
            fields["transaction_id"] = order["transaction_id"]
            fields["time_end"] = dt.datetime.fromisoformat(order["success_time"]).strftime("%Y%m%d%H%M%S")
        return fields

    def v2_orderquery(self, p: dict[str, str]) -> dict[str, Any]:
        order = self.order(p.get("out_trade_no", ""))
        if order is None:
            return {"result_code": "FAIL", "err_code": "ORDERNOTEXIST", "err_code_des": "订单不存在"}
        return {"result_code": "SUCCESS", "trade_state": order["state"], **self._v2_trade_fields(order)}

    def v2_closeorder(self, p: dict[str, str]) -> dict[str, Any]:
        with self._locked(p.get("out_trade_no", "")):
            order = self.order(p.get("out_trade_no", ""))
            if order is None:
                return {"result_code": "FAIL", "err_code": "ORDERNOTEXIST", "err_code_des": "订单不存在"}
            if order["state"] in ("SUCCESS", "REFUND"):
                return {"result_code": "FAIL", "err_code": "ORDERPAID", "err_code_des": "订单已支付"}
            order["state"] = "CLOSED"
            self._save(order)
            return {"result_code": "SUCCESS"}

    def v2_refund(self, p: dict[str, str]) -> dict[str, Any]:
        refund, error = self._create_refund(
            version="V2",
            out_trade_no=p.get("out_trade_no", ""),
            out_refund_no=p.get("out_refund_no", ""),
            total=p.get("total_fee", ""),
            amount=p.get("refund_fee", ""),
            notify_url=p.get("notify_url", ""),
        )
        if refund is None:
            return {"result_code": "FAIL", "err_code": error, "err_code_des": error}
        return {
            "result_code": "SUCCESS",
            "out_trade_no": refund["out_trade_no"],
            "out_refund_no": refund["out_refund_no"],
            "refund_id": refund["refund_id"],
            "refund_fee": refund["amount"],
            "total_fee": refund["total"],
        }

    def v2_refundquery(self, p: dict[str, str]) -> dict[str, Any]:
        refund = self.refund(p.get("out_refund_no", ""))
        if refund is None:
            return {"result_code": "FAIL", "err_code": "REFUNDNOTEXIST", "err_code_des": "退款单不存在"}
        return {
            "result_code": "SUCCESS",
            "out_trade_no": refund["out_trade_no"],
            "total_fee": refund["total"],
            "refund_count": 1,
            "out_refund_no_0": refund["out_refund_no"],
            "refund_id_0": refund["refund_id"],
            "refund_fee_0": refund["amount"],
            "refund_status_0": {"ABNORMAL": "CHANGE", "CLOSED": "REFUNDCLOSE"}.get(refund["status"], refund["status"]),
        }

    # --- refunds (both versions) ---------------------------------------------------------
    def _create_refund(
        self, *, version: str, out_trade_no: str, out_refund_no: str, total: Any, amount: Any, notify_url: str
    ) -> tuple[dict[str, Any] | None, str]:
        with self._locked(out_trade_no):
            existing = self.refund(out_refund_no)
            if existing is not None:
                return existing, ""  # WeChat Pay treats a repeated out_refund_no as the same refund
            order = self.order(out_trade_no)
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
                "out_trade_no": out_trade_no,
                "transaction_id": order["transaction_id"],
                "out_refund_no": out_refund_no,
                "refund_id": "50" + secrets.token_hex(14),
                "amount": amount,
                "total": total,
                "status": "PROCESSING",
                "notify_url": notify_url or order["notify_url"],
                "success_time": "",
            }
            order["refunded"] += amount
            order["state"] = "REFUND"
            self._save(order)
            self._save_refund(refund)
            if self.auto_refund_notify:
                threading.Timer(0.05, self.complete_refund, args=(out_refund_no,)).start()
            return refund, ""

    def complete_refund(self, out_refund_no: str) -> tuple[int, str] | None:
        """The refund succeeds and its notify is sent; returns our endpoint's answer."""
        with self._locked(out_refund_no):
            refund = self.refund(out_refund_no)
            if refund is None:
                return None
            if refund["status"] == "PROCESSING":
                refund["status"] = "SUCCESS"
                refund["success_time"] = _now_china().isoformat()
                self._save_refund(refund)
        try:
            return self.send_refund_notify(out_refund_no)
        except Exception:  # noqa: BLE001 (a failed delivery is what WeChat Pay retries; log it)
            logger.warning("sandbox: refund notify for %s not delivered", out_refund_no, exc_info=True)
            return None

    # --- v3 --------------------------------------------------------------------------
    def _v3_answer(self, status: int, payload: dict[str, Any] | None) -> SandboxResponse:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")) if payload is not None else ""
        headers = self.v3_signed_headers(body)
        headers["Content-Type"] = "application/json"
        return SandboxResponse(status, body.encode("utf-8"), headers)

    def v3_signed_headers(self, body: str) -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = v3.sign_message(self.m.platform_private_key, f"{timestamp}\n{nonce}\n{body}\n")
        if self.sandbox.take_fault(self.name, ("bad_signature",)):
            signature = v3.sign_message(self.m.platform_private_key, f"{timestamp}\n{nonce}\ntampered\n")
        return {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": self.m.platform_key_id,
            "Request-ID": secrets.token_hex(16),
        }

    def _v3_error(self, status: int, code: str, message: str) -> SandboxResponse:
        return self._v3_answer(status, {"code": code, "message": message})

    def _v3_authorized(self, request: SandboxRequest) -> bool:
        header = request.headers.get("Authorization") or request.headers.get("authorization") or ""
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
        if not self._v3_authorized(request):
            return self._v3_error(401, "SIGN_ERROR", "签名错误")
        body = request.json() if request.body else {}
        if not isinstance(body, dict):
            return self._v3_error(400, "PARAM_ERROR", "invalid JSON")
        path = request.path
        prefix = "/v3/pay/transactions/"
        if (
            request.method == "POST"
            and path.startswith(prefix)
            and path[len(prefix) :] in ("jsapi", "native", "h5", "app")
        ):
            return self.v3_create(path[len(prefix) :].upper(), body)
        if path.startswith(prefix + "out-trade-no/"):
            rest = unquote(path[len(prefix + "out-trade-no/") :])
            if request.method == "POST" and rest.endswith("/close"):
                return self.v3_close(rest[: -len("/close")])
            if request.method == "GET":
                return self.v3_query(rest)
        if path == "/v3/refund/domestic/refunds" and request.method == "POST":
            return self.v3_refund(body)
        if path.startswith("/v3/refund/domestic/refunds/") and request.method == "GET":
            return self.v3_query_refund(unquote(path.rsplit("/", 1)[1]))
        return self._v3_error(404, "NOT_FOUND", "no such API")

    def v3_create(self, trade_type: str, body: dict[str, Any]) -> SandboxResponse:
        amount = body.get("amount", {}).get("total") if isinstance(body.get("amount"), dict) else None
        if body.get("appid") != self.m.appid or body.get("mchid") != self.m.mchid:
            return self._v3_error(400, "PARAM_ERROR", "appid和mch_id不匹配")
        if not isinstance(amount, int) or amount <= 0 or not body.get("notify_url") or not body.get("out_trade_no"):
            return self._v3_error(400, "PARAM_ERROR", "参数错误")
        payer: dict[str, Any] = body["payer"] if isinstance(body.get("payer"), dict) else {}
        if trade_type == "JSAPI" and not payer.get("openid"):
            return self._v3_error(400, "PARAM_ERROR", "缺少payer.openid")
        order, error = self._create(
            version="V3",
            out_trade_no=str(body["out_trade_no"]),
            amount=amount,
            trade_type=trade_type,
            description=str(body.get("description", "")),
            notify_url=str(body["notify_url"]),
            payer_openid=str(payer.get("openid", "")),
            sign_type="RSA",
        )
        if order is None:
            return self._v3_error(403 if error in ("ORDERPAID", "ORDERCLOSED") else 400, error, error)
        if trade_type == "NATIVE":
            return self._v3_answer(200, {"code_url": order["code_url"]})
        if trade_type == "H5":
            return self._v3_answer(200, {"h5_url": order["h5_url"]})
        return self._v3_answer(200, {"prepay_id": order["prepay_id"]})

    def v3_transaction(self, order: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "appid": order["appid"],
            "mchid": order["mchid"],
            "out_trade_no": order["out_trade_no"],
            "trade_state": order["state"],
            "trade_state_desc": order["state"],
            "trade_type": {"H5": "MWEB"}.get(order["trade_type"], order["trade_type"]),
            "amount": {"total": order["amount"], "currency": "CNY"},
        }
        if order["transaction_id"]:
            data.update(
                transaction_id=order["transaction_id"],
                success_time=order["success_time"],
                payer={"openid": order["payer_openid"] or "o-sandbox-payer"},
                bank_type="OTHERS",
            )
            data["amount"].update(payer_total=order["amount"], payer_currency="CNY")
        return data

    def v3_query(self, out_trade_no: str) -> SandboxResponse:
        order = self.order(out_trade_no)
        if order is None:
            return self._v3_error(404, "ORDER_NOT_EXIST", "订单不存在")
        return self._v3_answer(200, self.v3_transaction(order))

    def v3_close(self, out_trade_no: str) -> SandboxResponse:
        with self._locked(out_trade_no):
            order = self.order(out_trade_no)
            if order is None:
                return self._v3_error(404, "ORDER_NOT_EXIST", "订单不存在")
            if order["state"] in ("SUCCESS", "REFUND"):
                return self._v3_error(400, "ORDERPAID", "订单已支付")
            order["state"] = "CLOSED"
            self._save(order)
            return self._v3_answer(204, None)

    def _v3_refund_body(self, refund: dict[str, Any]) -> dict[str, Any]:
        return {
            "mchid": self.m.mchid,
            "refund_id": refund["refund_id"],
            "out_refund_no": refund["out_refund_no"],
            "transaction_id": refund["transaction_id"],
            "out_trade_no": refund["out_trade_no"],
            "status": refund["status"],
            "success_time": refund["success_time"] or None,
            "amount": {"refund": refund["amount"], "total": refund["total"], "currency": "CNY"},
        }

    def v3_refund(self, body: dict[str, Any]) -> SandboxResponse:
        amount: dict[str, Any] = body["amount"] if isinstance(body.get("amount"), dict) else {}
        refund, error = self._create_refund(
            version="V3",
            out_trade_no=str(body.get("out_trade_no", "")),
            out_refund_no=str(body.get("out_refund_no", "")),
            total=amount.get("total"),
            amount=amount.get("refund"),
            notify_url=str(body.get("notify_url", "")),
        )
        if refund is None:
            return self._v3_error(404 if error == "ORDERNOTEXIST" else 400, error, error)
        return self._v3_answer(200, self._v3_refund_body(refund))

    def v3_query_refund(self, out_refund_no: str) -> SandboxResponse:
        refund = self.refund(out_refund_no)
        if refund is None:
            return self._v3_error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return self._v3_answer(200, self._v3_refund_body(refund))

    # --- the cashier and notifies --------------------------------------------------------
    def pay(self, out_trade_no: str, payer_openid: str = "") -> dict[str, Any]:
        """The user pays: the order succeeds (once) and the signed notify goes to our notify URL."""
        with self._locked(out_trade_no):
            order = self.order(out_trade_no)
            if order is None:
                raise LookupError("no such order at the sandbox")
            if order["state"] == "CLOSED":
                raise ValueError("this order is closed")
            if order["state"] == "NOTPAY":
                order["state"] = "SUCCESS"
                order["transaction_id"] = "4200" + _now_china().strftime("%Y%m%d") + secrets.token_hex(7)
                order["success_time"] = _now_china().isoformat()
                order["payer_openid"] = order["payer_openid"] or payer_openid
                self._save(order)
            return order

    def close_at_cashier(self, out_trade_no: str) -> dict[str, Any]:
        with self._locked(out_trade_no):
            order = self.order(out_trade_no)
            if order is None:
                raise LookupError("no such order at the sandbox")
            if order["state"] == "NOTPAY":
                order["state"] = "CLOSED"
                self._save(order)
            return order

    def pay_notify(self, out_trade_no: str) -> tuple[str, dict[str, str], bytes]:
        """(url, headers, body) of the pay notify for a paid order."""
        order = self.order(out_trade_no)
        if order is None or not order["transaction_id"]:
            raise LookupError("the order is not paid")
        if order["version"] == "V2":
            params: dict[str, Any] = {
                "return_code": "SUCCESS",
                "result_code": "SUCCESS",
                "appid": self.m.appid,
                "mch_id": self.m.mchid,
                "nonce_str": v2.nonce(),
                "bank_type": "OTHERS",
                "is_subscribe": "N",
                **self._v2_trade_fields(order),
            }
            params["sign"] = self._v2_sign(params, order["sign_type"])
            return order["notify_url"], {"Content-Type": "text/xml"}, v2.to_xml(params)
        return order["notify_url"], *self._v3_notify("TRANSACTION.SUCCESS", "transaction", self.v3_transaction(order))

    def refund_notify(self, out_refund_no: str) -> tuple[str, dict[str, str], bytes]:
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
                "refund_status": {"ABNORMAL": "CHANGE", "CLOSED": "REFUNDCLOSE"}.get(
                    refund["status"], refund["status"]
                ),
                "success_time": dt.datetime.fromisoformat(refund["success_time"]).strftime("%Y-%m-%d %H:%M:%S")
                if refund["success_time"]
                else "",
            }
            params = {
                "return_code": "SUCCESS",
                "appid": self.m.appid,
                "mch_id": self.m.mchid,
                "nonce_str": v2.nonce(),
                "req_info": encrypt_refund_info(info, self.m.api_key),
            }
            return refund["notify_url"], {"Content-Type": "text/xml"}, v2.to_xml(params)
        event = {"SUCCESS": "REFUND.SUCCESS", "CLOSED": "REFUND.CLOSED"}.get(refund["status"], "REFUND.ABNORMAL")
        body = self._v3_refund_body(refund)
        body["refund_status"] = body.pop("status")
        return refund["notify_url"], *self._v3_notify(event, "refund", body)

    def _v3_notify(self, event_type: str, kind: str, resource: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        body = v3_notify_body(self.m.api_v3_key, event_type, kind, resource)
        headers = self.v3_signed_headers(body)
        headers["Content-Type"] = "application/json"
        return headers, body.encode("utf-8")

    def send_pay_notify(self, out_trade_no: str) -> tuple[int, str]:
        url, headers, body = self.pay_notify(out_trade_no)
        return self.deliver(url, headers, body)

    def send_pay_notify_copies(self, out_trade_no: str, copies: int) -> list[tuple[int, str]]:
        """One pay notify sent `copies` times at once, as WeChat Pay's deliveries over different links
        can arrive together; our endpoint's answers, each also recorded (`deliveries`). A copy that
        cannot be delivered is recorded as status 0 with the reason."""
        url, headers, body = self.pay_notify(out_trade_no)
        together = threading.Barrier(copies)

        def send(_: int) -> tuple[int, str]:
            try:
                together.wait(timeout=10)
                answer = self.deliver(url, headers, body)
            except (OSError, ValueError, threading.BrokenBarrierError) as exc:  # our notify URL did not answer
                answer = (0, f"not delivered: {exc}")
            self._record_delivery(out_trade_no, answer)
            return answer

        with ThreadPoolExecutor(max_workers=copies) as pool:
            return list(pool.map(send, range(copies)))

    def send_pay_notify_later(self, out_trade_no: str, copies: int = 1) -> None:
        """Sends the pay notify from a thread of its own, as WeChat Pay sends it: after the payment, not
        inside the request that paid (which would hold a worker of the server being notified)."""
        threading.Thread(target=self.send_pay_notify_copies, args=(out_trade_no, copies), daemon=True).start()

    def deliveries(self, out_trade_no: str) -> list[dict[str, Any]]:
        """What our notify endpoint answered to each pay notify of the order so far."""
        value = self.store.get(self._deliveries_key(out_trade_no))
        return list(value) if isinstance(value, list) else []

    def _deliveries_key(self, out_trade_no: str) -> str:
        return f"sbx:wxp:delivered:{self.m.mchid}:{out_trade_no}"

    def _record_delivery(self, out_trade_no: str, answer: tuple[int, str]) -> None:
        with self._locked(f"delivered:{out_trade_no}"):
            delivered = self.deliveries(out_trade_no)
            delivered.append({"status": answer[0], "body": answer[1]})
            self.store.set(self._deliveries_key(out_trade_no), delivered, ORDER_TTL)

    def send_refund_notify(self, out_refund_no: str) -> tuple[int, str]:
        url, headers, body = self.refund_notify(out_refund_no)
        return self.deliver(url, headers, body)


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
    import base64
    import hashlib

    from Crypto.Cipher import AES

    from providers.wechat.crypto import pkcs7_pad

    xml = v2.to_xml(info).replace(b"<xml>", b"<root>").replace(b"</xml>", b"</root>")
    key = hashlib.md5(api_key.encode(), usedforsecurity=False).hexdigest().encode()  # noqa: S324 (the protocol)
    return base64.b64encode(AES.new(key, AES.MODE_ECB).encrypt(pkcs7_pad(xml))).decode()  # noqa: S305
