"""The sandbox over real HTTP, under /sandbox/: the simulated provider hosts plus helper pages."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import segno
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.views.decorators.csrf import csrf_exempt

from core.money import yuan
from providers.sandbox.alipay import PRODUCTS, AlipaySimulator
from providers.sandbox.alipay import REFUND_OUTCOMES as ALIPAY_REFUND_OUTCOMES
from providers.sandbox.core import FAULTS, Sandbox, SandboxRequest
from providers.sandbox.inbox import KINDS, PUSH_FAULTS, PUSH_PATHS, Inbox
from providers.sandbox.wechat import USER_RE, ServerUrl, WechatSimulator, openid_for, original_id, redirect_with
from providers.sandbox.wechatpay import PAY_OUTCOMES, REFUND_OUTCOMES, REFUND_PRESETS, UNPAID, WechatPaySimulator

MAX_BODY = 1024 * 1024
_CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

WECHAT_ENDPOINTS = [
    "GET /sns/jscode2session",
    "POST /cgi-bin/stable_token",
    "GET /cgi-bin/token",
    "POST /wxa/business/getuserphonenumber",
    "GET /wxa/checksession",
]

OA_ENDPOINTS = [
    "GET /sns/oauth2/access_token",
    "GET /sns/oauth2/refresh_token",
    "GET /sns/userinfo",
    "GET /cgi-bin/ticket/getticket",
    "POST /cgi-bin/menu/create",
    "GET /cgi-bin/menu/get",
    "GET /cgi-bin/menu/delete",
    "GET /cgi-bin/user/info",
    "POST /cgi-bin/qrcode/create",
]
# Where WeChat posts the official account's messages: our server URL, under PUBLIC_BASE_URL.
OA_SERVER_PATH = "/wechat/official-account/"


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


def _oa_server(simulator: WechatSimulator) -> ServerUrl | None:
    """Our official account's server URL as WeChat knows it (the settings of config/settings.py), or None
    when the sandbox has no official account."""
    appid = settings.WECHAT_OA_APPID
    if not appid or appid not in simulator.apps or not settings.WECHAT_OA_TOKEN:
        return None
    return ServerUrl(
        url=settings.PUBLIC_BASE_URL + OA_SERVER_PATH,
        token=settings.WECHAT_OA_TOKEN,
        encoding_aes_key=settings.WECHAT_OA_AES_KEY,
        appid=appid,
    )


def _oa_problem(request: HttpRequest, status: int, message: str) -> HttpResponse:
    """A refusal of the official account's pages: the page a person sees, or JSON for API clients."""
    if _from_a_page(request) or request.method == "GET":
        return render(request, "sandbox/oa_error.html", {"status": status, "message": message}, status=status)
    return JsonResponse({"error": message}, status=status)


def _form(request: HttpRequest) -> dict[str, str]:
    """A POST's fields: a JSON object (API clients) or the page's form; {} when neither."""
    if request.content_type.endswith("json"):
        body = _json_body(request)
        if not isinstance(body, dict):
            return {}
        return {k: v for k, v in body.items() if isinstance(v, str)}
    return {k: v for k, v in request.POST.items()}


def _reply_lines(fields: dict[str, Any] | None) -> list[str]:
    """What the follower sees of a passive reply, a line per bubble."""
    if not fields:
        return []
    kind = fields.get("MsgType")
    if kind == "text":
        return [str(fields.get("Content") or "")]
    if kind == "news":
        articles = fields.get("Articles")
        items = articles.get("item") if isinstance(articles, dict) else None
        items = items if isinstance(items, list) else [items] if isinstance(items, dict) else []
        return [f"{item.get('Title') or ''} · {item.get('Url') or ''}" for item in items if isinstance(item, dict)]
    if kind == "image":
        image = fields.get("Image")
        return [f"[image {image.get('MediaId') if isinstance(image, dict) else ''}]"]
    return [f"[{kind}]"]


