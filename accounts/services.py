"""Every write and rule of accounts: login, tokens, user data, phone, profile."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import segno
from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone
from graphql_jwt.shortcuts import get_token

from accounts.models import RefreshToken, User, WechatIdentity, hash_refresh_token, new_username
from config import providers
from core.errors import AppError, ErrorCode
from core.urls import on_allowed_host
from providers.compare import constant_time_equal
from providers.http import ProviderError, ProviderUnavailable
from providers.wechat.crypto import DecryptError, decrypt_user_data, user_data_signature
from providers.wechat.messages import jssdk_signature

logger = logging.getLogger(__name__)

MAX_CODE_LENGTH = 128
# Clock skew allowed for a watermark that claims to be from the future.
WATERMARK_SKEW = 300

LOGIN_ERRORS = {
    40029: (ErrorCode.BAD_USER_INPUT, "This login code is invalid: call wx.login again for a fresh code."),
    40163: (ErrorCode.BAD_USER_INPUT, "This login code was already used: call wx.login again for a fresh code."),
    45011: (ErrorCode.RATE_LIMITED, "WeChat is limiting logins right now: wait a minute and try again."),
    40226: (ErrorCode.FORBIDDEN, "WeChat flagged this account as high risk; it cannot log in."),
}
PHONE_ERRORS = {
    40029: (ErrorCode.BAD_USER_INPUT, "This phone code is invalid or expired: ask the user to tap the button again."),
    40163: (ErrorCode.BAD_USER_INPUT, "This phone code was already used: ask the user to tap the button again."),
    45011: (ErrorCode.RATE_LIMITED, "WeChat is limiting phone-number requests: wait a minute and try again."),
}


@dataclass(frozen=True)
class TokenPair:
    token: str
    refresh_token: str


@dataclass(frozen=True)
class LoginResult:
    user: User
    created: bool
    tokens: TokenPair


def _provider_call(fn: Any, *args: Any, errors: dict[int, tuple[ErrorCode, str]]) -> Any:
    """Calls the provider, turning its failures into AppErrors a client can act on."""
    try:
        return fn(*args)
    except (ProviderUnavailable, ProviderError) as exc:
        raise _provider_failure(exc, errors) from exc


def _provider_failure(exc: ProviderUnavailable | ProviderError, errors: dict[int, tuple[ErrorCode, str]]) -> AppError:
    if isinstance(exc, ProviderUnavailable):
        logger.warning("wechat unavailable: %s", exc.message)
        return AppError(ErrorCode.PROVIDER_UNAVAILABLE, "WeChat is not reachable right now: try again shortly.")
    known = errors.get(exc.errcode) if isinstance(exc.errcode, int) else None
    logger.info("wechat refused: errcode=%s", exc.errcode)
    if known:
        return AppError(*known)
    return AppError(ErrorCode.PROVIDER_ERROR, f"WeChat refused the request (errcode {exc.errcode}).")


# --- tokens ---------------------------------------------------------------------


def issue_tokens(user: User) -> TokenPair:
    refresh = RefreshToken.objects.create(user=user)
    return TokenPair(token=get_token(user), refresh_token=refresh.get_token())


def _revoke_all(user_id: int) -> int:
    return RefreshToken.objects.filter(user_id=user_id, revoked__isnull=True).update(revoked=timezone.now())


def refresh_tokens(*, refresh_token: str) -> TokenPair:
    """Rotates a refresh token.

    A token rotated less than JWT_REFRESH_REUSE_SECONDS ago and presented again (a client firing
    parallel requests after a 401) gets a fresh pair of the same user, unless one of their sessions was
    signed out since (then it is only refused). Presented later, it is reuse (RFC 9700):
    every session of the user is signed out. A token that was revoked (signed out) is only refused.
    """
    digest = hash_refresh_token(refresh_token)
    now = timezone.now()
    with transaction.atomic():
        try:
            row = RefreshToken.objects.select_for_update(of=("self",)).select_related("user").get(token=digest)
        except RefreshToken.DoesNotExist:
            raise AppError(ErrorCode.UNAUTHENTICATED, "Unknown refresh token: log in again.") from None
        usable = not row.is_expired() and row.user.is_active
        if row.revoked is None:
            if not usable:
                raise AppError(ErrorCode.UNAUTHENTICATED, "This refresh token has expired: log in again.")
            row.revoked = now
            row.rotated = True
            row.save(update_fields=["revoked", "rotated"])
            return issue_tokens(row.user)
        if not row.rotated:
            raise AppError(ErrorCode.UNAUTHENTICATED, "This refresh token was revoked: log in again.")
        if now - row.revoked < dt.timedelta(seconds=settings.JWT_REFRESH_REUSE_SECONDS):
            if usable and not _signed_out_since(row):
                return issue_tokens(row.user)
            raise AppError(ErrorCode.UNAUTHENTICATED, "This refresh token was already used: log in again.")
        reused_by = row.user_id
    # Outside the block above, so the revocation commits although we answer with an error.
    revoked = _revoke_all(reused_by)
    logger.warning("refresh token reused for user %s: revoked %s tokens", reused_by, revoked)
    raise AppError(
        ErrorCode.UNAUTHENTICATED,
        "This refresh token was already used; for safety every session was signed out: log in again.",
    )


def _signed_out_since(row: RefreshToken) -> bool:
    """Whether any session of the user was signed out (a token revoked, not rotated) since `row` was
    rotated: the reuse interval never brings a signed-out session back."""
    assert row.revoked is not None
    return RefreshToken.objects.filter(user_id=row.user_id, rotated=False, revoked__gte=row.revoked).exists()


def revoke_refresh_token(*, refresh_token: str) -> bool:
    digest = hash_refresh_token(refresh_token)
    if RefreshToken.objects.filter(token=digest, revoked__isnull=True).update(revoked=timezone.now()):
        return True
    if RefreshToken.objects.filter(token=digest).exists():
        return True  # already revoked: revoking is idempotent
    raise AppError(ErrorCode.UNAUTHENTICATED, "Unknown refresh token.")


# --- login ----------------------------------------------------------------------


def _identity_for_login(
    *, appid: str, openid: str, unionid: str | None, kind: str, now: Any, fields: dict[str, Any]
) -> tuple[WechatIdentity, bool]:
    """The identity of this openid in `appid`, found or created (with its user, or the user its unionid
    already names), with `fields` set; (identity, whether its user was created). Runs inside the
    login's transaction."""
    identities = WechatIdentity.objects.select_related("user")
    try:
        identity = identities.get(appid=appid, openid=openid)
    except WechatIdentity.DoesNotExist:
        try:
            # A savepoint: a concurrent first login of the same person that commits first makes
            # this insert fail on the (appid, openid) constraint, and only this part rolls back.
            with transaction.atomic():
                return _new_identity(appid=appid, openid=openid, unionid=unionid, kind=kind, fields=fields, now=now)
        except IntegrityError:
            identity = identities.filter(appid=appid, openid=openid).first()
            if identity is None:
                # Not that race: the (user, appid) constraint. The person this unionid names has another
                # openid in this app already (bound to them some other way).
                raise AppError(
                    ErrorCode.CONFLICT,
                    "Your account already has another WeChat user in this app: ask support to unbind it.",
                ) from None
    if not identity.user.is_active:
        raise AppError(ErrorCode.FORBIDDEN, "This account is disabled.")
    if unionid and identity.unionid != unionid:
        fields["unionid"] = unionid
    for name, value in fields.items():
        setattr(identity, name, value)
    identity.save(update_fields=list(fields))
    return identity, False


