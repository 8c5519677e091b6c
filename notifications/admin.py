from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from notifications import services
from notifications.models import PushBatch, PushDelivery, Subscription


def progress_bar(batch: PushBatch) -> SafeString:
    """The batch's settled share as a bar (sent, skipped, failed), from a template."""
    total = batch.total or 1
    done = batch.total - batch.pending
    context = {
        "batch": batch,
        "done": done,
        "percent": round(100 * done / total) if batch.total else 100,
        "sent_pct": round(100 * batch.sent / total, 1),
        "skipped_pct": round(100 * batch.skipped / total, 1),
        "failed_pct": round(100 * (batch.failed + batch.unknown) / total, 1),
    }
    return SafeString(render_to_string("admin/notifications/progress.html", context))


class ReadOnly(admin.ModelAdmin):
    """Records of what was sent: read in the admin, changed only by the services."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PushBatch)
class PushBatchAdmin(ReadOnly):
    list_display = (
        "id",
        "channel",
        "template_id",
        "status",
        "progress",
        "total",
        "sent",
        "skipped",
        "failed",
        "unknown",
        "pending",
        "created_at",
    )
    list_filter = ("status", "channel")
    readonly_fields = [field.name for field in PushBatch._meta.fields]
    actions = ["cancel"]

    @admin.display(description="progress")
    def progress(self, batch: PushBatch) -> SafeString:
        return progress_bar(batch)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        batch = self.get_object(request, object_id)
        extra = {**(extra_context or {}), "progress": progress_bar(batch) if batch else ""}
        return super().change_view(request, object_id, form_url, extra_context=extra)

    @admin.action(description="Cancel the selected pushes (what is not sent yet is skipped)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[PushBatch]) -> None:
        cancelled = sum(
            services.end_batch(pk, services.BatchStatus.CANCELLED, "cancelled")
            for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"{cancelled} pushes cancelled.", messages.SUCCESS)


@admin.register(PushDelivery)
class PushDeliveryAdmin(ReadOnly):
    list_display = (
        "id",
        "batch",
        "user",
        "openid",
        "status",
        "errcode",
        "errmsg",
        "attempts",
        "msgid",
        "report",
        "sent_at",
    )
    list_filter = ("status", "errcode", "batch__channel")
    search_fields = ("openid", "msgid")
    list_select_related = ("batch", "user")
    raw_id_fields = ("batch", "user")
    readonly_fields = [field.name for field in PushDelivery._meta.fields]
    actions = ["retry_failed"]

    @admin.action(description="Retry the selected FAILED deliveries (UNKNOWN ones are never resent)")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[PushDelivery]) -> None:
        retried = services.retry_failed(queryset.values_list("pk", flat=True))
        self.message_user(request, f"{retried} failed deliveries will be sent again.", messages.SUCCESS)


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnly):
    list_display = ("user", "template_id", "status", "remaining", "updated_at")
    list_filter = ("status",)
    search_fields = ("template_id",)
    raw_id_fields = ("user",)
