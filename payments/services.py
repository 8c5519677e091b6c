"""Every write and rule of payments: create, apply provider results once, sync, close, refund, reconcile."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from config import providers
from core.errors import AppError, ErrorCode
from core.urls import on_allowed_host
from notifications.services import order_paid
from payments import gateways
from payments.models import Order, PaymentEvent, Product, Refund
from payments.selectors import IN_FLIGHT_REFUNDS, order_for, refundable_amount
from providers.compare import constant_time_equal
from providers.http import ProviderError, ProviderUnavailable
from providers.trades import RefundState, Trade

logger = logging.getLogger(__name__)

MAX_QUANTITY = 99
# Answers after which the refund may or may not exist at the provider: retry with the same out_refund_no.
RETRYABLE_REFUND_ERRORS = {
    "SYSTEMERROR",
    "BIZERR_NEED_RETRY",
    "FAIL",
    "SYSTEM_ERROR",
    "FREQUENCY_LIMITED",
    # Alipay: "retry with the same out_request_no" (20000 comes as isp/aop.unknow-error)
    "ACQ.SYSTEM_ERROR",
    "20000",
    "isp.unknow-error",
    "aop.unknow-error",
}
# A close refused because the order is closed or paid already: its state (queried next) says which.
CLOSED_OR_PAID = {"ORDERCLOSED", "ORDER_CLOSED", "ORDERPAID", "ACQ.TRADE_STATUS_ERROR"}
NOT_FOUND = {"ORDERNOTEXIST", "ORDER_NOT_EXIST", "REFUNDNOTEXIST", "RESOURCE_NOT_EXISTS", "ACQ.TRADE_NOT_EXIST"}

ALLOWED = {
    Order.Status.PENDING: {Order.Status.PAID, Order.Status.CLOSED},
    Order.Status.PAID: {Order.Status.REFUNDED},
    Order.Status.CLOSED: set(),
    Order.Status.REFUNDED: set(),
}


class IllegalTransition(Exception):
    pass


class Outcome(enum.Enum):
    APPLIED = "APPLIED"  # state changed
    NO_CHANGE = "NO_CHANGE"  # verified and harmless: a duplicate, or nothing to do
    CONFLICT = "CONFLICT"  # verified, stored, but contradicts our state: needs a human
    UNKNOWN_ORDER = "UNKNOWN_ORDER"  # not ours (yet): the provider should retry
    MISMATCH = "MISMATCH"  # names our order with other facts (amount): changes nothing
    REFUSED = "REFUSED"  # not verified (signature, ids, body): changes nothing


def transition(order: Order, new: str) -> None:
    """The only place an order's status changes; call it with the row locked."""
    if new not in ALLOWED[Order.Status(order.status)]:
        raise IllegalTransition(f"{order.out_trade_no}: {order.status} -> {new} is not allowed")
    order.status = new


def new_out_trade_no() -> str:
    """32 characters: the date (for people reading statements) and 96 random bits."""
    return timezone.now().strftime("%Y%m%d") + secrets.token_hex(12)


def _provider_failure(exc: Exception, *, what: str, provider: str = "WeChat Pay") -> AppError:
    if isinstance(exc, ProviderUnavailable):
        logger.warning("%s unavailable during %s: %s", provider, what, exc)
        return AppError(ErrorCode.PROVIDER_UNAVAILABLE, f"{provider} is not reachable right now: try again shortly.")
    assert isinstance(exc, ProviderError)
    logger.warning("%s refused %s: %s", provider, what, exc)
    return AppError(ErrorCode.PROVIDER_ERROR, f"{provider} refused the request ({exc.errcode}).")


# --- create ---------------------------------------------------------------------


WECHATPAY_TRADE_TYPES = {"JSAPI", "NATIVE", "H5", "APP"}
ALIPAY_METHODS = {"PAGE", "WAP", "APP", "QR"}


class PayApp(enum.StrEnum):
    """The WeChat app a WeChat Pay order is placed for: its appid names the order, its openid pays it."""

    MINIPROGRAM = "MINIPROGRAM"
    OFFICIAL_ACCOUNT = "OFFICIAL_ACCOUNT"


def _product(sku: str, quantity: int) -> Product:
    if not 1 <= quantity <= MAX_QUANTITY:
        raise AppError(ErrorCode.BAD_USER_INPUT, f"quantity must be 1 to {MAX_QUANTITY}.")
    product = Product.objects.filter(sku=sku, active=True).first()
    if product is None:
        raise AppError(ErrorCode.NOT_FOUND, "No such product: check the sku in `products`.")
    return product


