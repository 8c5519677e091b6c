"""The sandbox over real HTTP, under /sandbox/: the simulated provider hosts plus helper pages."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.views.decorators.csrf import csrf_exempt

from providers.sandbox.core import FAULTS, Sandbox, SandboxRequest
from providers.sandbox.wechat import WechatSimulator
from providers.sandbox.wechatpay import WechatPaySimulator

MAX_BODY = 1024 * 1024

WECHAT_ENDPOINTS = [
    "GET /sns/jscode2session",
    "POST /cgi-bin/stable_token",
    "GET /cgi-bin/token",
    "POST /wxa/business/getuserphonenumber",
    "GET /wxa/checksession",
]


def _json_body(request: HttpRequest) -> Any:
    if len(request.body) > MAX_BODY:
        return None
    try:
        return json.loads(request.body or b"null")
    except ValueError:
        return None


def urlpatterns(get_sandbox: Callable[[], Sandbox]) -> list[URLPattern]:
    def wechat() -> WechatSimulator:
        simulator = get_sandbox().providers["wechat"]
        assert isinstance(simulator, WechatSimulator)
        return simulator

    def index(request: HttpRequest) -> HttpResponse:
        context = {
            "appids": list(wechat().apps),
            "endpoints": WECHAT_ENDPOINTS,
            "faults": FAULTS,
            "pending": json.dumps(get_sandbox().faults()),
        }
        return render(request, "sandbox/index.html", context)

    @csrf_exempt
    def user_data(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return JsonResponse({"error": "POST JSON {openid, data}"}, status=405)
        body = _json_body(request)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("openid"), str)
            or not isinstance(body.get("data"), dict)
        ):
            return JsonResponse({"error": 'send JSON {"openid": str, "data": {...}}'}, status=400)
        simulator = wechat()
        appid = body.get("appid") or next(iter(simulator.apps))
        if not isinstance(appid, str) or appid not in simulator.apps:
            return JsonResponse({"error": "unknown appid"}, status=400)
        timestamp = body.get("timestamp")
        try:
            answer = simulator.user_data(
                appid, body["openid"], body["data"], timestamp if isinstance(timestamp, int) else None
            )
        except LookupError as exc:
            return JsonResponse({"error": str(exc)}, status=404)
        return JsonResponse(answer)

    @csrf_exempt
    def faults(request: HttpRequest) -> HttpResponse:
        sandbox = get_sandbox()
        if request.method == "GET":
            return JsonResponse({"pending": sandbox.faults()})
        if request.method != "POST":
            return JsonResponse({"error": "GET or POST"}, status=405)
        body = _json_body(request)
        if not isinstance(body, dict):
            return JsonResponse({"error": "send JSON {provider, fault, count}"}, status=400)
        count = body.get("count", 1)
        try:
            if not isinstance(count, int) or isinstance(count, bool):
                raise ValueError("count must be an integer")
            sandbox.set_fault(str(body.get("provider")), str(body.get("fault")), count)
        except ValueError as exc:
            return JsonResponse({"error": str(exc)}, status=400)
        return JsonResponse({"pending": sandbox.faults()})

    @csrf_exempt
    def provider_api(request: HttpRequest, provider: str, rest: str) -> HttpResponse:
        if len(request.body) > MAX_BODY:
            return JsonResponse({"error": "body too large"}, status=413)
        sandbox = get_sandbox()
        answer = sandbox.handle(
            provider,
            SandboxRequest(
                method=request.method or "GET",
                path="/" + rest,
                query={k: v for k, v in request.GET.items()},
                headers={k: v for k, v in request.headers.items()},
                body=request.body,
                raw_query=request.META.get("QUERY_STRING", ""),
            ),
        )
        if answer.delay:
            time.sleep(answer.delay)  # a stalled provider: the client times out first
        response = HttpResponse(answer.body, status=answer.status)
        for name, value in answer.headers.items():
            response[name] = value
        return response

    def wechatpay() -> WechatPaySimulator:
        simulator = get_sandbox().providers["wechatpay"]
        assert isinstance(simulator, WechatPaySimulator)
        return simulator

    @csrf_exempt
    def cashier(request: HttpRequest, out_trade_no: str) -> HttpResponse:
        simulator = wechatpay()
        if request.method == "GET":
            order = simulator.order(out_trade_no)
            yuan = f"{Decimal(order['amount']) / 100:.2f}" if order else ""
            context = {"order": order, "yuan": yuan, "deliveries": simulator.deliveries(out_trade_no)}
            return render(request, "sandbox/cashier.html", context, status=200 if order else 404)
        if request.method != "POST":
            return JsonResponse({"error": "GET or POST"}, status=405)
        try:
            simulator.pay(out_trade_no)
        except LookupError as exc:
            return JsonResponse({"error": str(exc)}, status=404)
        except ValueError as exc:
            return JsonResponse({"error": str(exc)}, status=409)
        try:
            copies = max(1, min(int(request.GET.get("duplicates", "1")), 20))
        except ValueError:
            copies = 1
        simulator.send_pay_notify_later(out_trade_no, copies)
        notifies = reverse("sandbox-cashier-notifies", args=[out_trade_no])
        return JsonResponse({"paid": True, "copies": copies, "notifies": notifies}, status=202)

    def cashier_notifies(request: HttpRequest, out_trade_no: str) -> HttpResponse:
        simulator = wechatpay()
        order = simulator.order(out_trade_no)
        if order is None:
            return JsonResponse({"error": "no such order at the sandbox"}, status=404)
        return JsonResponse({"state": order["state"], "deliveries": simulator.deliveries(out_trade_no)})

    @csrf_exempt
    def cashier_close(request: HttpRequest, out_trade_no: str) -> HttpResponse:
        if request.method != "POST":
            return JsonResponse({"error": "POST"}, status=405)
        try:
            order = wechatpay().close_at_cashier(out_trade_no)
        except LookupError as exc:
            return JsonResponse({"error": str(exc)}, status=404)
        return JsonResponse({"state": order["state"]})

    @csrf_exempt
    def refund_complete(request: HttpRequest, out_refund_no: str) -> HttpResponse:
        if request.method != "POST":
            return JsonResponse({"error": "POST"}, status=405)
        answer = wechatpay().complete_refund(out_refund_no)
        if answer is None:
            return JsonResponse(
                {"notified": False, "error": "no such refund, or the notify was not delivered"}, status=404
            )
        return JsonResponse({"notified": True, "answer": {"status": answer[0], "body": answer[1]}})

    return [
        path("", index, name="sandbox-index"),
        path("pay/<str:out_trade_no>", cashier, name="sandbox-cashier"),
        path("pay/<str:out_trade_no>/close", cashier_close, name="sandbox-cashier-close"),
        path("pay/<str:out_trade_no>/notifies", cashier_notifies, name="sandbox-cashier-notifies"),
        path("refund/<str:out_refund_no>", refund_complete, name="sandbox-refund"),
        path("wechat/user-data", user_data, name="sandbox-user-data"),
        path("faults", faults, name="sandbox-faults"),
        path("<slug:provider>/<path:rest>", provider_api, name="sandbox-provider"),
    ]