def _when(timestamp: int | None) -> str:
    return dt.datetime.fromtimestamp(timestamp, _CHINA).isoformat() if timestamp else ""


def _pick_user(given: str, recent: list[str]) -> str:
    return given if USER_RE.match(given) else (recent[0] if recent else "alice")


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
        context.update(_oa_index_context())
        # The index page with the Alipay and official-account sections added below it.
        return render(request, "sandbox/oa_index.html", context)

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

    # --- the official account's pages -----------------------------------------------------------
    def _oa_index_context() -> dict[str, Any]:
        simulator = wechat()
        server = _oa_server(simulator)
        if server is None:
            return {"oa": None}
        try_it = {
            "appid": server.appid,
            "redirect_uri": settings.PUBLIC_BASE_URL + reverse("sandbox-index"),
            "response_type": "code",
            "scope": "snsapi_userinfo",
            "state": "sandbox",
        }
        return {
            "oa": {
                "appid": server.appid,
                "original_id": original_id(server.appid),
                "server_url": server.url,
                "safe_mode": server.safe_mode,
                "endpoints": OA_ENDPOINTS,
                "consent": reverse("sandbox-oa-authorize") + "?" + urlencode(try_it),
                "qrcodes": simulator.recent_qrcodes(server.appid),
            }
        }

    @csrf_exempt
    def oa_authorize(request: HttpRequest) -> HttpResponse:
        """WeChat's web OAuth consent page (open.weixin.qq.com/connect/oauth2/authorize): pick a sandbox user,
        Allow (a redirect with code and state) or Deny (with state only)."""
        if request.method not in ("GET", "POST"):
            return JsonResponse({"error": "GET or POST"}, status=405)
        simulator = wechat()
        given = request.GET if request.method == "GET" else request.POST
        params = {
            name: given.get(name, "")[:2048] for name in ("appid", "redirect_uri", "response_type", "scope", "state")
        }
        params["state"] = params["state"][:128]  # "最多128字节"
        problem = simulator.authorize_problem(
            params["appid"], params["redirect_uri"], params["response_type"], params["scope"]
        )
        if problem:
            return _oa_problem(request, 400, problem)
        recent = simulator.recent_users()
        context: dict[str, Any] = {
            **params,
            "host": urlsplit(params["redirect_uri"]).netloc,
            "users": recent or ["alice", "bob"],
            "user": _pick_user(request.GET.get("user", ""), recent),
            "nickname": "",
            "error": "",
        }
        if request.method == "GET":
            return render(request, "sandbox/oa_authorize.html", context)
        if request.POST.get("decision") == "deny":
            return HttpResponseRedirect(redirect_with(params["redirect_uri"], {"state": params["state"]}))
        user, nickname = request.POST.get("user", "").strip(), request.POST.get("nickname", "")
        try:
            code = simulator.grant_oauth_code(
                params["appid"],
                user,
                params["scope"],
                snapshot=request.POST.get("snapshot") == "1",
                nickname=nickname,
            )
        except ValueError as exc:
            context.update(user=user, nickname=nickname, error=str(exc))
            return render(request, "sandbox/oa_authorize.html", context, status=400)
        back = redirect_with(params["redirect_uri"], {"code": code, "state": params["state"]})
        return HttpResponseRedirect(back)

    def _push_answer(request: HttpRequest, record: dict[str, Any]) -> HttpResponse:
        """After a send: the phone page showing it (a person), or the exchange as JSON."""
        if _from_a_page(request):
            return HttpResponseRedirect(
                reverse("sandbox-oa-phone") + "?" + urlencode({"sent": record["id"]}), status=303
            )
        return JsonResponse({**record, "again": reverse("sandbox-oa-again", args=[record["id"]])})

    @csrf_exempt
    def oa_showqrcode(request: HttpRequest) -> HttpResponse:
        """What WeChat's showqrcode?ticket= gives a person in the sandbox: the code, its scene, and a button
        that scans it as a sandbox user (a subscribe with qrscene_<scene>, or SCAN from a follower)."""
        if request.method not in ("GET", "POST"):
            return JsonResponse({"error": "GET or POST"}, status=405)
        simulator = wechat()
        server = _oa_server(simulator)
        ticket = request.GET.get("ticket", "")
        code = simulator.qrcode(ticket)
        if server is None or code is None or code["appid"] != server.appid:
            return _oa_problem(request, 404, "No such QR code at the sandbox: it expired, or was never made here.")
        if request.method == "POST":
            form = _form(request)
            try:
                mode = form.get("mode") or ("safe" if server.safe_mode else "plain")
                record = simulator.scan(server, form.get("user", "").strip(), ticket, mode)
            except ValueError as exc:
                return _oa_problem(request, 400, str(exc))
            return _push_answer(request, record)
        user = _pick_user(request.GET.get("user", ""), simulator.recent_users())
        context = {
            "code": code,
            "expires": _when(code["expires_at"]),
            "user": user,
            "following": simulator.follower(server.appid, openid_for(server.appid, user)) is not None,
            "safe_mode": server.safe_mode,
            "svg": segno.make(code["url"], error="m").svg_inline(omitsize=True, dark="#1f2328"),
        }
        return render(request, "sandbox/oa_showqrcode.html", context)

    @csrf_exempt
    def oa_phone(request: HttpRequest) -> HttpResponse:
        """A follower's phone: GET the page (?sent=<id> shows one exchange); POST sends a text, subscribe,
        scan, CLICK or unsubscribe to our server URL (JSON {user, mode, kind, content, scene, key} or the
        page's form) and answers with the exchange: what was sent and our passive reply."""
        if request.method not in ("GET", "POST"):
            return JsonResponse({"error": "GET or POST"}, status=405)
        simulator = wechat()
        server = _oa_server(simulator)
        if server is None:
            return _oa_problem(request, 404, "The sandbox has no official account (WECHAT_OA_APPID).")
        form = _form(request) if request.method == "POST" else {}
        error = ""
        if request.method == "POST":
            details = {name: form.get(name, "") for name in ("content", "scene", "key")}
            try:
                # The mode the server URL is in unless asked otherwise: with an EncodingAESKey, safe.
                default_mode = "safe" if server.safe_mode else "plain"
                user, kind, mode = form.get("user", "").strip(), form.get("kind", ""), form.get("mode") or default_mode
                return _push_answer(request, simulator.send(server, user, kind, mode, **details))
            except ValueError as exc:
                if not _from_a_page(request):
                    return JsonResponse({"error": str(exc)}, status=400)
                error = str(exc)
        sent = simulator.push_record(request.GET.get("sent", ""))
        recent = simulator.recent_users()
        user = _pick_user(form.get("user") or request.GET.get("user") or (sent or {}).get("user", ""), recent)
        openid = openid_for(server.appid, user)
        menu_keys = simulator.menu_keys(server.appid)
        context = {
            "server": server,
            "original_id": original_id(server.appid),
            "users": recent or ["alice", "bob"],
            "user": user,
            "openid": openid,
            "following": simulator.follower(server.appid, openid) is not None,
            "mode": form.get("mode") or (sent or {}).get("mode") or ("safe" if server.safe_mode else "plain"),
            "form": form,
            "menu_keys": menu_keys,
            "key": form.get("key") or (menu_keys[0][1] if menu_keys else ""),
            "sent": sent,
            "reply_lines": _reply_lines(sent["reply_fields"]) if sent else [],
            "error": error,
        }
        return render(request, "sandbox/oa_phone.html", context, status=400 if error else 200)

    @csrf_exempt
    def oa_phone_again(request: HttpRequest, push_id: str) -> HttpResponse:
        """WeChat's retry of one exchange: the very same request sent again (our server should deduplicate)."""
        if request.method != "POST":
            return JsonResponse({"error": "POST"}, status=405)
        simulator = wechat()
        server = _oa_server(simulator)
        if server is None:
            return _oa_problem(request, 404, "The sandbox has no official account (WECHAT_OA_APPID).")
        try:
            record = simulator.push_again(server, push_id)
        except LookupError as exc:
            return _oa_problem(request, 404, str(exc))
        return _push_answer(request, record)

    # --- the inbox: what the apps sent their users ----------------------------------------------------
    def inbox() -> Inbox:
        return wechat().inbox

    def _inbox_body(request: HttpRequest) -> dict[str, Any]:
        """A POST's fields: a JSON object (API clients, numbers kept) or the page's form; {} when neither."""
        if request.content_type.endswith("json"):
            body = _json_body(request)
            return body if isinstance(body, dict) else {}
        return {k: v for k, v in request.POST.items()}

    def _inbox_appid(given: Any) -> str | None:
        """The app named, or the mini-program's (the first app) when none is; None: not an app of the sandbox."""
        apps = list(wechat().apps)
        appid = given or apps[0]
        return appid if isinstance(appid, str) and appid in apps else None

    def _as_seen(message: dict[str, Any]) -> dict[str, Any]:
        """A message with what its card shows: the time, the fields in order, a link a browser may follow."""
        return {
            **message,
            "owner": message["user"] or message["openid"],
            "when": message["at"][:19].replace("T", " "),
            "fields": list(message["data"].items()),
            "link": _web_url(message["url"]),
        }

    def inbox_page(request: HttpRequest) -> HttpResponse:
        """Every message the apps sent, newest first, grouped per user (?user= : one user's)."""
        selected = request.GET.get("user", "").strip()
        box = inbox()
        recent = [_as_seen(message) for message in box.messages()]
        shown = recent if not selected else [_as_seen(message) for message in box.messages(user=selected)]
        groups: dict[str, dict[str, Any]] = {}
        for message in shown:
            group = groups.setdefault(message["owner"], {"owner": message["owner"], "named": bool(message["user"])})
            group.setdefault("messages", []).append(message)
        users = list(dict.fromkeys(message["owner"] for message in recent))
        if selected and selected not in users:
            users.append(selected)
        apps = list(wechat().apps)
        context = {
            "groups": list(groups.values()),
            "selected": selected,
            "users": users,
            "apps": apps,
            "subscriptions": [(appid, box.subscriptions(appid, selected)) for appid in apps] if selected else [],
            "fault": box.fault(),
            "quotas": [(appid, box.quota(appid)) for appid in apps],
            "paths": list(PUSH_PATHS),
            "faults": PUSH_FAULTS,
            "kinds": KINDS,
        }
        return render(request, "sandbox/inbox.html", context)

    def inbox_json(request: HttpRequest) -> HttpResponse:
        """The messages as JSON, newest first (?user= : one user's), for tests."""
        messages = inbox().messages(user=request.GET.get("user", "").strip())
        return JsonResponse(messages, safe=False, json_dumps_params={"ensure_ascii": False})

    @csrf_exempt
    def inbox_subscriptions(request: HttpRequest) -> HttpResponse:
        """POST {user, template_id, count (1), appid (the mini-program's)}: the user accepts one-time
        subscriptions, as wx.requestSubscribeMessage's "accept"; GET ?user=&appid=: what they have left."""
        if request.method == "GET":
            appid, user = _inbox_appid(request.GET.get("appid")), request.GET.get("user", "")
            if appid is None:
                return JsonResponse({"error": "unknown appid"}, status=400)
            return JsonResponse({"appid": appid, "user": user, "subscriptions": inbox().subscriptions(appid, user)})
        if request.method != "POST":
            return JsonResponse({"error": "GET or POST"}, status=405)
        body = _inbox_body(request)
        appid = _inbox_appid(body.get("appid"))
        if appid is None:
            return _problem(request, 400, "Unknown appid: the sandbox's apps are " + ", ".join(wechat().apps) + ".")
        user, template_id = str(body.get("user", "")).strip(), str(body.get("template_id", "")).strip()
        count = body.get("count", 1)
        try:
            count = int(count) if isinstance(count, str) and count.strip().isdigit() else count
            left = inbox().grant_subscription(appid, user, template_id, count)
        except ValueError as exc:
            return _problem(request, 400, str(exc))
        if _from_a_page(request):
            return HttpResponseRedirect(reverse("sandbox-inbox") + "?" + urlencode({"user": user}), status=303)
        answer = {"appid": appid, "user": user, "openid": openid_for(appid, user), "template_id": template_id}
        return JsonResponse({**answer, "remaining": left})

    @csrf_exempt
    def inbox_faults(request: HttpRequest) -> HttpResponse:
        """POST {fault: quota | busy, count}: the next `count` sends answer 45009 or -1; GET: what is pending."""
        if request.method == "POST":
            body = _inbox_body(request)
            try:
                inbox().set_fault(str(body.get("fault")), body.get("count", 1))
            except ValueError as exc:
                return JsonResponse({"error": str(exc)}, status=400)
        elif request.method != "GET":
            return JsonResponse({"error": "GET or POST"}, status=405)
        return JsonResponse({"pending": inbox().fault()})

    @csrf_exempt
    def inbox_quota(request: HttpRequest) -> HttpResponse:
        """POST {appid (the mini-program's), left: N | null}: the app may send N more messages today, then
        45009; null lifts the limit (the daily reset). GET ?appid=: what is left (null: no limit)."""
        if request.method not in ("GET", "POST"):
            return JsonResponse({"error": "GET or POST"}, status=405)
        body = _inbox_body(request) if request.method == "POST" else {"appid": request.GET.get("appid")}
        appid = _inbox_appid(body.get("appid"))
        if appid is None:
            return JsonResponse({"error": "unknown appid"}, status=400)
        if request.method == "POST":
            if "left" not in body:
                return JsonResponse({"error": 'send JSON {"appid": ..., "left": N or null}'}, status=400)
            try:
                inbox().set_quota(appid, body["left"])
            except ValueError as exc:
                return JsonResponse({"error": str(exc)}, status=400)
        return JsonResponse({"appid": appid, "left": inbox().quota(appid)})

    return [
        path("", index, name="sandbox-index"),
        path("inbox", inbox_page, name="sandbox-inbox"),
        path("inbox.json", inbox_json, name="sandbox-inbox-json"),
        path("inbox/subscriptions", inbox_subscriptions, name="sandbox-inbox-subscriptions"),
        path("inbox/faults", inbox_faults, name="sandbox-inbox-faults"),
        path("inbox/quota", inbox_quota, name="sandbox-inbox-quota"),
        path("pay/<str:out_trade_no>", cashier, name="sandbox-cashier"),
        path("pay/<str:out_trade_no>/close", cashier_close, name="sandbox-cashier-close"),
        path("pay/<str:out_trade_no>/notifies", cashier_notifies, name="sandbox-cashier-notifies"),
        path("pay/<str:out_trade_no>/result", cashier_result, name="sandbox-cashier-result"),
        path("pay/<str:out_trade_no>/refund-outcome", refund_outcome, name="sandbox-refund-outcome"),
        path("refund/<str:out_refund_no>", refund_complete, name="sandbox-refund"),
        path("wechat/user-data", user_data, name="sandbox-user-data"),
        # The official account's pages (config/providers.py points the client's consent and QR-code hosts here).
        path("wechat/connect/oauth2/authorize", oa_authorize, name="sandbox-oa-authorize"),
        path("wechat/cgi-bin/showqrcode", oa_showqrcode, name="sandbox-oa-showqrcode"),
        path("wechat/official-account/phone", oa_phone, name="sandbox-oa-phone"),
        path("wechat/official-account/phone/<str:push_id>/again", oa_phone_again, name="sandbox-oa-again"),
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