def _pending_order(purchase: dict[str, Any], **fields: Any) -> Order:
    """The user's pending order for the same purchase, or a new one: a retry reuses it, so the provider
    sees one order, not two. A new one is committed before the provider is called, so even a fast
    notify finds it."""
    now = timezone.now()
    order = (
        # at least 6 minutes left: WeChat Pay v2 refuses a time_expire less than 5 minutes away
        Order.objects.filter(**purchase, status=Order.Status.PENDING, expires_at__gt=now + dt.timedelta(minutes=6))
        .order_by("-created_at")
        .first()
    )
    if order is None:
        order = Order.objects.create(
            **purchase,
            **fields,
            out_trade_no=new_out_trade_no(),
            expires_at=now + dt.timedelta(seconds=settings.ORDER_TTL),
        )
        logger.info(
            "order %s created: %s x%s = %s fen",
            order.out_trade_no,
            purchase["product"].sku,
            purchase["quantity"],
            order.amount,
        )
    return order


@dataclass
class Payment:
    order: Order
    pay_params: dict[str, str] | None = None
    app_params: dict[str, str] | None = None
    code_url: str = ""  # WeChat Pay NATIVE; Alipay QR: the qr_code
    h5_url: str = ""
    pay_url: str = ""  # Alipay PAGE and WAP: the signed gateway URL the browser opens
    order_string: str = ""  # Alipay APP: for the Alipay SDK


def _pay_app(user: User, app: str | None, trade_type: str) -> tuple[str, str]:
    """(appid, the user's openid there or "") of the app the order is for. Without `app`: the app the user
    last logged in through (their identity's last_login_at: an H5 page after officialAccountLogin pays in
    the official account even when the same person uses the mini-program), else the one they have an
    identity in, else the mini-program (the merchant's default app, WECHATPAY_APPID, which APP payments
    always name)."""
    miniprogram = providers.wechatpay_config().appid
    official_account = str(settings.WECHAT_OA_APPID) if providers.official_account_ready() else ""
    if app == PayApp.OFFICIAL_ACCOUNT and not official_account:
        raise AppError(
            ErrorCode.BAD_USER_INPUT,
            "The official account is not configured here (WECHAT_OA_APPID, WECHAT_OA_SECRET): use app MINIPROGRAM.",
        )
    if trade_type == Order.TradeType.APP:
        if app == PayApp.OFFICIAL_ACCOUNT:
            raise AppError(ErrorCode.BAD_USER_INPUT, "APP payments are the merchant's app's: leave app out.")
        app = PayApp.MINIPROGRAM  # app_params name the merchant's appid
    # One query for both apps: the default follows where the user has an identity.
    apps = [appid for appid in (miniprogram, official_account) if appid]
    rows = list(user.wechat_identities.filter(appid__in=apps).values_list("appid", "openid", "last_login_at"))
    openids = {appid: openid for appid, openid, _ in rows}
    if app is None:
        logged_in = sorted((at, appid) for appid, _, at in rows if at is not None)
        latest = logged_in[-1][1] if logged_in else (miniprogram if miniprogram in openids or not rows else rows[0][0])
        app = PayApp.OFFICIAL_ACCOUNT if official_account and latest == official_account else PayApp.MINIPROGRAM
    appid = official_account if app == PayApp.OFFICIAL_ACCOUNT else miniprogram
    openid = openids.get(appid, "")
    if trade_type == Order.TradeType.JSAPI and not openid:
        if app == PayApp.OFFICIAL_ACCOUNT:
            raise AppError(
                ErrorCode.BAD_USER_INPUT,
                "JSAPI payments in the official account need your openid there: log in with officialAccountLogin "
                "(or bindOfficialAccount) first, or use app MINIPROGRAM.",
            )
        raise AppError(ErrorCode.BAD_USER_INPUT, "JSAPI payments need a WeChat login: call wechatLogin first.")
    return appid, openid