def _new_identity(
    *, appid: str, openid: str, unionid: str | None, kind: str, fields: dict[str, Any], now: Any
) -> tuple[WechatIdentity, bool]:
    # A unionid already known from another app of ours is the same person.
    sibling = WechatIdentity.objects.select_related("user").filter(unionid=unionid).first() if unionid else None
    if sibling is not None and not sibling.user.is_active:
        raise AppError(ErrorCode.FORBIDDEN, "This account is disabled.")
    user = sibling.user if sibling else User.objects.create_user(username=new_username(), last_login=now)
    identity = WechatIdentity.objects.create(
        user=user, appid=appid, openid=openid, unionid=unionid or "", kind=kind, **fields
    )
    return identity, sibling is None


def wechat_login(*, code: str) -> LoginResult:
    """Exchanges a wx.login code: the identity (and a first login's user) with the new session_key,
    and a refresh token, committed together or not at all."""
    code = (code or "").strip()
    if not code or len(code) > MAX_CODE_LENGTH:
        raise AppError(ErrorCode.BAD_USER_INPUT, "Send the code from wx.login.")
    client = providers.wechat_miniprogram()
    session = _provider_call(client.code2session, code, errors=LOGIN_ERRORS)
    with transaction.atomic(durable=True):
        now = timezone.now()
        identity, created = _identity_for_login(
            appid=client.config.appid,
            openid=session.openid,
            unionid=session.unionid,
            kind=WechatIdentity.Kind.MINIPROGRAM,
            now=now,
            fields={"session_key": session.session_key, "session_key_updated_at": now, "last_login_at": now},
        )
        tokens = issue_tokens(identity.user)
    user = identity.user
    # What `User.openid` / `unionid` read (accounts.selectors.miniprogram_ids), known here already.
    user.miniprogram_openid, user.miniprogram_unionid = identity.openid, identity.unionid  # type: ignore[attr-defined]
    logger.info("wechat login openid=%s user=%s created=%s", session.openid, user.pk, created)
    return LoginResult(user=user, created=created, tokens=tokens)


