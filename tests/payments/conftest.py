from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from config import providers
from payments.models import Product

ORDER_FIELDS = "outTradeNo status amount provider apiVersion tradeType transactionId paidAt refundedAmount"
CREATE = (
    "mutation C($input: CreateWechatPayOrderInput!) { createWechatPayOrder(input: $input) {"
    f" order {{ {ORDER_FIELDS} }}"
    " payParams { appId timeStamp nonceStr package signType paySign }"
    " appParams { appid partnerid prepayid package noncestr timestamp sign } codeUrl h5Url } }"
)


@pytest.fixture
def products(db: Any) -> dict[str, Product]:
    return {
        "coffee": Product.objects.create(sku="coffee", title="Coffee", price=1800),
        "sticker": Product.objects.create(sku="sticker", title="Sticker", price=1),
    }


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="staff", password="x", is_staff=True)


def in_process_deliver(client: Client):  # type: ignore[no-untyped-def]
    """Delivers sandbox notifies to our notify views through the test client (same thread, same DB)."""

    def deliver(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k.lower() != "content-type"}
        response = client.post(
            urlsplit(url).path, body, content_type=headers.get("Content-Type", "application/octet-stream"), **meta
        )
        return response.status_code, response.content.decode()

    return deliver


@pytest.fixture
def wechatpay_sandbox(client: Client) -> Any:
    simulator = providers.sandbox().providers["wechatpay"]
    simulator.deliver = in_process_deliver(Client())
    simulator.auto_refund_notify = False  # tests complete refunds explicitly, in this thread
    return simulator
