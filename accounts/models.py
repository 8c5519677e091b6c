from __future__ import annotations

import hashlib
import secrets
import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone
from graphql_jwt.settings import jwt_settings


def new_username() -> str:
    return "wx_" + uuid.uuid4().hex[:24]


class User(AbstractUser):
    """A person. WeChat users get a generated username; staff log in to the admin with a password."""

    class Gender(models.IntegerChoices):
        UNKNOWN = 0, "unknown"
        MALE = 1, "male"
        FEMALE = 2, "female"

    nickname = models.CharField(max_length=64, blank=True)
    avatar_url = models.URLField(max_length=512, blank=True)
    gender = models.PositiveSmallIntegerField(choices=Gender.choices, default=Gender.UNKNOWN)
    language = models.CharField(max_length=16, blank=True)
    city = models.CharField(max_length=64, blank=True)
    province = models.CharField(max_length=64, blank=True)
    country = models.CharField(max_length=64, blank=True)
    # E.164, e.g. +8613800138000; pure number and country code kept as WeChat gives them
    phone_number = models.CharField(max_length=32, blank=True)
    pure_phone_number = models.CharField(max_length=24, blank=True)
    phone_country_code = models.CharField(max_length=8, blank=True)


class WechatIdentity(models.Model):
    """One openid of a user in one WeChat app. The session_key never leaves the server."""

    class Kind(models.TextChoices):
        MINIPROGRAM = "miniprogram", "mini-program"
        OFFICIAL_ACCOUNT = "official_account", "official account"

    # Indexed by the (user, appid) constraint below, whose first column it is.
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="wechat_identities", db_index=False)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.MINIPROGRAM)
    appid = models.CharField(max_length=32)
    openid = models.CharField(max_length=64)
    unionid = models.CharField(max_length=64, blank=True)
    session_key = models.CharField(max_length=64, blank=True, editable=False)
    session_key_updated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "WeChat identities"
        constraints = [
            models.UniqueConstraint(fields=["appid", "openid"], name="wechat_identity_app_openid"),
            # One identity of a user in each app (a person has one openid per app): also the index of
            # "this user's identity in this app", read on every authenticated request.
            models.UniqueConstraint(fields=["user", "appid"], name="wechat_identity_user_app_unique"),
        ]
        # Not db_index=True: on PostgreSQL that adds a LIKE index, one more write per login for nothing.
        indexes = [models.Index(fields=["unionid"], name="wechat_identity_unionid")]

    def __str__(self) -> str:
        return f"{self.appid}/{self.openid}"

    def __repr__(self) -> str:  # no session_key in tracebacks or logs
        return f"<WechatIdentity {self.appid}/{self.openid} user={self.user_id}>"


def hash_refresh_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_refresh_token() -> tuple[str, str]:
    """(the raw token for the client, the digest to store)."""
    raw = secrets.token_hex(32)
    return raw, hash_refresh_token(raw)


class RefreshToken(models.Model):
    """A long-running refresh token (django-graphql-jwt's shape), stored as a SHA-256 digest.

    A leaked database hands out no working refresh tokens: the raw value exists
    only in the answer that issued it. Each use rotates it (see accounts.services).
    """

    # Indexed by refresh_token_user_live, whose first column it is.
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="refresh_tokens", db_index=False)
    token = models.CharField(max_length=64, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    revoked = models.DateTimeField(null=True, blank=True)
    # Revoked because it was exchanged for a new one: presenting it again is reuse (a stolen
    # copy), not a client retrying after a sign-out. db_default: the login statement omits it.
    rotated = models.BooleanField(default=False, db_default=False)

    class Meta:
        indexes = [models.Index(fields=["user", "revoked"], name="refresh_token_user_live")]
        constraints = [models.UniqueConstraint(fields=["token"], name="refresh_token_unique")]

    def __str__(self) -> str:
        return f"refresh token {self.pk} of user {self.user_id}"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self.token:
            self._raw_token, self.token = new_refresh_token()
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def get_token(self) -> str:
        """The raw token, available only on the instance that created it."""
        return self._raw_token

    def is_expired(self) -> bool:
        return self.created + jwt_settings.JWT_REFRESH_EXPIRATION_DELTA < timezone.now()
