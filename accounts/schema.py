"""GraphQL for accounts: thin resolvers that parse input, call a service and shape output."""

from __future__ import annotations

from typing import Any

import graphene
from django.conf import settings
from graphene_django import DjangoObjectType
from graphql import GraphQLResolveInfo

from accounts import selectors, services
from accounts.models import User as UserModel
from core.errors import AppError, ErrorCode
from schema.auth import request_user
from schema.permissions import current_user, login_required
from schema.ratelimit import enforce


class User(DjangoObjectType):
    openid = graphene.String(description="The user's openid in this mini-program.")
    unionid = graphene.String()
    gender = graphene.Int(required=True, description="0 unknown, 1 male, 2 female (as WeChat reports it).")

    class Meta:
        model = UserModel
        fields = (
            "id",
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
            "date_joined",
        )

    @staticmethod
    def resolve_openid(user: UserModel, info: GraphQLResolveInfo) -> str | None:
        return selectors.miniprogram_ids(user)[0]

    @staticmethod
    def resolve_unionid(user: UserModel, info: GraphQLResolveInfo) -> str | None:
        return selectors.miniprogram_ids(user)[1]

    @staticmethod
    def resolve_gender(user: UserModel, info: GraphQLResolveInfo) -> int:
        return user.gender


class Query(graphene.ObjectType):
    me = graphene.Field(User, description="The logged-in user.")
    jssdk_config = graphene.Field(
        lambda: JssdkConfig,
        url=graphene.String(required=True, description="The page's location.href (its #fragment is dropped)."),
        js_api_list=graphene.List(graphene.NonNull(graphene.String), required=True),
        required=True,
        description="wx.config for an H5 page of the official account (its host in WECHAT_OA_JSSDK_HOSTS).",
    )

    @staticmethod
    def resolve_jssdk_config(root: Any, info: GraphQLResolveInfo, url: str, js_api_list: list[str]) -> Any:
        enforce(info.context, group="jssdkConfig:ip", key="ip", rate=settings.RATELIMIT_LOGIN)
        return services.jssdk_config(url=url, js_api_list=js_api_list)

    @staticmethod
    def resolve_me(root: Any, info: GraphQLResolveInfo) -> UserModel:
        return current_user(info)  # type: ignore[no-any-return]


class WechatLogin(graphene.Mutation):
    """Exchanges a wx.login code for an access token and a refresh token."""

    class Arguments:
        code = graphene.String(required=True)

    token = graphene.String(required=True)
    refresh_token = graphene.String(required=True)
    created = graphene.Boolean(required=True, description="True when this login created the user.")
    user = graphene.Field(User, required=True)

    @staticmethod
    def mutate(root: Any, info: GraphQLResolveInfo, code: str) -> WechatLogin:
        request = info.context
        enforce(request, group="wechatLogin:ip", key="ip", rate=settings.RATELIMIT_LOGIN)
        enforce(request, group="wechatLogin:code", key=lambda group, req: code, rate=settings.RATELIMIT_LOGIN_CODE)
        result = services.wechat_login(code=code)
        return WechatLogin(
            token=result.tokens.token,
            refresh_token=result.tokens.refresh_token,
            created=result.created,
            user=result.user,
        )


class TokenAuth(graphene.Mutation):
    """Username/password login for staff (the admin's accounts): an access token and a refresh token,
    as wechatLogin gives. Rate limited per client address and per username."""

    class Arguments:
        username = graphene.String(required=True)
        password = graphene.String(required=True)

    token = graphene.String(required=True)
    refresh_token = graphene.String(required=True)
    user = graphene.Field(User, required=True)

    @staticmethod
    def mutate(root: Any, info: GraphQLResolveInfo, username: str, password: str) -> TokenAuth:
        request = info.context
        rate = settings.RATELIMIT_STAFF_LOGIN
        enforce(request, group="tokenAuth:ip", key="ip", rate=rate)
        enforce(request, group="tokenAuth:username", key=lambda group, req: username.lower()[:150], rate=rate)
        result = services.staff_login(request=request, username=username, password=password)
        return TokenAuth(token=result.tokens.token, refresh_token=result.tokens.refresh_token, user=result.user)


