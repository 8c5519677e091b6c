"""A fake Alipay gateway for the client tests: a requests transport that records what was sent and answers
with text signed by a test "Alipay" key, as the real gateway signs (over the raw `..._response` text)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import requests
from requests.adapters import BaseAdapter

from providers.alipay import signing
from providers.alipay.client import AlipayClient, AlipayConfig
from providers.http import HttpConfig
from providers.rsa import sign_sha256
from providers.wechatpay.keys import public_key_pem

VECTORS = Path(__file__).parent / "vectors"
# Fixed, published keys (see vectors/SOURCES.md): the app's, and one playing Alipay's.
APP_KEY = (VECTORS / "app-private-key.pem").read_text()
APP_PUBLIC = public_key_pem(APP_KEY)
ALIPAY_KEY = (VECTORS / "yansongda-app-secret-key.pem").read_text()
ALIPAY_PUBLIC = public_key_pem(ALIPAY_KEY)

APP_ID = "2021000000000001"
SELLER_ID = "2088000000000001"
GATEWAY = "https://openapi.example.test/gateway.do"
NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)  # 20:00:00 in Asia/Shanghai
EXPIRES = NOW + dt.timedelta(minutes=30)


def response_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


def signed_answer(method: str, text: str, *, key: str = ALIPAY_KEY, cert_sn: str | None = None) -> str:
    """The gateway's answer for `method` whose signed object is exactly `text` (raw JSON object text)."""
    cert = f',"alipay_cert_sn":"{cert_sn}"' if cert_sn is not None else ""
    return f'{{"{response_key(method)}":{text}{cert},"sign":"{sign_sha256(key, text)}"}}'


def answer_of(method: str, fields: dict[str, Any], **kwargs: Any) -> str:
    return signed_answer(method, json.dumps(fields, ensure_ascii=False, separators=(",", ":")), **kwargs)


Reply = tuple[int, str] | Exception


@dataclass
class Gateway(BaseAdapter):
    """Answers each request with the next reply (status and text, or an exception to raise)."""

    replies: list[Reply | Callable[[dict[str, str]], Reply]] = field(default_factory=list)
    sent: list[requests.PreparedRequest] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        self.kwargs.append(kwargs)
        reply = self.replies.pop(0)
        if callable(reply):
            reply = reply(self.form(-1))
        if isinstance(reply, Exception):
            raise reply
        status, text = reply
        response = requests.Response()
        response.status_code = status
        response._content = text.encode("utf-8")
        response.headers["Content-Type"] = "text/html;charset=utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass

    def form(self, index: int) -> dict[str, str]:
        body = self.sent[index].body
        text = body.decode("ascii") if isinstance(body, bytes) else str(body)
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))

    def biz(self, index: int) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.form(index)["biz_content"])
        return value


def client(gateway: Gateway | None = None, **config: Any) -> AlipayClient:
    settings: dict[str, Any] = {
        "app_id": APP_ID,
        "private_key_pem": APP_KEY,
        "alipay_public_key_pem": ALIPAY_PUBLIC,
        "seller_id": SELLER_ID,
        "gateway": GATEWAY,
        **config,
    }
    session = requests.Session()
    session.mount("https://openapi.example.test/", gateway or Gateway())
    return AlipayClient(AlipayConfig(**settings), session, HttpConfig(connect_timeout=1.5, read_timeout=4.0))


def notify_form(**fields: str) -> dict[str, str]:
    """A pay notify as Alipay posts it, signed by the test Alipay key over everything but sign/sign_type."""
    form = {
        "gmt_create": "2024-05-01 20:00:01",
        "charset": "utf-8",
        "seller_email": "shop@example.com",
        "subject": "Coffee + cake",
        "buyer_id": "2088102534368455",
        "invoice_amount": "18.00",
        "notify_id": "2024050100222200000000000000000001",
        "fund_bill_list": '[{"amount":"18.00","fundChannel":"ALIPAYACCOUNT"}]',
        "notify_type": "trade_status_sync",
        "trade_status": "TRADE_SUCCESS",
        "receipt_amount": "18.00",
        "buyer_pay_amount": "18.00",
        "app_id": APP_ID,
        "sign_type": "RSA2",
        "seller_id": SELLER_ID,
        "gmt_payment": "2024-05-01 20:00:05",
        "notify_time": "2024-05-01 20:00:06",
        "version": "1.0",
        "out_trade_no": "T20240501000001",
        "total_amount": "18.00",
        "trade_no": "2024050122001468450500000001",
        "auth_app_id": APP_ID,
        "buyer_logon_id": "abc***@example.com",
        "point_amount": "0.00",
    }
    form.update(fields)
    return sign_as_alipay({k: v for k, v in form.items() if k != "sign"})


def sign_as_alipay(form: dict[str, str], key: str = ALIPAY_KEY) -> dict[str, str]:
    return {**form, "sign": sign_sha256(key, signing.sign_content(form, for_verification=True))}