def create_wechatpay_order(
    *,
    user: User,
    sku: str,
    quantity: int,
    trade_type: str,
    api_version: str | None,
    client_ip: str,
    app: str | None = None,
) -> Payment:
    """A server-priced order and what pays it. `app` (PayApp) is the WeChat app it is placed for: its appid
    names the order (at WeChat Pay, in payParams, in every notify and answer) and its openid pays a JSAPI
    order; None picks the user's app (`_pay_app`)."""
    api_version = (api_version or settings.WECHATPAY_API_VERSION).upper()
    if api_version not in Order.ApiVersion.values:
        raise AppError(ErrorCode.BAD_USER_INPUT, "apiVersion must be V2 or V3.")
    if not providers.wechatpay_ready(api_version):
        raise AppError(
            ErrorCode.BAD_USER_INPUT, f"WeChat Pay {api_version} is not configured here: use the other version."
        )
    if trade_type not in WECHATPAY_TRADE_TYPES:
        raise AppError(ErrorCode.BAD_USER_INPUT, "tradeType must be JSAPI, NATIVE, H5 or APP.")
    if app is not None and app not in PayApp.__members__:
        raise AppError(ErrorCode.BAD_USER_INPUT, "app must be MINIPROGRAM or OFFICIAL_ACCOUNT.")
    product = _product(sku, quantity)
    appid, openid = _pay_app(user, app, trade_type)
    purchase = {
        "user": user,
        "product": product,
        "quantity": quantity,
        "amount": product.price * quantity,  # integer fen, from the server's price
        "provider": Order.Provider.WECHATPAY,
        "api_version": api_version,
        "trade_type": trade_type,
        "appid": appid,  # a retry for the other app is another order: WeChat Pay names one app per order
    }
    client = providers.wechatpay(api_version)
    order = _pending_order(purchase, sign_type=client.sign_type, payer_openid=openid)
    if not (order.prepay_id or order.code_url or order.h5_url):
        try:
            prepay = client.create(
                trade_type=trade_type,  # type: ignore[arg-type]
                out_trade_no=order.out_trade_no,
                description=product.title,
                amount=order.amount,
                notify_url=providers.notify_url("wechatpay_v2" if api_version == "V2" else "wechatpay_v3"),
                expires_at=order.expires_at,
                payer_openid=openid,
                client_ip=client_ip,
                appid=appid,
            )
        except (ProviderUnavailable, ProviderError) as exc:
            if isinstance(exc, ProviderError) and exc.errcode == "ORDERPAID":
                raise AppError(ErrorCode.CONFLICT, "This order is already paid: call syncOrder.") from exc
            raise _provider_failure(exc, what=f"create {order.out_trade_no}") from exc
        order.prepay_id, order.code_url, order.h5_url = prepay.prepay_id, prepay.code_url, prepay.h5_url
        order.save(update_fields=["prepay_id", "code_url", "h5_url"])
    payment = Payment(order=order, code_url=order.code_url, h5_url=order.h5_url)
    if trade_type == Order.TradeType.JSAPI:
        payment.pay_params = client.jsapi_params(order.prepay_id, appid=appid)
    elif trade_type == Order.TradeType.APP:
        payment.app_params = client.app_params(order.prepay_id)
    return payment


def return_url_allowed(url: str) -> bool:
    """An absolute http(s) URL on an ALIPAY_RETURN_HOSTS host: the return page redirects the browser there."""
    return on_allowed_host(url, settings.ALIPAY_RETURN_HOSTS)


def create_alipay_order(*, user: User, sku: str, quantity: int, method: str, return_url: str) -> Payment:
    """A server-priced Alipay order and what the payer opens: a pay URL (PAGE, WAP), the SDK's order
    string (APP) or a QR code (QR). `return_url` is the front end's page the payer lands on after
    paying (PAGE and WAP), through our return page."""
    if not providers.alipay_ready():
        raise AppError(ErrorCode.BAD_USER_INPUT, "Alipay is not configured here.")
    if method not in ALIPAY_METHODS:
        raise AppError(ErrorCode.BAD_USER_INPUT, "method must be PAGE, WAP, APP or QR.")
    if method in ("PAGE", "WAP") and not return_url:
        raise AppError(ErrorCode.BAD_USER_INPUT, "PAGE and WAP payments need a returnUrl.")
    if return_url and (
        len(return_url) > Order._meta.get_field("return_url").max_length or not return_url_allowed(return_url)
    ):
        raise AppError(ErrorCode.BAD_USER_INPUT, "returnUrl must be an http(s) address on an allowed host.")
    product = _product(sku, quantity)
    purchase = {
        "user": user,
        "product": product,
        "quantity": quantity,
        "amount": product.price * quantity,  # integer fen, from the server's price
        "provider": Order.Provider.ALIPAY,
        "api_version": "",
        "trade_type": method,
        "return_url": return_url,
    }
    order = _pending_order(purchase, sign_type="RSA2")
    client = providers.alipay()
    trade = {
        "out_trade_no": order.out_trade_no,
        "total": order.amount,
        "subject": product.title,
        "notify_url": providers.notify_url("alipay"),
        "time_expire": order.expires_at,
    }
    payment = Payment(order=order)
    if method == "PAGE":
        payment.pay_url = client.page_pay_url(**trade, return_url=gateways.alipay_return_url())
    elif method == "WAP":
        payment.pay_url = client.wap_pay_url(**trade, return_url=gateways.alipay_return_url(), quit_url=return_url)
    elif method == "APP":
        payment.order_string = client.app_order_string(**trade)
    else:
        if not order.code_url:
            try:
                order.code_url = client.precreate(**trade)
            except (ProviderUnavailable, ProviderError) as exc:
                if isinstance(exc, ProviderError) and exc.errcode == "ACQ.TRADE_HAS_SUCCESS":
                    raise AppError(ErrorCode.CONFLICT, "This order is already paid: call syncOrder.") from exc
                raise _provider_failure(exc, what=f"create {order.out_trade_no}", provider="Alipay") from exc
            order.save(update_fields=["code_url"])
        payment.code_url = order.code_url
    return payment


