from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.errors import AppError
from payments import services
from payments.models import Order, PaymentEvent, Product, Refund

# The index counts the orders that need a human, linking to them.
admin.site.index_template = "admin/payments_index.html"


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "title", "price", "active")
    list_filter = ("active",)
    search_fields = ("sku", "title")


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    fields = ("out_refund_no", "amount", "status", "reason", "created_at", "succeeded_at")
    readonly_fields = fields
    can_delete = False


class EventInline(admin.TabularInline):
    model = PaymentEvent
    extra = 0
    fields = ("event_key", "source", "kind", "outcome", "received_at")
    readonly_fields = fields
    can_delete = False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "out_trade_no",
        "user",
        "product",
        "amount",
        "status",
        "needs_attention",
        "api_version",
        "trade_type",
        "created_at",
    )
    list_filter = ("needs_attention", "status", "provider", "api_version", "trade_type")
    search_fields = ("out_trade_no", "transaction_id", "user__username", "payer_openid")
    date_hierarchy = "created_at"
    raw_id_fields = ("user", "product")
    # Money and state change only through services (notifies, sync, refunds), never by hand (a form's
    # save would write every column over a concurrent notify); the "settled" action clears the flag.
    readonly_fields = [f.name for f in Order._meta.fields]
    inlines = [RefundInline, EventInline]
    actions = ["sync", "close", "refund_in_full", "settled"]

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

    def has_change_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        # Nothing is editable by hand; "change" is the permission the sync/close/refund actions need.
        return request.user.has_perm("payments.change_order")  # type: ignore[union-attr]


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    list_display = ("out_refund_no", "order", "amount", "status", "created_at", "succeeded_at")
    list_filter = ("status",)
    search_fields = ("out_refund_no", "order__out_trade_no", "provider_refund_id")
    readonly_fields = [f.name for f in Refund._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(PaymentEvent)
class PaymentEventAdmin(admin.ModelAdmin):
    list_display = ("event_key", "order", "source", "kind", "outcome", "received_at")
    list_filter = ("provider", "source", "outcome", "kind")
    search_fields = ("event_key", "order__out_trade_no")
    readonly_fields = [f.name for f in PaymentEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
