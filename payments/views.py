"""Provider callbacks: WeChat Pay and Alipay notifies, and Alipay's return page. Each view reads the
body, hands it to payments.notifies and answers as its provider documents; whatever happens, the answer
is one the provider understands."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from core.errors import AppError
from payments import notifies
from payments.services import Outcome, return_url_allowed
from providers.wechatpay.v2_client import SUCCESS_ANSWER, failure_answer
from schema.ratelimit import enforce

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


def _alipay_answer(ok: bool) -> HttpResponse:
    # Alipay reads the body: anything but exactly "success" makes it retry (8 times over 25 hours).
    return HttpResponse("success" if ok else "failure", content_type="text/plain; charset=utf-8")


def _plain(query: QueryDict) -> dict[str, str] | None:
    """The parameters as a plain dict; None when one is given twice (Alipay never does: a forgery)."""
    if any(len(values) != 1 for _, values in query.lists()):
        return None
    return query.dict()


@notify_view(lambda: _alipay_answer(False))
def alipay(request: HttpRequest) -> HttpResponse:
    if _too_big(request):
        return _alipay_answer(False)
    # The form body only: a query string on our notify URL is not Alipay's to sign.
    form = _plain(request.POST)
    if form is None:
        return _alipay_answer(False)
    return _alipay_answer(notifies.alipay(form) in ACCEPTED)


def _with_params(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return urlunsplit(parts._replace(query=query))


@require_GET
@never_cache
def alipay_return(request: HttpRequest) -> HttpResponse:
    """Where Alipay sends the payer's browser after paying: verified, synced with Alipay, then on to the
    front end's returnUrl with outTradeNo and the status. A redirect that does not verify changes nothing."""
    try:
        enforce(request, group="alipayReturn:ip", key="ip", rate=settings.RATELIMIT_ALIPAY_RETURN)
    except AppError:
        return render(request, "payments/alipay_return.html", {"order": None, "limited": True}, status=429)
    params = _plain(request.GET)
    order = notifies.alipay_return(params) if params is not None else None
    if order is None:
        return render(request, "payments/alipay_return.html", {"order": None}, status=400)
    if order.return_url and return_url_allowed(order.return_url):
        return HttpResponseRedirect(
            _with_params(order.return_url, {"outTradeNo": order.out_trade_no, "status": str(order.status)})
        )
    # APP and QR payments have no page of the front end's to return to.
    return render(request, "payments/alipay_return.html", {"order": order})