# --- applying provider results ----------------------------------------------------


class _Duplicate(Exception):
    """The event is stored already; leaving the transaction with this rolls back what came with it."""

    def __init__(self, key: str, outcome: Outcome) -> None:
        super().__init__(key)
        self.outcome = outcome


def _store_event(order: Order, *, key: str, source: str, kind: str, payload: dict[str, Any], outcome: Outcome) -> None:
    """Stores the event once: its unique key answers whether it was seen before (_Duplicate)."""
    try:
        PaymentEvent.objects.create(
            provider=order.provider,
            event_key=key,
            order=order,
            source=source,
            kind=kind,
            payload=payload,
            outcome=outcome.value,
        )
    except IntegrityError as exc:
        raise _Duplicate(key, outcome) from exc


def _jsonable(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool, type(None), dict, list)) else str(v) for k, v in raw.items()}


# What a provider result writes into our rows: (model field, result attribute).
PAID_FIELDS = (("transaction_id", "transaction_id"), ("payer_openid", "payer_openid"))
REFUND_FIELDS = (("provider_refund_id", "refund_id"),)


def _fits(model: Any, result: Any, fields: tuple[tuple[str, str], ...]) -> bool:
    """Whether the result's ids fit our columns: longer than a provider ever sends is no result of
    theirs, and is refused the same on every database (PostgreSQL would fail the write, SQLite
    store it whole)."""
    return all(len(getattr(result, attr) or "") <= model._meta.get_field(name).max_length for name, attr in fields)


def _locked_order(out_trade_no: str) -> Order | None:
    try:
        # Any provider's: out_trade_no is unique, and a result must then name that provider's app and merchant.
        return Order.objects.select_for_update().get(out_trade_no=out_trade_no)
    except Order.DoesNotExist:
        return None


def _locked_refund(out_refund_no: str) -> Refund | None:
    try:
        return Refund.objects.select_for_update().get(out_refund_no=out_refund_no)
    except Refund.DoesNotExist:
        return None


def _flag(order: Order, reason: str) -> None:
    """Marks the order for a human (the admin lists and counts such orders); reconciliation leaves it be."""
    order.needs_attention = True
    order.attention_reason = reason[: Order._meta.get_field("attention_reason").max_length]
    order.save(update_fields=["needs_attention", "attention_reason"])
    transaction.on_commit(lambda: logger.error("order %s needs attention: %s", order.out_trade_no, reason))


def _record_mismatch(
    order: Order, facts: tuple[Any, ...], *, source: str, kind: str, raw: dict[str, Any], reason: str
) -> Outcome:
    """A verified result that names our order with other facts: stored once (its facts are its key),
    the order flagged; nothing of it is applied."""
    digest = hashlib.sha256(json.dumps([order.pk, *facts], default=str).encode()).hexdigest()
    _store_event(
        order,
        key=f"{_prefix(order)}:mismatch:{digest}",
        source=source,
        kind=kind,
        payload=_jsonable(raw),
        outcome=Outcome.MISMATCH,
    )
    _flag(order, f"{kind} ({source}) does not match: {reason}")
    return Outcome.MISMATCH


def _prefix(order: Order) -> str:
    """Event keys are the provider's (wechatpay:..., alipay:...): two providers' numbers never collide."""
    return str(order.provider).lower()


def _trade_mismatch(trade: Trade, order: Order) -> str:
    """How a verified trade differs from the order it names ("" when it fits)."""
    appid, merchant = gateways.identity(order)
    if not constant_time_equal(trade.mchid, merchant) or not constant_time_equal(trade.appid, appid):
        return f"it names merchant {trade.mchid[:32]!r} and app {trade.appid[:32]!r}, not ours"
    if trade.state not in ("SUCCESS", "REFUND"):
        return ""
    if trade.amount != order.amount:
        return f"{trade.amount} fen paid for an order of {order.amount}"
    if not trade.transaction_id or not _fits(Order, trade, PAID_FIELDS):
        return f"its transaction id or payer is missing or longer than {gateways.name(order)}'s"
    return ""


