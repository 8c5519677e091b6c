from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest

from accounts.models import WechatIdentity
from officialaccount.models import Follower, KeywordReply, TemplateSendReport, forget_cached_replies


class ReadOnly(admin.ModelAdmin):
    """Rows WeChat's events write: read in the admin, never added, changed or deleted by hand."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Follower)
class FollowerAdmin(ReadOnly):
    list_display = ("openid", "subscribed", "subscribed_at", "unsubscribed_at", "bound_user", "unionid", "appid")
    list_filter = ("subscribed", "appid")
    search_fields = ("openid", "unionid")
    date_hierarchy = "subscribed_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Follower]:
        # The bound user is the identity's (accounts): one subquery for the page, not a query per row.
        identity = WechatIdentity.objects.filter(appid=OuterRef("appid"), openid=OuterRef("openid"))
        return super().get_queryset(request).annotate(bound=Subquery(identity.values("user__username")[:1]))

    @admin.display(description="bound user", ordering="bound")
    def bound_user(self, follower: Follower) -> str:
        return getattr(follower, "bound", None) or "-"


@admin.register(KeywordReply)
class KeywordReplyAdmin(admin.ModelAdmin):
    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        # A bulk delete does not call KeywordReply.delete: the cached replies are emptied here.
        super().delete_queryset(request, queryset)
        transaction.on_commit(forget_cached_replies)

    list_display = ("keyword", "match", "reply_type", "active", "priority", "updated_at")
    list_editable = ("active", "priority")
    list_filter = ("match", "reply_type", "active")
    search_fields = ("keyword", "content")
    fieldsets = (
        (None, {"fields": ("match", "keyword", "active", "priority")}),
        ("Reply", {"fields": ("reply_type", "content", "media_id", "articles")}),
    )


@admin.register(TemplateSendReport)
class TemplateSendReportAdmin(ReadOnly):
    list_display = ("msg_id", "openid", "status", "sent_at", "received_at")
    list_filter = ("status",)
    search_fields = ("msg_id", "openid")
    date_hierarchy = "received_at"
