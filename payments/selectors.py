"""Reads of payments that need care: ownership and query counts."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from config.db import Statement
from payments.models import Order, Product
from schema.errors import AppError, ErrorCode


def active_products() -> QuerySet[Product]:
    return Product.objects.filter(active=True).order_by("sku")


def order_for(*, user: Any, out_trade_no: str) -> Order:
    """The user's own order (staff: any); someone else's is NOT_FOUND, not FORBIDDEN."""
    order = Order.objects.select_related("product").filter(out_trade_no=out_trade_no).first()
    if order is None or (order.user_id != user.pk and not user.is_staff):
        raise AppError(ErrorCode.NOT_FOUND, "No such order.")
    return order


def orders_for(*, user: Any, status: str | None = None, provider: str | None = None) -> QuerySet[Order]:
    orders = Order.objects.select_related("product").order_by("-created_at", "-id")
    if not user.is_staff:
        orders = orders.filter(user=user)
    if status:
        orders = orders.filter(status=status)
    if provider:
        orders = orders.filter(provider=provider)
    return orders


@functools.cache
def _page_statement(by_user: bool, by_status: bool, by_provider: bool) -> tuple[Statement, list[str], list[str]]:
    """The page of orders with their products, newest first: one prepared statement per filter set
    (a generic plan of `$1 IS NULL OR ...` would not use the per-user index)."""
    quote = connection.ops.quote_name
    order_fields, product_fields = Order._meta.concrete_fields, Product._meta.concrete_fields
    columns = [f"o.{quote(f.column)}" for f in order_fields] + [f"p.{quote(f.column)}" for f in product_fields]
    where, types = [], []
    for used, column, pg_type in (
        (by_user, "user_id", "bigint"),
        (by_status, "status", "text"),
        (by_provider, "provider", "text"),
    ):
        if used:
            where.append(f"o.{quote(column)} = %s")
            types.append(pg_type)
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(Order._meta.db_table)} o "  # noqa: S608
        f"JOIN {quote(Product._meta.db_table)} p ON p.{quote('id')} = o.{quote('product_id')} "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} "
        f"ORDER BY o.{quote('created_at')} DESC, o.{quote('id')} DESC LIMIT %s OFFSET %s"
    )
    name = "wxb_orders_" + "".join("1" if used else "0" for used in (by_user, by_status, by_provider))
    order_names, product_names = [f.attname for f in order_fields], [f.attname for f in product_fields]
    return Statement(name, sql, (*types, "bigint", "bigint")), order_names, product_names


@dataclass(frozen=True)
class OrderPage:
    """The orders a user may list (theirs; staff: all), filtered, read a page at a time.

    `rows` is what the `orders` connection runs: one prepared statement of the page, no count.
    `queryset` is the same set for what needs the whole of it (paging backwards, the admin).
    """

    user: Any
    status: str | None = None
    provider: str | None = None

    def queryset(self) -> QuerySet[Order]:
        return orders_for(user=self.user, status=self.status, provider=self.provider)

    def rows(self, offset: int, limit: int) -> list[Order]:
        if connection.vendor != "postgresql":
            # Other backends need Django's value converters (SQLite returns dates as text).
            return list(self.queryset()[offset : offset + limit])
        by_user = not self.user.is_staff
        statement, order_names, product_names = _page_statement(by_user, bool(self.status), bool(self.provider))
        params = [v for v in (self.user.pk if by_user else None, self.status, self.provider) if v is not None]
        with connection.cursor() as cursor:
            statement.execute(cursor, [*params, limit, offset])
            fetched = cursor.fetchall()
        split = len(order_names)
        products: dict[Any, Product] = {}
        page = []
        for row in fetched:
            order = Order.from_db(connection.alias, order_names, row[:split])
            product = products.get(order.product_id)
            if product is None:
                product = products[order.product_id] = Product.from_db(connection.alias, product_names, row[split:])
            Order.product.field.set_cached_value(order, product)
            page.append(order)
        return page
