"""The sandbox over real HTTP, under /sandbox/: the simulated provider hosts plus helper pages."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.views.decorators.csrf import csrf_exempt

from core.money import yuan
from providers.sandbox.alipay import PRODUCTS, AlipaySimulator
from providers.sandbox.alipay import REFUND_OUTCOMES as ALIPAY_REFUND_OUTCOMES
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


def _web_url(url: str) -> str:
    """`url` when a browser may be sent there (http or https), else ""."""
    return url if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc else ""


def _alipay_state(trade: dict[str, Any]) -> str:
    """The base page's colour class of an Alipay trade_status (a refunded trade closes paid: green)."""
    if trade["status"] == "TRADE_CLOSED":
        return "REFUND" if trade["gmt_payment"] else "CLOSED"
    return "SUCCESS" if trade["status"] == "TRADE_SUCCESS" else "NOTPAY"


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
            "alipay_app_id": alipay().app.app_id,
            "alipay_trades": [
                {**trade, "yuan": yuan(trade["amount"]), "state": _alipay_state(trade)}
                for trade in alipay().recent_trades()
            ],
        }
        # The index page with the Alipay section added below it.
        return render(request, "sandbox/alipay_index.html", context)

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

    def alipay() -> AlipaySimulator:
        simulator = get_sandbox().providers["alipay"]
        assert isinstance(simulator, AlipaySimulator)
        return simulator

    def _alipay_context(trade: dict[str, Any]) -> dict[str, Any]:
        simulator = alipay()
        refunds = [{**refund, "yuan": yuan(refund["amount"])} for refund in trade["refunds"].values()]
        return {
            "trade": trade,
            "state": _alipay_state(trade),
            "yuan": yuan(trade["amount"]),
            "product": PRODUCTS[trade["product"]],
            "payable": trade["status"] == "WAIT_BUYER_PAY",
            "quit_url": _web_url(trade["quit_url"]) if trade["product"] == "wap" else "",
            "refunds": refunds,
            "refund_outcomes": ALIPAY_REFUND_OUTCOMES,
            "deliveries": simulator.deliveries(trade["out_trade_no"]),
            "notifies": reverse("sandbox-alipay-notifies", args=[trade["out_trade_no"]]),
        }

    @csrf_exempt
    def alipay_cashier(request: HttpRequest, out_trade_no: str) -> HttpResponse:
        """GET: the cashier page of a page, WAP or app trade. POST pays it: its notify is sent from a thread,
        and the browser goes on to the return_url with the signed return parameters (or, with none, to the
        result page). API clients get JSON (202) with that `return_url` and the URL listing the notifies."""
        simulator = alipay()
        if request.method == "GET":
            trade = simulator.trade(out_trade_no)
            if trade is None:
                return _problem(request, 404, "No such trade at the sandbox.")
            return render(request, "sandbox/alipay_cashier.html", _alipay_context(trade))
        if request.method != "POST":
            return JsonResponse({"error": "GET or POST"}, status=405)
        try:
            trade, paid_now = simulator.pay(out_trade_no)
        except LookupError as exc:
            return _problem(request, 404, str(exc))
        except ValueError as exc:
            return _problem(request, 409, str(exc))
        if paid_now:
            simulator.send_pay_notify_later(out_trade_no)
        back = simulator.return_url(out_trade_no)
        if _from_a_page(request):
            return HttpResponseRedirect(back, status=303) if back else _see("sandbox-alipay-result", out_trade_no)
        notifies = reverse("sandbox-alipay-notifies", args=[out_trade_no])
        return JsonResponse(
            {"paid": True, "trade_status": trade["status"], "return_url": back, "notifies": notifies}, status=202
        )

    @csrf_exempt
    def alipay_cancel(request: HttpRequest, out_trade_no: str) -> HttpResponse:
        """The payer leaves the cashier: the trade stays unpaid (a WAP payer goes back to its quit_url)."""
        if request.method != "POST":
            return JsonResponse({"error": "POST"}, status=405)
        trade = alipay().trade(out_trade_no)
        if trade is None:
            return _problem(request, 404, "No such trade at the sandbox.")
        if not _from_a_page(request):
            return JsonResponse({"trade_status": trade["status"]})
        quit_url = _web_url(trade["quit_url"]) if trade["product"] == "wap" else ""
        return HttpResponseRedirect(quit_url, status=303) if quit_url else _see("sandbox-alipay-result", out_trade_no)

    def alipay_result(request: HttpRequest, out_trade_no: str) -> HttpResponse:
        """After Pay (a trade with no return_url) or Cancel: the trade's state and our server's answers."""
        simulator = alipay()
        trade = simulator.trade(out_trade_no)
        if trade is None:
            return _problem(request, 404, "No such trade at the sandbox.")
        context = _alipay_context(trade)
        context["app_result"] = simulator.app_result(out_trade_no) if trade["product"] == "app" else ""
        return render(request, "sandbox/alipay_result.html", context)

    def alipay_notifies(request: HttpRequest, out_trade_no: str) -> HttpResponse:
        """Every attempt to deliver the trade's notifies: `deliveries` of the pay notify, `events` of each."""
        simulator = alipay()
        trade = simulator.trade(out_trade_no)
        if trade is None:
            return JsonResponse({"error": "no such trade at the sandbox"}, status=404)
        events = ["pay", "close", *(f"refund:{number}" for number in trade["refunds"])]
        return JsonResponse(
            {
                "trade_status": trade["status"],
                "deliveries": simulator.deliveries(out_trade_no),
                "events": {event: simulator.deliveries(out_trade_no, event) for event in events},
            }
        )

    @csrf_exempt
    def alipay_refund_outcome(request: HttpRequest, out_trade_no: str) -> HttpResponse:
        """POST JSON `{"outcome": "SYSTEM_ERROR" | "SUCCESS"}`: how the trade's next refund is answered."""
        if request.method != "POST":
            return JsonResponse({"error": "POST"}, status=405)
        outcome = _outcome(request, ALIPAY_REFUND_OUTCOMES, default=None)
        if outcome is None:
            return JsonResponse(
                {"error": f'send JSON {{"outcome": one of {list(ALIPAY_REFUND_OUTCOMES)}}}'}, status=400
            )
        try:
            trade = alipay().set_refund_outcome(out_trade_no, outcome)
        except LookupError as exc:
            return _problem(request, 404, str(exc))
        if _from_a_page(request):
            return _see("sandbox-alipay-cashier", out_trade_no)
        return JsonResponse({"refund_outcome": trade["refund_outcome"]})

    def alipay_scan(request: HttpRequest, code: str) -> HttpResponse:
        """What scanning a precreate `qr_code` with the Alipay app shows: the trade, Pay and Cancel."""
        trade = alipay().trade_by_qr_code(code)
        if trade is None:
            return _problem(request, 404, "No such QR code at the sandbox.")
        return render(request, "sandbox/alipay_cashier.html", {**_alipay_context(trade), "scanned": True})

    @csrf_exempt
    def alipay_app(request: HttpRequest) -> HttpResponse:
        """The Alipay app: GET a page to paste an app payment's order string; POST it (`order_string`) and the
        app verifies it and shows the trade to pay (or Alipay's error)."""
        if request.method == "GET":
            return render(request, "sandbox/alipay_app.html", {"order_string": ""})
        if request.method != "POST":
            return JsonResponse({"error": "GET or POST"}, status=405)
        order_string = request.POST.get("order_string", "")
        if len(order_string) > MAX_BODY:
            return _problem(request, 413, "The order string is too long.")
        trade, error = alipay().app_pay(order_string)
        if trade is None:
            context = {"order_string": order_string, "error": error}
            return render(request, "sandbox/alipay_app.html", context, status=400)
        return _see("sandbox-alipay-cashier", trade["out_trade_no"])

    def alipay_error(request: HttpRequest) -> HttpResponse:
        """The page Alipay shows a browser whose pay request it refused (the gateway redirects here)."""
        error = {name: request.GET.get(name, "")[:2000] for name in ("code", "msg", "sub_code", "sub_msg")}
        return render(request, "sandbox/alipay_error.html", {"error": error}, status=400)

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
        # Alipay's pages (the simulator redirects to these paths under its pages_url: keep them in step).
        path("alipay/cashier/<str:out_trade_no>", alipay_cashier, name="sandbox-alipay-cashier"),
        path("alipay/cashier/<str:out_trade_no>/cancel", alipay_cancel, name="sandbox-alipay-cancel"),
        path("alipay/cashier/<str:out_trade_no>/result", alipay_result, name="sandbox-alipay-result"),
        path("alipay/cashier/<str:out_trade_no>/notifies", alipay_notifies, name="sandbox-alipay-notifies"),
        path(
            "alipay/cashier/<str:out_trade_no>/refund-outcome",
            alipay_refund_outcome,
            name="sandbox-alipay-refund-outcome",
        ),
        path("alipay/qr/<str:code>", alipay_scan, name="sandbox-alipay-scan"),
        path("alipay/app", alipay_app, name="sandbox-alipay-app"),
        path("alipay/error", alipay_error, name="sandbox-alipay-error"),
        path("<slug:provider>/<path:rest>", provider_api, name="sandbox-provider"),
    ]
