"""Provider notifies: verify, match to our order, apply once (payments.services). The views read the
body and answer in the provider's words; every decision between is made here."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from config import providers
from payments.models import Order, PaymentEvent
from payments.services import Outcome, apply_refund, apply_trade, sync_returned_alipay_order
from providers.trades import InvalidNotify
from providers.wechatpay import v2
from providers.wechatpay.v2_client import WechatPayV2Client
from providers.wechatpay.v3_client import WechatPayV3Client

logger = logging.getLogger(__name__)


def _v2_client() -> WechatPayV2Client:
    client = providers.wechatpay("V2")
    assert isinstance(client, WechatPayV2Client)
    return client


def _v2_sign_type_of(out_trade_no: str) -> str | None:
    """The sign type a v2 order was placed with: read only to verify its notify, which changes nothing."""
    sign_type: str | None = (
        Order.objects.filter(out_trade_no=out_trade_no, provider=Order.Provider.WECHATPAY, api_version="V2")
        .values_list("sign_type", flat=True)
        .first()
    )
    return sign_type


def wechatpay_v2_pay(body: bytes) -> Outcome:
    """A v2 pay notify (XML). HMAC-SHA256 is tried first, with no lookup: the stronger type, made with
    the same key, is accepted for any order. A weaker (MD5) signature is accepted only for an order
    placed with MD5 (a notify may omit its sign_type)."""
    try:
        unverified = v2.parse_xml(body)
    except v2.XmlError:
        logger.warning("wechatpay v2 notify: unparsable body refused")
        return Outcome.REFUSED
    client = _v2_client()
    try:
        notify = client.parse_pay_notify(unverified, v2.HMAC_SHA256)
    except InvalidNotify as exc:
        out_trade_no = unverified.get("out_trade_no", "")[:32]
        sign_type = _v2_sign_type_of(out_trade_no)
        if sign_type is None:
            logger.warning("wechatpay v2 notify for unknown order %s", out_trade_no)
            return Outcome.UNKNOWN_ORDER
        try:
            if sign_type == v2.HMAC_SHA256:
                raise exc
            notify = client.parse_pay_notify(unverified, sign_type)
        except InvalidNotify as final:
            logger.warning("wechatpay v2 notify for %s refused: %s", out_trade_no, final)
            return Outcome.REFUSED
    assert notify.trade is not None
    return apply_trade(notify.trade, source=PaymentEvent.Source.NOTIFY)


def wechatpay_v2_refund(body: bytes) -> Outcome:
    """A v2 refund notify: its encrypted req_info is all that authenticates it."""
    try:
        notify = _v2_client().parse_refund_notify(body)
    except InvalidNotify as exc:
        logger.warning("wechatpay v2 refund notify refused: %s", exc)
        return Outcome.REFUSED
    assert notify.refund is not None
    return apply_refund(notify.refund, source=PaymentEvent.Source.NOTIFY)


def wechatpay_v3(headers: Mapping[str, str], body: bytes) -> Outcome:
    """A v3 notify (pay or refund): the raw body verified with the key its Wechatpay-Serial names."""
    client = providers.wechatpay("V3")
    assert isinstance(client, WechatPayV3Client)
    try:
        notify = client.parse_notify(headers, body)
    except InvalidNotify as exc:
        logger.warning("wechatpay v3 notify refused: %s", exc)
        return Outcome.REFUSED
    if notify.trade is not None:
        return apply_trade(notify.trade, source=PaymentEvent.Source.NOTIFY)
    assert notify.refund is not None
    return apply_refund(notify.refund, source=PaymentEvent.Source.NOTIFY)


def alipay(form: Mapping[str, str]) -> Outcome:
    """An Alipay notify (the form as a plain dict): verified with Alipay's key, then matched (app_id,
    seller_id, the amount) and applied by the same service as every other provider's."""
    try:
        notify = providers.alipay().parse_notify(form)
    except InvalidNotify as exc:
        logger.warning("alipay notify refused: %s", exc)
        return Outcome.REFUSED
    if notify.trade is not None:
        return apply_trade(notify.trade, source=PaymentEvent.Source.NOTIFY)
    assert notify.refund is not None
    return apply_refund(notify.refund, source=PaymentEvent.Source.NOTIFY)


def alipay_return(params: Mapping[str, str]) -> Order | None:
    """The order a verified return redirect names, synced with Alipay (never from the redirect's own
    fields); None when the redirect is not Alipay's or names no order of ours."""
    try:
        out_trade_no = providers.alipay().verify_return(params)
    except InvalidNotify as exc:
        logger.warning("alipay return refused: %s", exc)
        return None
    return sync_returned_alipay_order(out_trade_no)
