"""The sandbox over real HTTP, under /sandbox/: the simulated provider hosts plus helper pages."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.views.decorators.csrf import csrf_exempt

from core.money import yuan
from providers.sandbox.core import FAULTS, Sandbox, SandboxRequest
from providers.sandbox.wechat import WechatSimulator
from providers.sandbox.wechatpay import PAY_OUTCOMES, REFUND_OUTCOMES, REFUND_PRESETS, UNPAID, WechatPaySimulator

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


def _outcome(request: HttpRequest, allowed: tuple[str, ...], default: str | None = "SUCCESS") -> str | None:
    """The `outcome` of a JSON body or of a page's form (`default` without one: an empty body); None
    when it is not one of `allowed`."""
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        outcome = request.POST.get("outcome", default)
        return outcome if outcome in allowed else None
    if not request.content_type.endswith("json") or not request.body:
        return default
    body = _json_body(request)
    outcome = body.get("outcome", default) if isinstance(body, dict) else None
    return outcome if outcome in allowed else None


def _from_a_page(request: HttpRequest) -> bool:
    """A person pressed a button on a sandbox page (the browser asks for HTML): they get a page back,
    and API clients (requests sends Accept: */*) keep their JSON."""
    return "text/html" in request.headers.get("Accept", "")


def _problem(request: HttpRequest, status: int, message: str) -> HttpResponse:
    """An error as the page a person sees (styled, with a way back), or as JSON for API clients."""
    if _from_a_page(request) or request.method == "GET":
        return render(request, "sandbox/problem.html", {"status": status, "message": message}, status=status)
    return JsonResponse({"error": message}, status=status)


def _see(name: str, *args: str) -> HttpResponseRedirect:
    # 303: the browser follows a POST's answer with a GET, so reloading the page never pays twice.
    return HttpResponseRedirect(reverse(name, args=args), status=303)


def urlpatterns(get_sandbox: Callable[[], Sandbox]) -> list[URLPattern]:
    def wechat() -> WechatSimulator:
        simulator = get_sandbox().providers["wechat"]
        assert isinstance(simulator, WechatSimulator)
        return simulator

    def index(request: HttpRequest) -> HttpResponse:
        orders = [{**order, "yuan": yuan(order["amount"])} for order in wechatpay().recent_orders()]
        context = {
            "appids": list(wechat().apps),
            "endpoints": WECHAT_ENDPOINTS,
            "faults": FAULTS,
            "pending": json.dumps(get_sandbox().faults()),
            "orders": orders,
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
                # Plain HTTP: no TLS, so no client certificate to see (in-process calls show theirs).
                cert_visible=False,
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

    def _cashier_context(out_trade_no: str) -> dict[str, Any] | None:
        simulator = wechatpay()
        order = simulator.order(out_trade_no)
        if order is None:
            return None
        refunds = [refund for refund in map(simulator.refund, order["refunds"]) if refund]
        for refund in refunds:
            refund["yuan"] = yuan(refund["amount"])
        return {
            "order": order,
            "yuan": yuan(order["amount"]),
            "payable": order["state"] in UNPAID,
            "refunds": refunds,
            "refund_presets": REFUND_PRESETS,
            "deliveries": simulator.deliveries(out_trade_no),
        }

    @csrf_exempt
    def cashier(request: HttpRequest, out_trade_no: str) -> HttpResponse:
        """GET: the cashier page. POST pays: the order succeeds and its notify is sent from a thread
        (202 with the URL listing every delivery attempt; `?duplicates=N` sends N copies at once). A
        JSON body `{"outcome": "USERPAYING"}` leaves the user entering the password and
        `{"outcome": "PAYERROR"}` fails the payment instead (200, no notify; either can be paid later).
        From the page's buttons, the answer is the result page instead."""
        simulator = wechatpay()
        if request.method == "GET":
            context = _cashier_context(out_trade_no)
            if context is None:
                return _problem(request, 404, "No such order at the sandbox.")
            return render(request, "sandbox/cashier.html", context)
        if request.method != "POST":
            return JsonResponse({"error": "GET or POST"}, status=405)
        outcome = _outcome(request, PAY_OUTCOMES)
        if outcome is None:
            return JsonResponse({"error": f'send JSON {{"outcome": one of {list(PAY_OUTCOMES)}}}'}, status=400)
        try:
            order = simulator.pay(out_trade_no, outcome=outcome)
        except LookupError:
            return _problem(request, 404, "No such order at the sandbox.")
        except ValueError as exc:
            return _problem(request, 409, str(exc))
        paid = order["state"] in ("SUCCESS", "REFUND")
        copies = 1
        if paid:
            try:
                copies = max(1, min(int(request.GET.get("duplicates", "1")), 20))
            except ValueError:
                copies = 1
            simulator.send_pay_notify_later(out_trade_no, copies)
        if _from_a_page(request):
            return _see("sandbox-cashier-result", out_trade_no)
        if not paid:
            return JsonResponse({"paid": False, "state": order["state"]})
        notifies = reverse("sandbox-cashier-notifies", args=[out_trade_no])
        return JsonResponse({"paid": True, "copies": copies, "notifies": notifies}, status=202)

    def cashier_result(request: HttpRequest, out_trade_no: str) -> HttpResponse:
        """What a person sees after pressing Pay: the outcome and our server's answers to the notify."""
        context = _cashier_context(out_trade_no)
        if context is None:
            return _problem(request, 404, "No such order at the sandbox.")
        context["notifies"] = reverse("sandbox-cashier-notifies", args=[out_trade_no])
        return render(request, "sandbox/result.html", context)

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
            return _problem(request, 404, str(exc))
        if _from_a_page(request):
            return _see("sandbox-cashier", out_trade_no)
        return JsonResponse({"state": order["state"]})

    @csrf_exempt
    def refund_outcome(request: HttpRequest, out_trade_no: str) -> HttpResponse:
        """POST JSON `{"outcome": "CLOSED" | "ABNORMAL" | "SUCCESS" | "PROCESSING"}`: how the order's
        refunds made from now on end (PROCESSING: they wait for POST /sandbox/refund/<out_refund_no>)."""
        if request.method != "POST":
            return JsonResponse({"error": "POST"}, status=405)
        outcome = _outcome(request, REFUND_PRESETS, default=None)
        if outcome is None:
            return JsonResponse({"error": f'send JSON {{"outcome": one of {list(REFUND_PRESETS)}}}'}, status=400)
        try:
            order = wechatpay().set_refund_outcome(out_trade_no, outcome)
        except LookupError as exc:
            return _problem(request, 404, str(exc))
        if _from_a_page(request):
            return _see("sandbox-cashier", out_trade_no)
        return JsonResponse({"refund_outcome": order["refund_outcome"]})

    @csrf_exempt
    def refund_complete(request: HttpRequest, out_refund_no: str) -> HttpResponse:
        """GET: the refund's status and every attempt to deliver its notify. POST ends a PROCESSING (or
        ABNORMAL) refund: SUCCESS, or with JSON `{"outcome": "CLOSED" | "ABNORMAL"}` that way; its
        notify is sent (and retried), and the answer carries our endpoint's first answer."""
        simulator = wechatpay()
        if request.method == "GET":
            refund = simulator.refund(out_refund_no)
            if refund is None:
                return JsonResponse({"error": "no such refund at the sandbox"}, status=404)
            return JsonResponse({"status": refund["status"], "deliveries": simulator.refund_deliveries(out_refund_no)})
        if request.method != "POST":
            return JsonResponse({"error": "GET or POST"}, status=405)
        outcome = _outcome(request, REFUND_OUTCOMES)
        if outcome is None:
            return JsonResponse({"error": f'send JSON {{"outcome": one of {list(REFUND_OUTCOMES)}}}'}, status=400)
        try:
            answer = simulator.complete_refund(out_refund_no, outcome)
        except LookupError as exc:
            if _from_a_page(request):
                return _problem(request, 404, str(exc))
            return JsonResponse({"notified": False, "error": str(exc)}, status=404)
        except ValueError as exc:
            if _from_a_page(request):
                return _problem(request, 409, str(exc))
            return JsonResponse({"notified": False, "error": str(exc)}, status=409)
        if _from_a_page(request):
            refund = simulator.refund(out_refund_no)
            return _see("sandbox-cashier", refund["out_trade_no"]) if refund else _see("sandbox-index")
        if answer is None:
            return JsonResponse({"status": outcome, "notified": False})
        return JsonResponse({"status": outcome, "notified": True, "answer": {"status": answer[0], "body": answer[1]}})

    return [
        path("", index, name="sandbox-index"),
        path("pay/<str:out_trade_no>", cashier, name="sandbox-cashier"),
        path("pay/<str:out_trade_no>/close", cashier_close, name="sandbox-cashier-close"),
        path("pay/<str:out_trade_no>/notifies", cashier_notifies, name="sandbox-cashier-notifies"),
        path("pay/<str:out_trade_no>/result", cashier_result, name="sandbox-cashier-result"),
        path("pay/<str:out_trade_no>/refund-outcome", refund_outcome, name="sandbox-refund-outcome"),
        path("refund/<str:out_refund_no>", refund_complete, name="sandbox-refund"),
        path("wechat/user-data", user_data, name="sandbox-user-data"),
        path("faults", faults, name="sandbox-faults"),
        path("<slug:provider>/<path:rest>", provider_api, name="sandbox-provider"),
    ]
