from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db import models

from accounts.models import RefreshToken, User, WechatIdentity


class WechatIdentityInline(admin.TabularInline):
    model = WechatIdentity
    extra = 0
    # session_key is deliberately absent: it never leaves the server.
    fields = ("kind", "appid", "openid", "unionid", "session_key_updated_at", "last_login_at")
    readonly_fields = fields
    can_delete = False


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "nickname", "phone_number", "is_staff", "date_joined")
    search_fields = ("username", "nickname", "phone_number", "wechat_identities__openid")
    inlines = [WechatIdentityInline]
    # WeChat serves avatars over https; a scheme-less URL typed here means the same (Django 6's default).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        (
            "WeChat profile",
            {
                "fields": (
                    "nickname",
                    "avatar_url",
                    "gender",
                    "language",
                    "city",
                    "province",
                    "country",
                    "phone_number",
                    "pure_phone_number",
                    "phone_country_code",
                )
            },
        ),
    )


@admin.register(WechatIdentity)
class WechatIdentityAdmin(admin.ModelAdmin):
    list_display = ("openid", "appid", "kind", "user", "unionid", "last_login_at")
    list_filter = ("kind", "appid")
    search_fields = ("openid", "unionid", "user__username", "user__nickname")
    # session_key is deliberately absent: it never leaves the server.
    fields = ("user", "kind", "appid", "openid", "unionid", "session_key_updated_at", "created_at", "last_login_at")
    readonly_fields = ("session_key_updated_at", "created_at")
    raw_id_fields = ("user",)


@admin.register(RefreshToken)
class RefreshTokenAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "created", "revoked", "rotated")
    list_filter = ("revoked", "rotated")
    raw_id_fields = ("user",)
    # The stored value is a digest; it is useless to show.
    exclude = ("token",)
    # Issued only by logins and refreshes, and revoked only by the action below (which stamps the time).
    readonly_fields = ("user", "created", "revoked", "rotated")
    actions = ["revoke"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    @admin.action(description="Revoke the selected refresh tokens")
    def revoke(self, request, queryset):  # type: ignore[no-untyped-def]
        from django.utils import timezone

        count = queryset.filter(revoked__isnull=True).update(revoked=timezone.now())
        self.message_user(request, f"Revoked {count} refresh tokens.")