def apply_trade(trade: Trade, *, source: str) -> Outcome:
    """Applies a verified trade state (notify, sync or reconciliation) exactly once, under the
    order's row lock. Duplicates change nothing: a payment already applied is seen on the order,
    anything else by its event's unique key. A trade that names our order but does not fit it is
    recorded and the order flagged for a human, not applied."""
    return _once(_apply_trade, trade, source)


def _once(apply: Callable[[Any, str], Outcome], result: Any, source: str) -> Outcome:
    """`apply` in one transaction; a duplicate event rolls all of it back and changes nothing (a
    duplicate mismatch is still answered as one)."""
    try:
        with transaction.atomic():
            return apply(result, source)
    except _Duplicate as duplicate:
        return Outcome.MISMATCH if duplicate.outcome == Outcome.MISMATCH else Outcome.NO_CHANGE


def _apply_trade(trade: Trade, source: str) -> Outcome:
    order = _locked_order(trade.out_trade_no)
    if order is None:
        logger.warning("payment %s for unknown order %s", source, trade.out_trade_no[:32])
        return Outcome.UNKNOWN_ORDER
    mismatch = _trade_mismatch(trade, order)
    if mismatch:
        facts = (trade.state, trade.amount, trade.transaction_id, trade.appid, trade.mchid)
        return _record_mismatch(
            order, facts, source=source, kind=f"TRANSACTION.{trade.state}", raw=trade.raw, reason=mismatch
        )
    if trade.state in ("SUCCESS", "REFUND"):
        if order.status != Order.Status.PENDING and order.transaction_id == trade.transaction_id:
            return Outcome.NO_CHANGE
        key, kind = f"{_prefix(order)}:paid:{trade.transaction_id}", "TRANSACTION.SUCCESS"
        if order.status == Order.Status.PENDING:
            transition(order, Order.Status.PAID)
            order.transaction_id = trade.transaction_id
            order.paid_at = trade.success_time or timezone.now()
            order.payer_openid = trade.payer_openid or order.payer_openid
            fields, outcome = ["status", "transaction_id", "paid_at", "payer_openid"], Outcome.APPLIED
            # After the commit, once (only this transition gets here): a broker outage is logged, the payment stands.
            transaction.on_commit(lambda: order_paid(order.pk), robust=True)
        else:
            fields, outcome = [], Outcome.CONFLICT
    elif trade.state in ("CLOSED", "REVOKED"):
        # PAYERROR is not here: the prepay can still be paid (another card), so the order stays open.
        if order.status != Order.Status.PENDING:
            return Outcome.NO_CHANGE
        key, kind = f"{_prefix(order)}:closed:{trade.out_trade_no}", f"TRANSACTION.{trade.state}"
        transition(order, Order.Status.CLOSED)
        order.closed_at = timezone.now()
        fields, outcome = ["status", "closed_at"], Outcome.APPLIED
    else:
        return Outcome.NO_CHANGE  # NOTPAY, USERPAYING: nothing happened yet
    _store_event(order, key=key, source=source, kind=kind, payload=_jsonable(trade.raw), outcome=outcome)
    if fields:
        order.save(update_fields=fields)
    if outcome == Outcome.CONFLICT:
        # Money arrived for an order we consider closed, or a second payment: staff refund it.
        _flag(order, f"a payment ({trade.transaction_id}) arrived for an order that is {order.status}")
    else:
        transaction.on_commit(lambda: logger.info("order %s is %s (%s)", order.out_trade_no, order.status, source))
    return outcome


def apply_refund(state: RefundState, *, source: str) -> Outcome:
    """Applies a verified refund state exactly once, under the order's and the refund's row locks."""
    return _once(_apply_refund, state, source)


