"""Reads of accounts that need care: the user a JWT names, and a user's WeChat ids."""

from __future__ import annotations

from django.db.models import F, FilteredRelation, Q

from accounts.models import User, WechatIdentity
from config import providers


def active_user_for_token(username: str) -> User | None:
    """The active user a JWT names, read with their mini-program openid and unionid in one query
    (a join on the user's identity in the mini-program): `User.openid` then needs no query."""
    appid = providers.miniprogram_appid()
    users = User.objects.annotate(
        miniprogram=FilteredRelation("wechat_identities", condition=Q(wechat_identities__appid=appid))
    ).annotate(miniprogram_openid=F("miniprogram__openid"), miniprogram_unionid=F("miniprogram__unionid"))
    try:
        # At most one row: usernames are unique, and so is a user's identity in one app.
        return users.get(username=username, is_active=True)
    except User.DoesNotExist:
        return None


def miniprogram_ids(user: User) -> tuple[str | None, str | None]:
    """(openid, unionid) of the user in the mini-program, None where there is none.

    Read along with the user by `active_user_for_token` (and set by the login that made them);
    for a user from anywhere else, one query, kept on the instance.
    """
    if not hasattr(user, "miniprogram_openid"):
        try:
            ids = WechatIdentity.objects.values_list("openid", "unionid").get(
                user=user, appid=providers.miniprogram_appid()
            )
        except WechatIdentity.DoesNotExist:
            ids = (None, None)
        user.miniprogram_openid, user.miniprogram_unionid = ids  # type: ignore[attr-defined]
    return user.miniprogram_openid, user.miniprogram_unionid or None  # type: ignore[attr-defined]


def openid_in(user: User, appid: str) -> str:
    """The user's openid in the WeChat app `appid` ("" when they never logged in there)."""
    if user.pk is None:
        return ""
    try:
        return str(WechatIdentity.objects.values_list("openid", flat=True).get(user=user, appid=appid))
    except WechatIdentity.DoesNotExist:
        return ""
