"""Alipay notifies and return redirects as the payments tests make them: the fields Alipay sends,
signed with the key the sandbox signs as Alipay with (or forged), and posted as Alipay posts them."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.test import Client

from config import providers
from payments.models import Order, PaymentEvent
from providers.alipay.signing import sign_content
from providers.rsa import sign_sha256

NOTIFY_PATH = "/notify/alipay/"
RETURN_PATH = "/pay/alipay/return/"
CHINA = dt.timezone(dt.timedelta(hours=8))


def alipay_key() -> str:
    """The private key the sandbox signs as Alipay with (ALIPAY_PUBLIC_KEY's pair)."""
    return providers.alipay_sandbox_keys()[1]


def app_key() -> str:
    """The app's own private key: it signs requests, and must never pass for Alipay's."""
    return providers.alipay_sandbox_keys()[0]


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def signed(fields: dict[str, str], *, key: str | None = None, with_sign_type: bool = False) -> dict[str, str]:
    """`fields` with `sign_type` and `sign` as Alipay signs a notify or a return: over every other
    non-empty field, `sign_type` left out (unless `with_sign_type`, a common mistake)."""
    form = {**fields, "sign_type": "RSA2"}
    content = sign_content(form, for_verification=not with_sign_type)
    form["sign"] = sign_sha256(key or alipay_key(), content)
    return form


def now_text() -> str:
    return dt.datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def pay_notify(order: Order, **changes: str) -> dict[str, str]:
    """The unsigned fields of Alipay's notify that `order` was paid (TRADE_SUCCESS)."""
    fields = {
        "notify_time": now_text(),
        "notify_type": "trade_status_sync",
        "notify_id": secrets.token_hex(16),
        "app_id": settings.ALIPAY_APPID,
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": "2026113022001" + secrets.token_hex(8)[:15],
        "out_trade_no": order.out_trade_no,
        "buyer_id": "2088102177846880",
        "seller_id": settings.ALIPAY_SELLER_ID,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": yuan(order.amount),
        "receipt_amount": yuan(order.amount),
        "buyer_pay_amount": yuan(order.amount),
        "subject": order.product.title,
        "gmt_create": now_text(),
        "gmt_payment": now_text(),
    }
    fields.update(changes)
    return fields


def refund_notify(order: Order, out_refund_no: str, refunded: int, **changes: str) -> dict[str, str]:
    """Alipay's notify after a refund: the trade's state, the cumulative `refund_fee` and the refund's
    `out_biz_no` (TRADE_CLOSED once all was refunded)."""
    status = "TRADE_CLOSED" if refunded == order.amount else "TRADE_SUCCESS"
    fields = pay_notify(
        order,
        trade_no=order.transaction_id,
        trade_status=status,
        refund_fee=yuan(refunded),
        out_biz_no=out_refund_no,
        gmt_refund=now_text() + ".123",
    )
    fields.update(changes)
    return fields


def post_form(form: dict[str, str] | str, *, path: str = NOTIFY_PATH, client: Client | None = None) -> Any:
    """POSTs a notify as Alipay does: an application/x-www-form-urlencoded body (a str is sent as is)."""
    body = form if isinstance(form, str) else urlencode(form, quote_via=quote)
    return (client or Client()).post(path, body, content_type="application/x-www-form-urlencoded; charset=utf-8")


def answer(response: Any) -> str:
    """Alipay's reading of our answer: only the exact body `success` stops its retries."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain"), response["Content-Type"]
    return response.content.decode()


def state(order: Order) -> tuple[Any, ...]:
    """Everything a refused notify must leave alone."""
    fresh = Order.objects.get(pk=order.pk)
    return (
        fresh.status,
        fresh.transaction_id,
        fresh.paid_at,
        fresh.refunded_amount,
        fresh.needs_attention,
        PaymentEvent.objects.count(),
    )
