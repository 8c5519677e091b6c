"""Provider callbacks: WeChat Pay notifies. Verify, match, apply once, answer as WeChat Pay documents."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from config import providers
from payments.models import Order, PaymentEvent
from payments.services import Outcome, apply_refund, apply_trade
from providers.wechatpay import v2
from providers.wechatpay.types import InvalidNotify
from providers.wechatpay.v2_client import SUCCESS_ANSWER, WechatPayV2Client, failure_answer
from providers.wechatpay.v3_client import WechatPayV3Client

logger = logging.getLogger(__name__)

ACCEPTED = (Outcome.APPLIED, Outcome.NO_CHANGE, Outcome.CONFLICT)


def _too_big(request: HttpRequest) -> bool:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return True
    return length > settings.NOTIFY_MAX_BYTES


def _v2_answer(ok: bool, message: str = "OK") -> HttpResponse:
    body = SUCCESS_ANSWER if ok else failure_answer(message)
    # WeChat Pay reads return_code, not the HTTP status: FAIL makes it retry.
    return HttpResponse(body, content_type="text/xml; charset=utf-8")


def _v2_client() -> WechatPayV2Client:
    client = providers.wechatpay("V2")
    assert isinstance(client, WechatPayV2Client)
    return client


def _v2_sign_type_of(out_trade_no: str) -> str | None:
    # Read only to learn the sign type to verify with; nothing changes before verification.
    sign_type: str | None = (
        Order.objects.filter(out_trade_no=out_trade_no, provider=Order.Provider.WECHATPAY, api_version="V2")
        .values_list("sign_type", flat=True)
        .first()
    )
    return sign_type


@csrf_exempt
@require_POST
def wechatpay_v2(request: HttpRequest) -> HttpResponse:
    if _too_big(request):
        return _v2_answer(False, "body too large")
    body = request.body
    try:
        unverified = v2.parse_xml(body)
    except v2.XmlError:
        logger.warning("wechatpay v2 notify: unparsable body refused")
        return _v2_answer(False, "bad XML")
    client = _v2_client()
    out_trade_no = unverified.get("out_trade_no", "")
    try:
        # HMAC-SHA256 first, with no lookup: the stronger type, made with the same key, is accepted
        # for any order. A weaker (MD5) signature is accepted only for an order placed with MD5.
        notify = client.parse_pay_notify(unverified, v2.HMAC_SHA256)
    except InvalidNotify as exc:
        sign_type = _v2_sign_type_of(out_trade_no)
        if sign_type is None:
            logger.warning("wechatpay v2 notify for unknown order %s", out_trade_no[:32])
            return _v2_answer(False, "unknown order")
        try:
            if sign_type == v2.HMAC_SHA256:
                raise exc
            notify = client.parse_pay_notify(unverified, sign_type)
        except InvalidNotify as final:
            logger.warning("wechatpay v2 notify for %s refused: %s", out_trade_no, final)
            return _v2_answer(False, "verification failed")
    assert notify.trade is not None
    outcome = apply_trade(notify.trade, source=PaymentEvent.Source.NOTIFY)
    return _v2_answer(outcome in ACCEPTED, outcome.value)


@csrf_exempt
@require_POST
def wechatpay_v2_refund(request: HttpRequest) -> HttpResponse:
    if _too_big(request):
        return _v2_answer(False, "body too large")
    try:
        notify = _v2_client().parse_refund_notify(request.body)
    except InvalidNotify as exc:
        logger.warning("wechatpay v2 refund notify refused: %s", exc)
        return _v2_answer(False, "verification failed")
    assert notify.refund is not None
    outcome = apply_refund(notify.refund, source=PaymentEvent.Source.NOTIFY)
    return _v2_answer(outcome in ACCEPTED, outcome.value)


def _v3_failure(status: int, message: str) -> JsonResponse:
    return JsonResponse({"code": "FAIL", "message": message}, status=status)


@csrf_exempt
@require_POST
def wechatpay_v3(request: HttpRequest) -> HttpResponse:
    if _too_big(request):
        return _v3_failure(413, "body too large")
    client = providers.wechatpay("V3")
    assert isinstance(client, WechatPayV3Client)
    try:
        notify = client.parse_notify(request.headers, request.body)
    except InvalidNotify as exc:
        logger.warning("wechatpay v3 notify refused: %s", exc)
        return _v3_failure(401, "verification failed")
    if notify.trade is not None:
        outcome = apply_trade(notify.trade, source=PaymentEvent.Source.NOTIFY)
        number = notify.trade.out_trade_no
    else:
        assert notify.refund is not None
        outcome = apply_refund(notify.refund, source=PaymentEvent.Source.NOTIFY)
        number = notify.refund.out_refund_no
    if outcome in ACCEPTED:
        return HttpResponse(status=204)
    if outcome == Outcome.UNKNOWN_ORDER:
        return _v3_failure(404, f"unknown order {number}")
    return _v3_failure(400, f"does not match order {number}")
