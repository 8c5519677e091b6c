"""Reads of payments that need care: ownership and query counts."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet, Sum

from core.errors import AppError, ErrorCode
from payments.models import Order, Product, Refund

# ABNORMAL refunds can still succeed (the merchant fixes them at WeChat Pay), so they count as in flight.
IN_FLIGHT_REFUNDS = (Refund.Status.PROCESSING, Refund.Status.ABNORMAL)


def active_products() -> QuerySet[Product]:
    return Product.objects.filter(active=True).order_by("sku")


def order_for(*, user: Any, out_trade_no: str) -> Order:
    """The user's own order (staff: any); someone else's is NOT_FOUND, not FORBIDDEN."""
    try:
        order = Order.objects.select_related("product").get(out_trade_no=out_trade_no)
    except Order.DoesNotExist:
        order = None
    if order is None or (order.user_id != user.pk and not user.is_staff):
        raise AppError(ErrorCode.NOT_FOUND, "No such order.")
    return order


def orders_for(*, user: Any, status: str | None = None, provider: str | None = None) -> QuerySet[Order]:
    """The orders a user may list (theirs; staff: all), newest first, with their products."""
    orders = Order.objects.select_related("product").order_by("-created_at", "-id")
    if not user.is_staff:
        orders = orders.filter(user=user)
    if status:
        orders = orders.filter(status=status)
    if provider:
        orders = orders.filter(provider=provider)
    return orders


def refundable_amount(order: Order) -> int:
    """Fen of `order` not yet refunded nor in a refund still in flight (lock the order to act on it)."""
    pending = order.refunds.filter(status__in=IN_FLIGHT_REFUNDS).aggregate(s=Sum("amount"))["s"] or 0
    return int(order.amount - order.refunded_amount - pending)
