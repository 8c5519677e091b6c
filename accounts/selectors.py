"""Reads of accounts that need care: the user a JWT names, and a user's WeChat ids."""

from __future__ import annotations

from django.db.models import F, FilteredRelation, Q

from accounts.models import User, WechatIdentity
from config import providers


def active_user_for_token(username: str) -> User | None:
    """The active user a JWT names, read with their mini-program openid and unionid in one query
    (a join on the user's identity in the mini-program): `User.openid` then needs no query."""
    appid = providers.miniprogram_appid()
    return (
        User.objects.filter(username=username, is_active=True)
        .annotate(miniprogram=FilteredRelation("wechat_identities", condition=Q(wechat_identities__appid=appid)))
        .annotate(miniprogram_openid=F("miniprogram__openid"), miniprogram_unionid=F("miniprogram__unionid"))
        .first()
    )


def miniprogram_ids(user: User) -> tuple[str | None, str | None]:
    """(openid, unionid) of the user in the mini-program, None where there is none.

    Read along with the user by `active_user_for_token` (and set by the login that made them);
    for a user from anywhere else, one query, kept on the instance.
    """
    if not hasattr(user, "miniprogram_openid"):
        user.miniprogram_openid, user.miniprogram_unionid = (  # type: ignore[attr-defined]
            WechatIdentity.objects.filter(user=user, appid=providers.miniprogram_appid())
            .values_list("openid", "unionid")
            .first()
        ) or (None, None)
    return user.miniprogram_openid, user.miniprogram_unionid or None  # type: ignore[attr-defined]


def openid_in(user: User, appid: str) -> str:
    """The user's openid in the WeChat app `appid` ("" when they never logged in there)."""
    if user.pk is None:
        return ""
    openid = WechatIdentity.objects.filter(user=user, appid=appid).values_list("openid", flat=True).first()
    return openid or ""