def staff_login(*, request: Any, username: str, password: str) -> LoginResult:
    """A username/password login for staff (the admin's accounts), so staff operations work from
    GraphiQL or a back office. Any other outcome is one answer: no hint which part was wrong."""
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_staff:
        logger.info("staff login refused for username=%r", username[:150])
        raise AppError(ErrorCode.UNAUTHENTICATED, "Wrong username or password, or not a staff account.")
    with transaction.atomic(durable=True):
        user.last_login = timezone.now()
        user.save(update_fields=["last_login"])
        tokens = issue_tokens(user)
    logger.info("staff login user=%s", user.pk)
    return LoginResult(user=user, created=False, tokens=tokens)


# --- user data ------------------------------------------------------------------


def miniprogram_identity(user: User) -> WechatIdentity:
    identity = WechatIdentity.objects.filter(user=user, appid=providers.miniprogram_appid()).first()
    if identity is None or not identity.session_key:
        raise AppError(ErrorCode.BAD_USER_INPUT, "No mini-program session: log in with wechatLogin first.")
    return identity


def _decrypt(identity: WechatIdentity, encrypted_data: str, iv: str) -> dict[str, Any]:
    try:
        payload = decrypt_user_data(identity.session_key, encrypted_data, iv, appid=identity.appid)
    except DecryptError as exc:
        # One message for every reason: telling a bad pad from bad JSON would be a padding oracle.
        logger.info("user data for user %s not decrypted: %s", identity.user_id, exc)
        raise AppError(
            ErrorCode.BAD_USER_INPUT,
            "Could not decrypt the data. If wx.login ran since, call wechatLogin again and retry.",
        ) from exc
    age = time.time() - payload["watermark"]["timestamp"]
    if age > settings.WECHAT_USER_DATA_MAX_AGE or age < -WATERMARK_SKEW:
        raise AppError(ErrorCode.BAD_USER_INPUT, "This encrypted data is too old: fetch it again and send it at once.")
    if payload.get("openId") not in (None, identity.openid):
        raise AppError(ErrorCode.BAD_USER_INPUT, "This encrypted data belongs to another user.")
    return payload


