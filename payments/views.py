"""Provider callbacks: WeChat Pay notifies. Each view reads the body, hands it to payments.notifies and
answers as WeChat Pay documents; whatever happens, the answer is one WeChat Pay understands."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments import notifies
from payments.services import Outcome
from providers.wechatpay.v2_client import SUCCESS_ANSWER, failure_answer

logger = logging.getLogger(__name__)

ACCEPTED = (Outcome.APPLIED, Outcome.NO_CHANGE, Outcome.CONFLICT)
V3_FAILURES = {
    Outcome.UNKNOWN_ORDER: (404, "unknown order"),
    Outcome.MISMATCH: (400, "does not match the order"),
    Outcome.REFUSED: (401, "verification failed"),
}


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


def _v3_failure(status: int, message: str) -> JsonResponse:
    return JsonResponse({"code": "FAIL", "message": message}, status=status)


def notify_view(
    failure: Callable[[], HttpResponse],
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A notify endpoint: POST only, no CSRF, and an unexpected error answered with the provider's
    failure answer (so it retries later), never Django's 500 page; the log line has the request id."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @require_POST
        @functools.wraps(view)
        def wrapper(request: HttpRequest) -> HttpResponse:
            try:
                return view(request)
            except Exception:  # noqa: BLE001 (the provider retries; the log has the rest)
                logger.exception("notify %s failed; the provider will retry", request.path)
                return failure()

        return wrapper

    return decorate


def _v2_outcome_answer(outcome: Outcome) -> HttpResponse:
    return _v2_answer(outcome in ACCEPTED, outcome.value)


@notify_view(lambda: _v2_answer(False, "try again later"))
def wechatpay_v2(request: HttpRequest) -> HttpResponse:
    if _too_big(request):
        return _v2_answer(False, "body too large")
    return _v2_outcome_answer(notifies.wechatpay_v2_pay(request.body))


@notify_view(lambda: _v2_answer(False, "try again later"))
def wechatpay_v2_refund(request: HttpRequest) -> HttpResponse:
    if _too_big(request):
        return _v2_answer(False, "body too large")
    return _v2_outcome_answer(notifies.wechatpay_v2_refund(request.body))


@notify_view(lambda: _v3_failure(503, "try again later"))
def wechatpay_v3(request: HttpRequest) -> HttpResponse:
    if _too_big(request):
        return _v3_failure(413, "body too large")
    outcome = notifies.wechatpay_v3(request.headers, request.body)
    if outcome in ACCEPTED:
        return HttpResponse(status=204)
    return _v3_failure(*V3_FAILURES[outcome])