def _apply_refund(state: RefundState, source: str) -> Outcome:
    order = _locked_order(state.out_trade_no)
    refund = _locked_refund(state.out_refund_no) if order else None
    if order is None or refund is None or refund.order_id != order.pk:
        logger.warning("refund %s for unknown refund %s", source, state.out_refund_no[:64])
        return Outcome.UNKNOWN_ORDER
    appid, merchant = gateways.identity(order)
    if (state.appid and not constant_time_equal(state.appid, appid)) or (
        state.mchid and not constant_time_equal(state.mchid, merchant)
    ):
        facts = (refund.pk, state.status, state.amount, state.refund_id, state.appid, state.mchid)
        reason = f"refund {refund.out_refund_no} names merchant {state.mchid[:32]!r} and app {state.appid[:32]!r}"
        return _record_mismatch(
            order, facts, source=source, kind=f"REFUND.{state.status}", raw=state.raw, reason=reason
        )
    if (state.amount is not None and state.amount != refund.amount) or not _fits(Refund, state, REFUND_FIELDS):
        facts = (refund.pk, state.status, state.amount, state.refund_id)
        reason = f"refund {refund.out_refund_no} of {refund.amount} fen reported as {state.amount}"
        return _record_mismatch(
            order, facts, source=source, kind=f"REFUND.{state.status}", raw=state.raw, reason=reason
        )
    if state.status not in ("SUCCESS", "CLOSED", "ABNORMAL") or refund.status == state.status:
        return Outcome.NO_CHANGE
    if refund.status == Refund.Status.SUCCESS:
        return Outcome.NO_CHANGE  # money that went out stays recorded
    if state.status == "SUCCESS" and refund.status == Refund.Status.CLOSED:
        # We had given up on it, but the money did go out: record it, and let a human look.
        _flag(order, f"refund {refund.out_refund_no} was closed here but {gateways.name(order)} reports it paid out")
    if state.status == "SUCCESS" and order.refunded_amount + refund.amount > order.amount:
        _flag(order, f"refund {refund.out_refund_no} would return more than was paid: not applied")
        return Outcome.CONFLICT
    _store_event(
        order,
        key=f"{_prefix(order)}:refund:{state.out_refund_no}:{state.status}",
        source=source,
        kind=f"REFUND.{state.status}",
        payload=_jsonable(state.raw),
        outcome=Outcome.APPLIED,
    )
    refund.status = state.status
    refund.provider_refund_id = state.refund_id or refund.provider_refund_id
    fields = ["status", "provider_refund_id"]
    if state.status == "SUCCESS":
        refund.succeeded_at = state.success_time or timezone.now()
        fields.append("succeeded_at")
        order.refunded_amount += refund.amount
        order_fields = ["refunded_amount"]
        # A closed order a payment arrived for stays closed while that money goes back.
        if order.refunded_amount == order.amount and order.status == Order.Status.PAID:
            transition(order, Order.Status.REFUNDED)
            order_fields.append("status")
        order.save(update_fields=order_fields)
    refund.save(update_fields=fields)
    return Outcome.APPLIED


# --- sync, close, refund -------------------------------------------------------------


def _query(order: Order) -> Trade:
    """The provider's view of the order (apply_trade checks that it names our merchant and app)."""
    return gateways.for_order(order).query(order.out_trade_no)


def sync_order(*, user: User, out_trade_no: str) -> Order:
    """Asks the provider (the front end's "paid" callback is never trusted) and applies the answer."""
    return _sync(order_for(user=user, out_trade_no=out_trade_no))


def sync_returned_alipay_order(out_trade_no: str) -> Order | None:
    """syncOrder for the payer Alipay's return page sends back (its redirect is verified, the buyer
    is not logged in there): the order, synced when Alipay answers, else as it stands."""
    order = Order.objects.filter(out_trade_no=out_trade_no, provider=Order.Provider.ALIPAY).first()
    if order is None:
        return None
    try:
        return _sync(order)
    except AppError as exc:
        logger.warning("return page of %s: %s", out_trade_no, exc.message)
        return order


def _sync(order: Order) -> Order:
    gateway = gateways.for_order(order)
    try:
        apply_trade(_query(order), source=PaymentEvent.Source.QUERY)
        for refund in order.refunds.filter(status__in=IN_FLIGHT_REFUNDS):
            state = gateway.query_refund(refund.out_refund_no, order.out_trade_no)
            apply_refund(state, source=PaymentEvent.Source.QUERY)
    except ProviderError as exc:
        if exc.errcode not in NOT_FOUND:
            raise _provider_failure(exc, what=f"sync {order.out_trade_no}", provider=gateways.name(order)) from exc
    except ProviderUnavailable as exc:
        raise _provider_failure(exc, what=f"sync {order.out_trade_no}", provider=gateways.name(order)) from exc
    order.refresh_from_db()
    return order


def close_order(*, user: User, out_trade_no: str) -> Order:
    order = order_for(user=user, out_trade_no=out_trade_no)
    if order.user_id != user.pk:
        raise AppError(ErrorCode.FORBIDDEN, "Only the buyer closes an order.")
    if order.status != Order.Status.PENDING:
        raise AppError(ErrorCode.CONFLICT, f"Only a pending order can be closed; this one is {order.status}.")
    _close_at_provider(order)
    return order


