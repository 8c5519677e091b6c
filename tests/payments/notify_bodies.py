"""WeChat Pay notifies as the payments tests make and send them: orders paid (or refunded) at the
sandbox with their notify held back, notify bodies re-signed or re-encrypted, a notify posted as
WeChat Pay posts it, the answers it counts as success, and what a refused notify must leave alone."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.test import Client

from config import providers
from payments import services
from payments.models import Order, PaymentEvent, Refund
from providers.wechatpay import v2, v3
from providers.wechatpay.v2_client import SUCCESS_ANSWER

V2_PATH = "/notify/wechatpay/v2/"
V2_REFUND_PATH = "/notify/wechatpay/v2/refund/"
V3_PATH = "/notify/wechatpay/v3/"
JOIN_TIMEOUT = 30  # seconds a test thread may take; only a hung one reaches it

Notify = tuple[str, dict[str, str], bytes]  # (url, headers, body), as the sandbox makes it


def simulator() -> Any:
    return providers.sandbox().providers["wechatpay"]


def place_order(user: Any, version: str, *, sku: str = "coffee", quantity: int = 1) -> Order:
    """An order placed through the service (NATIVE: no WeChat login needed) and at the sandbox."""
    payment = services.create_wechatpay_order(
        user=user, sku=sku, quantity=quantity, trade_type="NATIVE", api_version=version, client_ip="127.0.0.1"
    )
    return payment.order


def paid_at_sandbox(user: Any, version: str) -> Order:
    """An order the user has paid at the sandbox; its notify has not been sent."""
    order = place_order(user, version)
    simulator().pay(order.out_trade_no)
    return order


def refund_in_flight(sandbox: Any, version: str, *, buyer: Any, staff: Any) -> tuple[Order, Refund]:
    """A paid order (its pay notify applied) with a PROCESSING refund of 800 fen; the refund's notify
    has not been sent."""
    order = paid_at_sandbox(buyer, version)
    assert is_success(version, post_notify(*sandbox.pay_notify(order.out_trade_no)))
    refund = services.refund_order(staff=staff, out_trade_no=order.out_trade_no, amount=800, reason="test")
    assert refund.status == "PROCESSING"
    return Order.objects.get(pk=order.pk), refund


def captured_refund_notify(sandbox: Any, out_refund_no: str) -> Notify:
    """Completes the refund at the sandbox and keeps the notify instead of delivering it."""
    captured: list[Notify] = []

    def capture(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        captured.append((url, headers, body))
        return 200, ""

    sandbox.deliver = capture
    sandbox.complete_refund(out_refund_no)
    assert len(captured) == 1
    return captured[0]


def post_notify(url: str, headers: dict[str, str], body: bytes, client: Client | None = None) -> Any:
    """POSTs a notify as WeChat Pay sends it: the headers as HTTP headers, the raw body."""
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k.lower() != "content-type"}
    return (client or Client()).post(
        urlsplit(url).path, body, content_type=headers.get("Content-Type", "application/octet-stream"), **meta
    )


def v2_return_code(response: Any) -> str:
    assert response.status_code == 200, response.content
    return v2.parse_xml(response.content)["return_code"]


def is_success(version: str, response: Any) -> bool:
    if version == "V2":
        return response.status_code == 200 and response.content == SUCCESS_ANSWER
    return response.status_code == 204 and response.content == b""


def state(order: Order) -> tuple[Any, ...]:
    """Everything a refused notify must leave alone."""
    fresh = Order.objects.get(pk=order.pk)
    return (fresh.status, fresh.transaction_id, fresh.paid_at, fresh.refunded_amount, PaymentEvent.objects.count())


def resign_v2(body: bytes, sign_type: str, change: Callable[[dict[str, str]], None]) -> bytes:
    params = v2.parse_xml(body)
    change(params)
    params["sign"] = v2.sign(params, settings.WECHATPAY_API_KEY, sign_type)
    return v2.to_xml(params)


def v3_resource(body: bytes) -> dict[str, Any]:
    resource = json.loads(body)["resource"]
    plain = v3.decrypt_resource(
        settings.WECHATPAY_API_V3_KEY, resource["nonce"], resource["ciphertext"], resource["associated_data"]
    )
    return json.loads(plain)  # type: ignore[no-any-return]


def reencrypt_v3(body: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    envelope = json.loads(body)
    data = v3_resource(body)
    change(data)
    resource = envelope["resource"]
    resource["ciphertext"] = v3.encrypt_resource(
        settings.WECHATPAY_API_V3_KEY,
        resource["nonce"],
        json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        resource["associated_data"],
    )
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


def sign_v3(headers: dict[str, str], body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Signs as the platform does (the sandbox's platform key), with a fresh nonce."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_hex(16)
    platform_key = providers._wechatpay_sandbox_keys()[1]
    signature = v3.sign_message(platform_key, f"{stamp}\n{nonce}\n{body.decode()}\n")
    return {**headers, "Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature}


def flip(text: str, at: int = 10) -> str:
    return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1 :]