class RefreshToken(graphene.Mutation):
    """Trades a refresh token for a new access token and a new refresh token (the old one dies)."""

    class Arguments:
        refresh_token = graphene.String(required=True)

    token = graphene.String(required=True)
    refresh_token = graphene.String(required=True)

    @staticmethod
    def mutate(root: Any, info: GraphQLResolveInfo, refresh_token: str) -> RefreshToken:
        pair = services.refresh_tokens(refresh_token=refresh_token)
        return RefreshToken(token=pair.token, refresh_token=pair.refresh_token)


class RevokeToken(graphene.Mutation):
    """Revokes a refresh token at once (log out)."""

    class Arguments:
        refresh_token = graphene.String(required=True)

    revoked = graphene.Boolean(required=True)

    @staticmethod
    def mutate(root: Any, info: GraphQLResolveInfo, refresh_token: str) -> RevokeToken:
        return RevokeToken(revoked=services.revoke_refresh_token(refresh_token=refresh_token))


class DecryptUserInfo(graphene.Mutation):
    """Saves the profile from wx.getUserProfile's encryptedData (checks rawData's signature when sent)."""

    class Arguments:
        encrypted_data = graphene.String(required=True)
        iv = graphene.String(required=True)
        raw_data = graphene.String()
        signature = graphene.String()

    Output = User

    @staticmethod
    @login_required
    def mutate(
        root: Any,
        info: GraphQLResolveInfo,
        encrypted_data: str,
        iv: str,
        raw_data: str | None = None,
        signature: str | None = None,
    ) -> UserModel:
        return services.decrypt_user_info(
            user=current_user(info), encrypted_data=encrypted_data, iv=iv, raw_data=raw_data, signature=signature
        )


class BindPhoneNumber(graphene.Mutation):
    """Binds the phone number from the getPhoneNumber button: its `code`, or the older encryptedData + iv."""

    class Arguments:
        code = graphene.String()
        encrypted_data = graphene.String()
        iv = graphene.String()

    Output = User

    @staticmethod
    @login_required
    def mutate(
        root: Any,
        info: GraphQLResolveInfo,
        code: str | None = None,
        encrypted_data: str | None = None,
        iv: str | None = None,
    ) -> UserModel:
        user = current_user(info)
        if code is not None and encrypted_data is None and iv is None:
            return services.bind_phone_by_code(user=user, code=code)
        if code is None and encrypted_data is not None and iv is not None:
            return services.bind_phone_by_encrypted_data(user=user, encrypted_data=encrypted_data, iv=iv)
        raise AppError(ErrorCode.BAD_USER_INPUT, "Send either code, or encryptedData with iv.")


class UpdateProfile(graphene.Mutation):
    class Arguments:
        nickname = graphene.String()
        avatar_url = graphene.String()

    Output = User

    @staticmethod
    @login_required
    def mutate(
        root: Any, info: GraphQLResolveInfo, nickname: str | None = None, avatar_url: str | None = None
    ) -> UserModel:
        return services.update_profile(user=current_user(info), nickname=nickname, avatar_url=avatar_url)


OAuthScope = graphene.Enum(
    "OAuthScope",
    [("BASE", "BASE"), ("USERINFO", "USERINFO")],
    description="BASE: the openid, silently; USERINFO: also the nickname and avatar, after the user consents.",
)


class OfficialAccountAuthorizeUrl(graphene.Mutation):
    """The official account's web OAuth consent URL: open it in WeChat; it comes back to redirectUri
    with `code` and `state` for officialAccountLogin (or, logged in, bindOfficialAccount)."""

    class Arguments:
        redirect_uri = graphene.String(required=True, description="On a WECHAT_OA_REDIRECT_HOSTS host.")
        scope = OAuthScope(required=True)

    url = graphene.String(required=True)
    state = graphene.String(
        required=True,
        description="Keep it (e.g. sessionStorage) and call officialAccountLogin only when the callback's state "
        "is this one: a link carrying someone else's code and state would log this browser in as them.",
    )

    @staticmethod
    def mutate(root: Any, info: GraphQLResolveInfo, redirect_uri: str, scope: Any) -> OfficialAccountAuthorizeUrl:
        enforce(info.context, group="oaAuthorize:ip", key="ip", rate=settings.RATELIMIT_LOGIN)
        requester = request_user(info.context)
        user = requester if requester.is_authenticated else None
        url, state = services.official_account_authorize_url(redirect_uri=redirect_uri, scope=scope.value, user=user)
        return OfficialAccountAuthorizeUrl(url=url, state=state)