def _close_at_provider(order: Order) -> None:
    """Closes at the provider first (so it can no longer be paid), then here."""
    try:
        # Even without a prepay id here: a create that timed out may have reached the provider.
        try:
            gateways.for_order(order).close(order.out_trade_no)
        except ProviderError as exc:
            if exc.errcode not in NOT_FOUND | CLOSED_OR_PAID:
                raise
        # A close answer does not prove the order is unpaid (v3 answers 204 even for unknown
        # orders); only the order's state does.
        trade = _query(order)
        if trade.state in ("SUCCESS", "REFUND"):
            apply_trade(trade, source=PaymentEvent.Source.QUERY)
            raise AppError(ErrorCode.CONFLICT, "This order was paid meanwhile; it cannot be closed.")
        if trade.state == "USERPAYING":
            raise AppError(ErrorCode.CONFLICT, "The user is paying this order right now; try again shortly.")
    except ProviderError as exc:
        if exc.errcode == "USERPAYING":
            raise AppError(ErrorCode.CONFLICT, "The user is paying this order right now; try again shortly.") from exc
        if exc.errcode not in NOT_FOUND:
            raise _provider_failure(exc, what=f"close {order.out_trade_no}", provider=gateways.name(order)) from exc
        if gateways.payable_while_unseen(order) and order.expires_at > timezone.now():
            # Nothing at the provider to close, yet what the payer holds still pays until it expires.
            raise AppError(
                ErrorCode.CONFLICT,
                f"{gateways.name(order)} has not seen this order, so it cannot be closed there: its pay link "
                f"works until {order.expires_at.isoformat()}, and the order closes when that passes.",
            ) from exc
    except ProviderUnavailable as exc:
        raise _provider_failure(exc, what=f"close {order.out_trade_no}", provider=gateways.name(order)) from exc
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        if locked.status == Order.Status.PENDING:
            transition(locked, Order.Status.CLOSED)
            locked.closed_at = timezone.now()
            locked.save(update_fields=["status", "closed_at"])
    order.refresh_from_db()


def _request_refund(refund: Refund, order: Order) -> RefundState:
    """Asks the provider for `refund`; repeating it with the same out_refund_no is safe."""
    return gateways.for_order(order).refund(
        out_trade_no=order.out_trade_no,
        out_refund_no=refund.out_refund_no,
        total=order.amount,
        amount=refund.amount,
        reason=refund.reason,
        notify_url=gateways.refund_notify_url(order),
    )


def _refundable(order: Order) -> bool:
    """A paid order, or one a payment arrived for after it was closed (flagged): its money goes back."""
    if order.status == Order.Status.PAID:
        return True
    return (
        order.needs_attention
        and order.events.filter(outcome=PaymentEvent.Outcome.CONFLICT, kind="TRANSACTION.SUCCESS").exists()
    )


def refund_order(*, staff: User, out_trade_no: str, amount: int, reason: str) -> Refund:
    reason = (reason or "").strip()
    if len(reason) > 80:
        raise AppError(ErrorCode.BAD_USER_INPUT, "reason must be at most 80 characters.")
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(out_trade_no=out_trade_no).first()
        if order is None:
            raise AppError(ErrorCode.NOT_FOUND, "No such order.")
        if not _refundable(order):
            raise AppError(ErrorCode.CONFLICT, f"Only a paid order can be refunded; this one is {order.status}.")
        if not gateways.refunds_ready(order):
            raise AppError(ErrorCode.BAD_USER_INPUT, gateways.refunds_not_ready_message(order))
        refundable = refundable_amount(order)
        if not 1 <= amount <= refundable:
            raise AppError(ErrorCode.BAD_USER_INPUT, f"amount must be 1 to {refundable} fen.")
        # Committed before the provider is called, so the refund notify finds it.
        refund = Refund.objects.create(
            order=order,
            out_refund_no="R" + new_out_trade_no()[:31],
            amount=amount,
            reason=reason,
            requested_by=staff,
        )
    try:
        state = _request_refund(refund, order)
    except ProviderUnavailable as exc:
        # Stays PROCESSING: the same out_refund_no is safe to retry, and reconciliation asks later.
        raise _provider_failure(exc, what=f"refund {refund.out_refund_no}", provider=gateways.name(order)) from exc
    except ProviderError as exc:
        if exc.errcode not in RETRYABLE_REFUND_ERRORS:
            # A definite no: the money did not move.
            Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.CLOSED)
        raise _provider_failure(exc, what=f"refund {refund.out_refund_no}", provider=gateways.name(order)) from exc
    Refund.objects.filter(pk=refund.pk, provider_refund_id="").update(provider_refund_id=state.refund_id)
    if state.status in ("SUCCESS", "CLOSED", "ABNORMAL"):
        apply_refund(state, source=PaymentEvent.Source.QUERY)
    logger.info("refund %s of %s fen for order %s requested", refund.out_refund_no, amount, order.out_trade_no)
    refund.refresh_from_db()
    return refund


