"""The provider behind an order, as payments.services asks of each: query, close, refund and query a
refund (every client reports in providers.trades' shapes), and the app and merchant its results must name.

A WeChat Pay merchant serves several apps (the mini-program, the official account): an order belongs to the
app it was placed for, and every call about it that names an app (all of v2's) names that one."""

from __future__ import annotations

from typing import Protocol

from django.conf import settings
from django.urls import reverse

from config import providers
from payments.models import Order
from providers.trades import RefundState, Trade
from providers.wechatpay.v2_client import WechatPayV2Client


class Gateway(Protocol):
    def query(self, out_trade_no: str) -> Trade: ...

    def close(self, out_trade_no: str) -> None: ...

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, total: int, amount: int, reason: str, notify_url: str
    ) -> RefundState: ...

    def query_refund(self, out_refund_no: str, out_trade_no: str = "") -> RefundState: ...


class _V2ForApp:
    """The v2 client speaking for one app: each v2 request names an appid, and its answer must name it too
    (v3 names the app only when an order is placed)."""

    def __init__(self, client: WechatPayV2Client, appid: str) -> None:
        self.client = client
        self.appid = appid

    def query(self, out_trade_no: str) -> Trade:
        return self.client.query(out_trade_no, appid=self.appid)

    def close(self, out_trade_no: str) -> None:
        self.client.close(out_trade_no, appid=self.appid)

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, total: int, amount: int, reason: str, notify_url: str
    ) -> RefundState:
        return self.client.refund(
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
            total=total,
            amount=amount,
            reason=reason,
            notify_url=notify_url,
            appid=self.appid,
        )

    def query_refund(self, out_refund_no: str, out_trade_no: str = "") -> RefundState:
        return self.client.query_refund(out_refund_no, out_trade_no, appid=self.appid)


def for_order(order: Order) -> Gateway:
    if order.provider == Order.Provider.ALIPAY:
        return providers.alipay()
    client = providers.wechatpay(order.api_version)
    if isinstance(client, WechatPayV2Client):
        return _V2ForApp(client, wechatpay_appid(order))
    return client


def wechatpay_appid(order: Order) -> str:
    """The WeChat app a WeChat Pay order was placed for (an order older than Order.appid: WECHATPAY_APPID)."""
    return order.appid or providers.wechatpay_config().appid


def identity(order: Order) -> tuple[str, str]:
    """(app, merchant) a verified result for `order` must name: ours, or it is not ours to apply. For WeChat
    Pay the order's own app: a result naming another app of the same merchant is not this order's."""
    if order.provider == Order.Provider.ALIPAY:
        alipay = providers.alipay_config()
        return alipay.app_id, alipay.seller_id
    return wechatpay_appid(order), providers.wechatpay_config().mchid


def refund_notify_url(order: Order) -> str:
    if order.provider == Order.Provider.ALIPAY:
        return providers.notify_url("alipay")  # Alipay sends refunds' notifies to the payment's URL anyway
    return providers.notify_url("wechatpay_v2_refund" if order.api_version == "V2" else "wechatpay_v3")


def refunds_ready(order: Order) -> bool:
    if order.provider == Order.Provider.ALIPAY:
        return providers.alipay_ready()
    return providers.wechatpay_refunds_ready(order.api_version)


def refunds_not_ready_message(order: Order) -> str:
    if order.provider == Order.Provider.ALIPAY:
        return "Alipay is not configured here (ALIPAY_APPID, keys and ALIPAY_SELLER_ID)."
    return "v2 refunds need WECHATPAY_CLIENT_CERT and WECHATPAY_CLIENT_KEY."


def payable_while_unseen(order: Order) -> bool:
    """Whether an order its provider has never seen can still be paid: an Alipay pay link or order
    string is signed here and makes the trade when the payer opens it, until its time_expire."""
    return order.provider == Order.Provider.ALIPAY


def name(order: Order) -> str:
    """The provider's name in logs, event keys and messages."""
    return "Alipay" if order.provider == Order.Provider.ALIPAY else "WeChat Pay"


def alipay_return_url() -> str:
    """Where Alipay sends the payer's browser after paying: our return page, which verifies, syncs and
    redirects on to the order's own return_url."""
    return settings.PUBLIC_BASE_URL + reverse("alipay-return")