class OfficialAccountLogin(graphene.Mutation):
    """Logs in the official account's user whose OAuth redirect brought `code` and `state`: the same
    user as on the mini-program when WeChat knows them as one (unionid)."""

    class Arguments:
        code = graphene.String(required=True)
        state = graphene.String(required=True)

    token = graphene.String(required=True)
    refresh_token = graphene.String(required=True)
    created = graphene.Boolean(required=True, description="True when this login created the user.")
    user = graphene.Field(User, required=True)

    @staticmethod
    def mutate(root: Any, info: GraphQLResolveInfo, code: str, state: str) -> OfficialAccountLogin:
        enforce(info.context, group="oaLogin:ip", key="ip", rate=settings.RATELIMIT_LOGIN)
        result = services.official_account_login(code=code, state=state)
        return OfficialAccountLogin(
            token=result.tokens.token,
            refresh_token=result.tokens.refresh_token,
            created=result.created,
            user=result.user,
        )


class BindOfficialAccount(graphene.Mutation):
    """Binds the official-account user of an OAuth redirect (started by officialAccountAuthorizeUrl
    while logged in) to you, so pushes reach you there."""

    class Arguments:
        code = graphene.String(required=True)
        state = graphene.String(required=True)

    Output = User

    @staticmethod
    @login_required
    def mutate(root: Any, info: GraphQLResolveInfo, code: str, state: str) -> UserModel:
        return services.bind_official_account(user=current_user(info), code=code, state=state)


class BindQrCode(graphene.ObjectType):
    url = graphene.String(required=True, description="What the QR code holds.")
    expires_at = graphene.DateTime(required=True)
    svg = graphene.String(required=True, description="The QR code as an inline SVG.")
    image_url = graphene.String(
        description="WeChat's picture of the same code (showqrcode; in the sandbox, the page that scans it)."
    )


class OfficialAccountBindQrCode(graphene.Mutation):
    """A QR code to scan in WeChat: following the account (or scanning, already following) binds it to
    you, and the account replies so. An account that cannot make scene codes gets an OAuth binding link
    to redirectUri instead."""

    class Arguments:
        redirect_uri = graphene.String(description="Only for the OAuth fallback.")

    Output = BindQrCode

    @staticmethod
    @login_required
    def mutate(root: Any, info: GraphQLResolveInfo, redirect_uri: str = "") -> services.BindQrCode:
        user = current_user(info)
        enforce(info.context, group="oaBindQr:user", key=lambda g, r: str(user.pk), rate=settings.RATELIMIT_ORDER)
        return services.official_account_bind_qr_code(user=user, redirect_uri=redirect_uri or "")


class JssdkConfig(graphene.ObjectType):
    """What wx.config takes (add debug yourself)."""

    app_id = graphene.String(name="appId", required=True)
    timestamp = graphene.Int(required=True)
    nonce_str = graphene.String(name="nonceStr", required=True)
    signature = graphene.String(required=True)
    js_api_list = graphene.List(graphene.NonNull(graphene.String), name="jsApiList", required=True)


class Mutation(graphene.ObjectType):
    wechat_login = WechatLogin.Field()
    token_auth = TokenAuth.Field()
    refresh_token = RefreshToken.Field()
    revoke_token = RevokeToken.Field()
    decrypt_user_info = DecryptUserInfo.Field()
    bind_phone_number = BindPhoneNumber.Field()
    update_profile = UpdateProfile.Field()
    official_account_authorize_url = OfficialAccountAuthorizeUrl.Field()
    official_account_login = OfficialAccountLogin.Field()
    bind_official_account = BindOfficialAccount.Field()
    official_account_bind_qr_code = OfficialAccountBindQrCode.Field()