# --- reconciliation -------------------------------------------------------------------


@dataclass
class ReconcileReport:
    checked: int = 0
    paid: int = 0
    closed: int = 0
    refunds: int = 0
    # (out_trade_no or out_refund_no, why it failed)
    failed: list[tuple[str, str]] = field(default_factory=list)


def _reconcile_order(order: Order, now: dt.datetime, report: ReconcileReport) -> None:
    try:
        trade: Trade | None = _query(order)
    except ProviderError as exc:
        if exc.errcode not in NOT_FOUND:
            raise
        trade = None  # the provider never saw it (an Alipay payer who never opened the page)
    outcome = Outcome.NO_CHANGE if trade is None else apply_trade(trade, source=PaymentEvent.Source.QUERY)
    if trade is not None and outcome == Outcome.APPLIED:
        if trade.state in ("SUCCESS", "REFUND"):
            report.paid += 1
        else:
            report.closed += 1
    elif (trade is None or trade.state in ("NOTPAY", "USERPAYING", "PAYERROR")) and order.expires_at <= now:
        _close_at_provider(order)
        report.closed += 1


def _reconcile_refund(refund: Refund, report: ReconcileReport) -> None:
    order = refund.order
    try:
        state = gateways.for_order(order).query_refund(refund.out_refund_no, order.out_trade_no)
    except ProviderError as exc:
        if exc.errcode not in NOT_FOUND:
            raise
        # Our request never reached the provider: send it again, same out_refund_no, same amount.
        state = _request_refund(refund, order)
        logger.warning("refund %s was not at %s; sent again", refund.out_refund_no, gateways.name(order))
    if apply_refund(state, source=PaymentEvent.Source.QUERY) == Outcome.APPLIED:
        report.refunds += 1


def _why(exc: Exception, provider: str) -> str:
    if isinstance(exc, AppError):
        return exc.message
    if isinstance(exc, ProviderError):
        return f"{provider} refused: {exc.errcode} {exc.errmsg}"[:200]
    return f"{provider} unavailable: {exc}"[:200]


def reconcile(
    *,
    now: dt.datetime | None = None,
    older_than: dt.timedelta | None = None,
    limit: int = 500,
    progress: Any = None,
) -> ReconcileReport:
    """Queries pending orders older than `older_than` (RECONCILE_AFTER by default), closing expired ones
    at the provider first, and refunds still in flight; one failure never stops the run."""
    now = now or timezone.now()
    cutoff = now - (older_than if older_than is not None else dt.timedelta(seconds=settings.RECONCILE_AFTER))
    report = ReconcileReport()
    with transaction.atomic():
        # skip_locked: rows a notify is applying right now are left to it.
        candidates = list(
            Order.objects.select_for_update(skip_locked=True)
            .filter(
                status=Order.Status.PENDING,
                created_at__lt=cutoff,
                # A human is looking at it: closing it at expiry would overwrite what they need to see.
                needs_attention=False,
            )
            .order_by("created_at")
            .values_list("pk", flat=True)[:limit]
        )
    refunds = list(
        Refund.objects.filter(status__in=IN_FLIGHT_REFUNDS, created_at__lt=cutoff).values_list("pk", flat=True)[:limit]
    )
    total = len(candidates) + len(refunds)
    for done, pk in enumerate(candidates, start=1):
        order = Order.objects.select_related("user").get(pk=pk)
        report.checked += 1
        try:
            _reconcile_order(order, now, report)
        except (ProviderError, ProviderUnavailable, AppError) as exc:
            report.failed.append((order.out_trade_no, _why(exc, gateways.name(order))))
        if progress:
            progress(done, total)
    for done, pk in enumerate(refunds, start=len(candidates) + 1):
        refund = Refund.objects.select_related("order").get(pk=pk)
        try:
            _reconcile_refund(refund, report)
        except (ProviderError, ProviderUnavailable) as exc:
            report.failed.append((refund.out_refund_no, _why(exc, gateways.name(refund.order))))
        if progress:
            progress(done, total)
    return report