def _save(user: User, fields: list[str]) -> User:
    try:
        others = [f.name for f in User._meta.concrete_fields if f.name not in fields]
        user.full_clean(exclude=others, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        names = ", ".join(sorted(exc.message_dict))
        raise AppError(ErrorCode.BAD_USER_INPUT, f"Invalid value for: {names}.") from exc
    user.save(update_fields=fields)
    return user


PROFILE_FIELDS = {
    "nickName": "nickname",
    "avatarUrl": "avatar_url",
    "gender": "gender",
    "language": "language",
    "city": "city",
    "province": "province",
    "country": "country",
}


def decrypt_user_info(*, user: User, encrypted_data: str, iv: str, raw_data: str | None, signature: str | None) -> User:
    identity = miniprogram_identity(user)
    if signature is not None or raw_data is not None:
        if not signature or raw_data is None:
            raise AppError(ErrorCode.BAD_USER_INPUT, "Send rawData and signature together.")
        expected = user_data_signature(raw_data, identity.session_key)
        if not constant_time_equal(signature.lower(), expected):
            raise AppError(
                ErrorCode.BAD_USER_INPUT,
                "rawData does not match its signature. If wx.login ran since, call wechatLogin again and retry.",
            )
    payload = _decrypt(identity, encrypted_data, iv)
    changed = []
    for source, field in PROFILE_FIELDS.items():
        value = payload.get(source)
        if value is None:
            continue
        if field == "gender":
            value = value if value in (0, 1, 2) else 0
        setattr(user, field, value)
        changed.append(field)
    if changed:
        _save(user, changed)
    return user


def _set_phone(user: User, *, phone_number: str, pure: str, country_code: str) -> User:
    user.pure_phone_number = pure
    user.phone_country_code = country_code
    user.phone_number = f"+{country_code}{pure}" if country_code and pure else phone_number
    return _save(user, ["phone_number", "pure_phone_number", "phone_country_code"])


def bind_phone_by_code(*, user: User, code: str) -> User:
    code = (code or "").strip()
    if not code or len(code) > MAX_CODE_LENGTH:
        raise AppError(ErrorCode.BAD_USER_INPUT, "Send the code from the getPhoneNumber button.")
    info = _provider_call(providers.wechat_miniprogram().get_phone_number, code, errors=PHONE_ERRORS)
    return _set_phone(user, phone_number=info.phone_number, pure=info.pure_phone_number, country_code=info.country_code)


def bind_phone_by_encrypted_data(*, user: User, encrypted_data: str, iv: str) -> User:
    payload = _decrypt(miniprogram_identity(user), encrypted_data, iv)
    pure = str(payload.get("purePhoneNumber") or "")
    if not pure:
        raise AppError(ErrorCode.BAD_USER_INPUT, "The encrypted data holds no phone number.")
    return _set_phone(
        user,
        phone_number=str(payload.get("phoneNumber") or pure),
        pure=pure,
        country_code=str(payload.get("countryCode") or ""),
    )


_url = URLValidator(schemes=["https", "http"])


def update_profile(*, user: User, nickname: str | None, avatar_url: str | None) -> User:
    fields = []
    if nickname is not None:
        nickname = nickname.strip()
        if not 1 <= len(nickname) <= 64:
            raise AppError(ErrorCode.BAD_USER_INPUT, "nickname must be 1 to 64 characters.")
        user.nickname = nickname
        fields.append("nickname")
    if avatar_url is not None:
        try:
            _url(avatar_url)
        except ValidationError as exc:
            raise AppError(ErrorCode.BAD_USER_INPUT, "avatarUrl must be an http(s) URL.") from exc
        user.avatar_url = avatar_url
        fields.append("avatar_url")
    if not fields:
        raise AppError(ErrorCode.BAD_USER_INPUT, "Send nickname, avatarUrl or both.")
    return _save(user, fields)


# --- the official account: web OAuth login and binding, the bind QR code, JS-SDK ----------------------

OAUTH_SCOPES = {"BASE": "snsapi_base", "USERINFO": "snsapi_userinfo"}
OAUTH_SECONDS = 600  # a state (and a used code) is kept this long: WeChat's codes live 5 minutes
BIND_QR_SECONDS = 600
MAX_JS_APIS = 64
OAUTH_ERRORS = {
    40029: (ErrorCode.BAD_USER_INPUT, "This OAuth code is invalid or expired: start the login again."),
    40163: (ErrorCode.BAD_USER_INPUT, "This OAuth code was already used: start the login again."),
    45011: (ErrorCode.RATE_LIMITED, "WeChat is limiting logins right now: wait a minute and try again."),
}


@dataclass(frozen=True)
class BindQrCode:
    url: str  # what the QR code holds
    expires_at: dt.datetime
    svg: str
    image_url: str = ""  # WeChat's picture of the code (showqrcode); none for the OAuth fallback


@dataclass(frozen=True)
class JssdkConfig:
    app_id: str
    timestamp: int
    nonce_str: str
    signature: str
    js_api_list: list[str]


def _official_account() -> Any:
    if not providers.official_account_ready():
        raise AppError(ErrorCode.BAD_USER_INPUT, "The official account is not configured here.")
    return providers.official_account()


def _state_key(state: str) -> str:
    return "oa:state:" + hashlib.sha256(state.encode()).hexdigest()


def official_account_authorize_url(*, redirect_uri: str, scope: str, user: User | None) -> tuple[str, str]:
    """(The consent URL of a web OAuth login (or, logged in, a binding) that comes back to `redirect_uri`
    with a code and a state, the state): random, kept here for 10 minutes, usable once, and only by
    whoever asked for it (a logged-in user's state binds only that user). The page keeps the state and
    sends a callback on only when its state is that one: a link carrying someone else's code and state
    would log the browser in as them (login CSRF)."""
    client = _official_account()
    if scope not in OAUTH_SCOPES:
        raise AppError(ErrorCode.BAD_USER_INPUT, "scope must be BASE or USERINFO.")
    if len(redirect_uri) > 1024 or not on_allowed_host(redirect_uri, settings.WECHAT_OA_REDIRECT_HOSTS):
        raise AppError(ErrorCode.BAD_USER_INPUT, "redirectUri must be an http(s) address on an allowed host.")
    state = secrets.token_hex(16)  # WeChat takes a-z, A-Z, 0-9 only
    cache.set(_state_key(state), {"user": user.pk if user else None}, OAUTH_SECONDS)
    return str(client.authorize_url(redirect_uri, OAUTH_SCOPES[scope], state)), state


def _take_state(state: str) -> dict[str, Any]:
    """The state's record, removed as it is read: only the one caller whose delete wins gets it."""
    key = _state_key(state or "")
    pending = cache.get(key)
    if not isinstance(pending, dict) or not cache.delete(key):
        raise AppError(
            ErrorCode.BAD_USER_INPUT, "Unknown, expired or used state: start again with officialAccountAuthorizeUrl."
        )
    return pending


def _oauth(code: str, state: str) -> tuple[Any, Any, dict[str, Any]]:
    """(the user's OAuth token, their profile when the scope gave one, the state's record)."""
    pending = _take_state(state)
    code = (code or "").strip()
    if not code or len(code) > MAX_CODE_LENGTH:
        raise AppError(ErrorCode.BAD_USER_INPUT, "Send the code WeChat added to your redirectUri.")
    # WeChat sometimes calls the redirect twice: the code answers once, never with a second user.
    code_key = "oa:code:" + hashlib.sha256(code.encode()).hexdigest()
    if not cache.add(code_key, 1, OAUTH_SECONDS):
        raise AppError(ErrorCode.BAD_USER_INPUT, "This OAuth code was already used: start the login again.")
    client = providers.official_account()
    try:
        token = client.oauth_access_token(code)
    except ProviderUnavailable as exc:
        # WeChat never answered: the code and the state were not used, so a retry may use them.
        cache.delete(code_key)
        cache.set(_state_key(state), pending, OAUTH_SECONDS)
        raise _provider_failure(exc, OAUTH_ERRORS) from exc
    except ProviderError as exc:
        raise _provider_failure(exc, OAUTH_ERRORS) from exc
    if token.is_snapshotuser:
        raise AppError(
            ErrorCode.FORBIDDEN,
            "This is a preview of the page (a snapshot): open it in WeChat and tap to use the full page.",
        )
    info = None
    if OAUTH_SCOPES["USERINFO"] in token.scope.split(","):
        info = _provider_call(client.oauth_userinfo, token.access_token, token.openid, errors=OAUTH_ERRORS)
    return token, info, pending


def official_account_login(*, code: str, state: str) -> LoginResult:
    """A web OAuth login: the same user as on the mini-program when WeChat gives their unionid."""
    _official_account()
    token, info, _ = _oauth(code, state)
    unionid = (info.unionid if info else None) or token.unionid or _follower_unionid(token.openid)
    with transaction.atomic(durable=True):
        now = timezone.now()
        identity, created = _identity_for_login(
            appid=settings.WECHAT_OA_APPID,
            openid=token.openid,
            unionid=unionid,
            kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT,
            now=now,
            fields={"last_login_at": now},
        )
        user = identity.user
        if info is not None:
            _fill_profile(user, nickname=info.nickname, avatar_url=info.headimgurl)
        tokens = issue_tokens(user)
    logger.info("official account login openid=%s user=%s created=%s", token.openid, user.pk, created)
    return LoginResult(user=user, created=created, tokens=tokens)


def _follower_unionid(openid: str) -> str | None:
    """A BASE-scope token carries no unionid; a follower's user info does (it joins the mini-program's
    user). Not following, or WeChat not answering, the login goes on without it."""
    try:
        follower = providers.official_account().user_info(openid)
    except (ProviderError, ProviderUnavailable) as exc:
        logger.info("official account user info of %s not read: %s", openid, exc)
        return None
    return follower.unionid if follower.subscribed else None


def _fill_profile(user: User, *, nickname: str, avatar_url: str) -> None:
    """WeChat's nickname and avatar where the user has none yet (what they set themselves stays)."""
    fields = []
    if nickname and not user.nickname:
        user.nickname, fields = nickname[:64], [*fields, "nickname"]
    if avatar_url.startswith("https://") and len(avatar_url) <= 512 and not user.avatar_url:
        user.avatar_url, fields = avatar_url, [*fields, "avatar_url"]
    if fields:
        user.save(update_fields=fields)


def bind_official_account_openid(*, user: User, openid: str, unionid: str | None) -> WechatIdentity:
    """The user's identity in the official account, made now or found; CONFLICT when the openid
    belongs to someone else or the user already has another one there."""
    appid = settings.WECHAT_OA_APPID
    known = set(user.wechat_identities.exclude(unionid="").values_list("unionid", flat=True))
    if unionid and known and unionid not in known:
        # WeChat says this follower is another person: binding them would let them log in as this user.
        raise AppError(ErrorCode.CONFLICT, "This WeChat account belongs to someone else: bind your own.")
    with transaction.atomic():
        existing = WechatIdentity.objects.select_for_update().filter(appid=appid, openid=openid).first()
        if existing is not None:
            if existing.user_id != user.pk:
                raise AppError(ErrorCode.CONFLICT, "This WeChat account is already bound to another user.")
            return existing
        try:
            with transaction.atomic():
                return WechatIdentity.objects.create(
                    user=user,
                    appid=appid,
                    openid=openid,
                    unionid=unionid or "",
                    kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT,
                )
        except IntegrityError as exc:
            # (user, appid) is unique: this user is bound to another follower already (or a race bound it).
            raise AppError(
                ErrorCode.CONFLICT, "Your account is already bound to another official-account user."
            ) from exc


def bind_official_account(*, user: User, code: str, state: str) -> User:
    """Binds the official-account user who just consented to the logged-in user."""
    _official_account()
    token, info, pending = _oauth(code, state)
    if pending.get("user") != user.pk:
        raise AppError(ErrorCode.FORBIDDEN, "This link was not started by your account: start the binding again.")
    bind_official_account_openid(
        user=user, openid=token.openid, unionid=(info.unionid if info else None) or token.unionid
    )
    logger.info("official account bound openid=%s user=%s", token.openid, user.pk)
    return user


def bind_scene_key(scene: str) -> str:
    """Where a bind QR code's scene names the user who asked for it, while the code lives."""
    return f"oa:bind:{scene}"


BIND_SCENE_PREFIX = "bind"


def official_account_bind_qr_code(*, user: User, redirect_uri: str = "") -> BindQrCode:
    """A QR code that binds whoever scans it and follows (or, already following, scans) to `user`: a
    temporary scene code; when the account cannot make those, an OAuth binding link (to `redirect_uri`)."""
    client = _official_account()
    scene = BIND_SCENE_PREFIX + secrets.token_hex(16)
    expires_at = timezone.now() + dt.timedelta(seconds=BIND_QR_SECONDS)
    try:
        ticket = client.create_temporary_qrcode(scene, BIND_QR_SECONDS)
    except ProviderError as exc:
        if exc.errcode != 48001 or not redirect_uri:  # 48001: the account has no such permission
            raise _provider_failure(exc, {}) from exc
        url, image_url = official_account_authorize_url(redirect_uri=redirect_uri, scope="BASE", user=user)[0], ""
    except ProviderUnavailable as exc:
        raise _provider_failure(exc, {}) from exc
    else:
        url, image_url = ticket.url, ticket.image_url
        # Read by the server URL when the scan arrives (officialaccount.services.bind_by_scene).
        cache.set(bind_scene_key(scene), user.pk, BIND_QR_SECONDS)
    svg = segno.make(url, error="m").svg_inline(scale=4, title="Scan with WeChat to bind your account")
    return BindQrCode(url=url, expires_at=expires_at, svg=svg, image_url=image_url)


def jssdk_config(*, url: str, js_api_list: list[str]) -> JssdkConfig:
    """wx.config for the page at `url`: signed over the URL as given, its #fragment dropped (the page
    must pass location.href.split('#')[0])."""
    client = _official_account()
    page = url.split("#", 1)[0]
    if len(page) > 2048 or not on_allowed_host(page, settings.WECHAT_OA_JSSDK_HOSTS):
        raise AppError(ErrorCode.BAD_USER_INPUT, "url must be an http(s) page on an allowed host.")
    if len(js_api_list) > MAX_JS_APIS or any(not name or len(name) > 64 for name in js_api_list):
        raise AppError(ErrorCode.BAD_USER_INPUT, f"jsApiList takes up to {MAX_JS_APIS} API names.")
    ticket = _provider_call(client.jsapi_ticket, errors={})
    nonce, timestamp = secrets.token_urlsafe(12), int(time.time())
    return JssdkConfig(
        app_id=settings.WECHAT_OA_APPID,
        timestamp=timestamp,
        nonce_str=nonce,
        signature=jssdk_signature(ticket, nonce, timestamp, page),
        js_api_list=list(js_api_list),
    )
