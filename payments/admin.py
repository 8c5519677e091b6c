from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from core.errors import AppError
from core.money import yuan
from payments import selectors, services
from payments.models import Order, PaymentEvent, Product, Refund

# The index counts the orders that need a human, linking to them.
admin.site.index_template = "admin/payments_index.html"
# The app list beside every page would leave the orders list too narrow for a 1280 px screen; the
# breadcrumbs and the index lead everywhere.
admin.site.enable_nav_sidebar = False


def _money(fen: int) -> str:
    return f"{yuan(fen)} ({fen} fen)"


class AuditTrail(admin.ModelAdmin):
    """Rows that record what happened to money: read in the admin, never added, changed or deleted by hand."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "title", "price_shown", "active")
    list_filter = ("active",)
    search_fields = ("sku", "title")

    @admin.display(description="price", ordering="price")
    def price_shown(self, product: Product) -> str:
        return _money(product.price)

    def has_delete_permission(self, request: HttpRequest, obj: Product | None = None) -> bool:
        # A product that was ordered stays (orders point at it): make it inactive instead.
        return obj is None or not obj.orders.exists()


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    fields = ("out_refund_no", "amount_shown", "status", "reason", "created_at", "succeeded_at")
    readonly_fields = fields
    can_delete = False

    @admin.display(description="amount")
    def amount_shown(self, refund: Refund) -> str:
        return _money(refund.amount)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EventInline(admin.TabularInline):
    model = PaymentEvent
    extra = 0
    fields = ("event_key", "source", "kind", "outcome", "received_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RefundForm(forms.Form):
    reason = forms.CharField(max_length=80, required=False, help_text="Shown to the payer by WeChat Pay (80 at most).")

    def __init__(self, *args: Any, refundable: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields = {
            "amount": forms.IntegerField(
                label="Amount (fen)",
                min_value=1,
                max_value=max(refundable, 1),
                initial=refundable,
                help_text=f"1 to {refundable} fen; {yuan(refundable)} can be refunded.",
            ),
            **self.fields,
        }


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    # Fits a 1280 px screen beside the filters (tests/test_pages_in_chromium.py): narrow columns, the flag
    # beside the status, the provider (WeChat Pay: its API version) and trade type in one.
    list_display = ("out_trade_no", "payer", "amount_listed", "status_listed", "channel", "created")
    list_select_related = ("user", "product")
    list_filter = ("needs_attention", "status", "provider", "api_version", "trade_type")
    search_fields = ("out_trade_no", "transaction_id", "user__username", "payer_openid")
    date_hierarchy = "created_at"
    raw_id_fields = ("user", "product")
    # Money and state change only through services (notifies, sync, refunds), never by hand (a form's
    # save would write every column over a concurrent notify); the "settled" action clears the flag.
    readonly_fields = [f.name for f in Order._meta.fields]
    exclude = ("amount", "refunded_amount")
    inlines = [RefundInline, EventInline]
    actions = ["sync", "close", "refund_in_full", "settled"]
    change_form_template = "admin/payments/order/change_form.html"

    def get_readonly_fields(self, request: HttpRequest, obj: Order | None = None) -> list[str]:
        return ["amount_shown", "refunded_shown", *(f.name for f in Order._meta.fields if f.name not in self.exclude)]

    @admin.display(description="amount", ordering="amount")
    def amount_shown(self, order: Order) -> str:
        return _money(order.amount)

    @admin.display(description="refunded")
    def refunded_shown(self, order: Order) -> str:
        return _money(order.refunded_amount)

    @admin.display(description="channel", ordering="provider")
    def channel(self, order: Order) -> str:
        # "V3 JSAPI" for WeChat Pay, "Alipay PAGE" for Alipay (which has one API version).
        return f"{order.api_version or order.get_provider_display()} {order.trade_type}"

    @admin.display(description="user", ordering="user__username")
    def payer(self, order: Order) -> str:
        name = order.user.get_username()
        return format_html('<span title="{}">{}</span>', name, name if len(name) <= 14 else name[:13] + "…")

    @admin.display(description="amount", ordering="amount")
    def amount_listed(self, order: Order) -> str:
        return format_html('{}<br><span class="quiet">{} fen</span>', yuan(order.amount), order.amount)

    @admin.display(description="status", ordering="status")
    def status_listed(self, order: Order) -> str:
        if not order.needs_attention:
            return order.status
        return format_html('{} <b title="{}">⚠ attention</b>', order.status, order.attention_reason)

    @admin.display(description="created", ordering="created_at")
    def created(self, order: Order) -> str:
        return timezone.localtime(order.created_at).strftime("%Y-%m-%d %H:%M")

    def get_urls(self) -> list[Any]:
        refund = self.admin_site.admin_view(self.refund_view)
        return [path("<path:object_id>/refund/", refund, name="payments_order_refund"), *super().get_urls()]

    def refund_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Refunds part or all of one order: the amount is asked for (refund_in_full takes the rest)."""
        order = get_object_or_404(Order, pk=object_id)
        if not self.has_change_permission(request, order):
            raise PermissionDenied
        refundable = selectors.refundable_amount(order)
        form = RefundForm(request.POST or None, refundable=refundable)
        if request.method == "POST" and form.is_valid():
            try:
                refund = services.refund_order(
                    staff=request.user,  # type: ignore[arg-type]
                    out_trade_no=order.out_trade_no,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                )
            except AppError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    f"Refund {refund.out_refund_no} of {_money(refund.amount)}: {refund.status}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:payments_order_change", args=[order.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Refund order {order.out_trade_no}",
            "opts": self.opts,
            "original": order,
            "form": form,
            "amount": _money(order.amount),
            "refunded": _money(order.refunded_amount),
            "refundable": refundable,
        }
        return TemplateResponse(request, "admin/payments/order/refund.html", context)

    def _each(self, request: HttpRequest, queryset: QuerySet[Order], action, verb: str) -> None:  # type: ignore[no-untyped-def]
        done = 0
        for order in queryset:
            try:
                action(order)
                done += 1
            except AppError as exc:
                self.message_user(request, f"{order.out_trade_no}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{verb} {done} of {queryset.count()} orders.")

    @admin.action(description="Sync with the provider", permissions=["change"])
    def sync(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(
            request, queryset, lambda o: services.sync_order(user=request.user, out_trade_no=o.out_trade_no), "Synced"
        )

    @admin.action(description="Close (pending orders)", permissions=["change"])
    def close(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(
            request, queryset, lambda o: services.close_order(user=o.user, out_trade_no=o.out_trade_no), "Closed"
        )

    @admin.action(description="Refund what is left of the selected orders", permissions=["change"])
    def refund_in_full(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(
            request,
            queryset,
            lambda o: services.refund_order(
                staff=request.user, out_trade_no=o.out_trade_no, amount=o.amount - o.refunded_amount, reason="admin"
            ),
            "Refund requested for",
        )

    @admin.action(description="Mark as settled (clear the attention flag)", permissions=["change"])
    def settled(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        cleared = queryset.filter(needs_attention=True).update(needs_attention=False)
        self.message_user(request, f"Cleared the attention flag of {cleared} orders.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        # Nothing is editable by hand; "change" is the permission the sync/close/refund actions need.
        return request.user.has_perm("payments.change_order")  # type: ignore[union-attr]


@admin.register(Refund)
class RefundAdmin(AuditTrail):
    list_display = ("out_refund_no", "order", "amount_shown", "status", "created_at", "succeeded_at")
    list_select_related = ("order",)
    list_filter = ("status",)
    search_fields = ("out_refund_no", "order__out_trade_no", "provider_refund_id")

    @admin.display(description="amount", ordering="amount")
    def amount_shown(self, refund: Refund) -> str:
        return _money(refund.amount)


@admin.register(PaymentEvent)
class PaymentEventAdmin(AuditTrail):
    list_display = ("event_key", "order", "source", "kind", "outcome", "received_at")
    list_select_related = ("order",)
    list_filter = ("provider", "source", "outcome", "kind")
    search_fields = ("event_key", "order__out_trade_no")
