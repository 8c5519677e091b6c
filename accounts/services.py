"""Every write and rule of accounts: login, tokens, user data, phone, profile."""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from graphql_jwt.shortcuts import get_token

from accounts.models import RefreshToken, User, WechatIdentity, hash_refresh_token, new_refresh_token, new_username
from accounts.selectors import MiniprogramIds
from config import providers
from config.db import Statement
from providers.http import ProviderError, ProviderUnavailable
from providers.wechat.api import LoginSession
from providers.wechat.crypto import DecryptError, decrypt_user_data, user_data_signature
from schema.errors import AppError, ErrorCode

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
    except ProviderUnavailable as exc:
        logger.warning("wechat unavailable: %s", exc.message)
        raise AppError(ErrorCode.PROVIDER_UNAVAILABLE, "WeChat did not answer in time: try again shortly.") from exc
    except ProviderError as exc:
        known = errors.get(exc.errcode) if isinstance(exc.errcode, int) else None
        logger.info("wechat refused: errcode=%s", exc.errcode)
        if known:
            raise AppError(*known) from exc
        raise AppError(ErrorCode.PROVIDER_ERROR, f"WeChat refused the request (errcode {exc.errcode}).") from exc


# --- tokens ---------------------------------------------------------------------


def issue_tokens(user: User) -> TokenPair:
    refresh = RefreshToken.objects.create(user=user)
    return TokenPair(token=get_token(user), refresh_token=refresh.get_token())


def _revoke_all(user_id: int) -> int:
    return RefreshToken.objects.filter(user_id=user_id, revoked__isnull=True).update(revoked=timezone.now())


def refresh_tokens(*, refresh_token: str) -> TokenPair:
    """Rotates a refresh token. Presenting one that was already rotated signs the user out everywhere;
    one that was revoked (signed out) is only refused."""
    digest = hash_refresh_token(refresh_token)
    with transaction.atomic():
        row = RefreshToken.objects.select_for_update().select_related("user").filter(token=digest).first()
        if row is None:
            raise AppError(ErrorCode.UNAUTHENTICATED, "Unknown refresh token: log in again.")
        if row.revoked is None:
            if row.is_expired() or not row.user.is_active:
                raise AppError(ErrorCode.UNAUTHENTICATED, "This refresh token has expired: log in again.")
            row.revoked = timezone.now()
            row.rotated = True
            row.save(update_fields=["revoked", "rotated"])
            return issue_tokens(row.user)
        if not row.rotated:
            raise AppError(ErrorCode.UNAUTHENTICATED, "This refresh token was revoked: log in again.")
        reused_by = row.user_id
    # Outside the block above, so the revocation commits although we answer with an error.
    revoked = _revoke_all(reused_by)
    logger.warning("refresh token reused for user %s: revoked %s tokens", reused_by, revoked)
    raise AppError(
        ErrorCode.UNAUTHENTICATED,
        "This refresh token was already used; for safety every session was signed out: log in again.",
    )


def revoke_refresh_token(*, refresh_token: str) -> bool:
    digest = hash_refresh_token(refresh_token)
    if RefreshToken.objects.filter(token=digest, revoked__isnull=True).update(revoked=timezone.now()):
        return True
    if RefreshToken.objects.filter(token=digest).exists():
        return True  # already revoked: revoking is idempotent
    raise AppError(ErrorCode.UNAUTHENTICATED, "Unknown refresh token.")


# --- login ----------------------------------------------------------------------


def _first(queryset: Any) -> Any:
    """The first row without `.first()`'s ORDER BY id, which can steer PostgreSQL off the right index."""
    return next(iter(queryset[:1]), None)


def _login_identity(*, appid: str, session: LoginSession, now: Any) -> tuple[WechatIdentity, bool]:
    """Finds or creates the identity and stores the new session_key; (identity, user created)."""
    fields = {"session_key": session.session_key, "session_key_updated_at": now, "last_login_at": now}
    identity = _first(WechatIdentity.objects.select_related("user").filter(appid=appid, openid=session.openid))
    if identity is not None:
        if not identity.user.is_active:
            raise AppError(ErrorCode.FORBIDDEN, "This account is disabled.")
        if session.unionid and identity.unionid != session.unionid:
            fields["unionid"] = session.unionid
        for name, value in fields.items():
            setattr(identity, name, value)
        identity.save(update_fields=list(fields))
        return identity, False
    try:
        with transaction.atomic():
            # A unionid already known from another app of ours is the same person.
            sibling = (
                _first(WechatIdentity.objects.select_related("user").filter(unionid=session.unionid))
                if session.unionid
                else None
            )
            if sibling is not None and not sibling.user.is_active:
                raise AppError(ErrorCode.FORBIDDEN, "This account is disabled.")
            user = sibling.user if sibling else User.objects.create_user(username=new_username(), last_login=now)
            identity = WechatIdentity.objects.create(
                user=user,
                appid=appid,
                openid=session.openid,
                unionid=session.unionid or "",
                kind=WechatIdentity.Kind.MINIPROGRAM,
                **fields,
            )
            return identity, sibling is None
    except IntegrityError:
        # A concurrent first login of the same user won the race; its row exists now.
        return _login_identity(appid=appid, session=session, now=now)


def _relax_commit() -> None:
    """A login may skip waiting for the disk flush: if the server crashes in the next few hundred
    milliseconds the login is lost and the user logs in again. Nothing about money is written here."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


# A new user's columns whose values differ per login. The others hold their field's default,
# the same for every new user, which the statement carries as SQL literals.
_NEW_USER_PER_LOGIN = ("username", "password")
_NEW_USER_NOW = ("last_login", "date_joined")


def _new_user_fields() -> tuple[list[Any], list[Any]]:
    """(the fields of a new user whose value is the same for every login, those made per login:
    the ones above and any with a callable default)."""
    constant, varying = [], []
    for f in User._meta.concrete_fields:
        if f.primary_key or f.attname in _NEW_USER_NOW:
            continue
        # has_default(): a field without one holds NOT_PROVIDED, a class, which callable() accepts.
        if f.attname in _NEW_USER_PER_LOGIN or (f.has_default() and callable(f.default)):
            varying.append(f)
        else:
            constant.append(f)
    return constant, varying


def _literal(cursor: Any, field: Any) -> str | None:
    """A field's default as a typed SQL literal, quoted by the driver; None for one holding a
    "%", which would read differently prepared and unprepared (it stays a parameter)."""
    value = field.get_db_prep_save(field.get_default(), connection)
    literal = f"{cursor.mogrify('%s', [value]).decode()}::{field.db_type(connection)}"
    return None if "%" in literal else literal


@functools.cache
def _login_statement() -> tuple[Statement, list[Any], list[str]]:
    """The usual login as one statement: an active user's identity gets the new session_key, or a
    new user and identity are created; either way a refresh token is stored, all in one commit.

    It returns no row, and writes nothing, when the locked path must decide: a disabled user,
    a unionid another app of ours already knows (to link), or a concurrent first login of the
    same openid (whose identity insert then fails the whole statement).

    A new user's constant columns are literals in the statement: each parameter costs the driver
    a quoting on every login, and there are more constants than anything else.
    """
    q = connection.ops.quote_name
    user, identity, refresh = (q(m._meta.db_table) for m in (User, WechatIdentity, RefreshToken))
    fields = User._meta.concrete_fields
    constant, varying = _new_user_fields()
    with connection.cursor() as cursor:
        literals = {f.attname: _literal(cursor, f) for f in constant}
    varying += [f for f in constant if literals[f.attname] is None]
    new_fields = [f for f in fields if not f.primary_key]
    columns = ", ".join(q(f.column) for f in fields)
    types = {
        "appid": "text",
        "openid": "text",
        "unionid": "text",
        "session_key": "text",
        "now": "timestamptz",
        "kind": "text",
        "token": "text",
        "relax": "boolean",
    }
    types.update({f"u_{f.attname}": f.db_type(connection) or "text" for f in varying})
    new_values = ", ".join(
        "%(now)s" if f.attname in _NEW_USER_NOW else literals.get(f.attname) or f"%(u_{f.attname})s" for f in new_fields
    )
    # Identifiers come from model metadata, quoted; every value is a parameter or a literal the driver quoted.
    sql = f"""
WITH cur AS (
    UPDATE {identity} i SET session_key = %(session_key)s, session_key_updated_at = %(now)s,
        last_login_at = %(now)s, unionid = COALESCE(NULLIF(%(unionid)s, ''), i.unionid)
    FROM {user} u
    WHERE i.appid = %(appid)s AND i.openid = %(openid)s AND u.id = i.user_id AND u.is_active
    RETURNING {", ".join(f"u.{q(f.column)}" for f in fields)}, i.unionid AS identity_unionid
), nu AS (
    INSERT INTO {user} ({", ".join(q(f.column) for f in new_fields)})
    SELECT {new_values}
    WHERE NOT EXISTS (SELECT 1 FROM {identity} WHERE appid = %(appid)s AND openid = %(openid)s)
        AND NOT EXISTS (SELECT 1 FROM {identity} WHERE %(unionid)s <> '' AND unionid = %(unionid)s)
    RETURNING {columns}
), ni AS (
    INSERT INTO {identity} (user_id, kind, appid, openid, unionid, session_key, session_key_updated_at,
        created_at, last_login_at)
    SELECT id, %(kind)s, %(appid)s, %(openid)s, %(unionid)s, %(session_key)s, %(now)s, %(now)s, %(now)s FROM nu
), who AS (
    SELECT {columns}, identity_unionid, false AS created FROM cur
    UNION ALL SELECT {columns}, %(unionid)s, true FROM nu
), rt AS (
    INSERT INTO {refresh} (user_id, token, created, revoked) SELECT id, %(token)s, %(now)s, NULL FROM who
)
SELECT who.*, set_config('synchronous_commit',
    CASE WHEN %(relax)s THEN 'off' ELSE current_setting('synchronous_commit') END, true)
FROM who
"""  # noqa: S608
    # With the fields whose values are made per login, and the names of the columns it returns.
    return Statement("wxb_login", sql, types), varying, [f.attname for f in fields]


def _unusable_password() -> str:
    # make_password(None)'s value (UNUSABLE_PASSWORD_PREFIX and 40 random characters), at a tenth of the cost.
    return UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(30)


def _login_in_one_statement(appid: str, session: LoginSession, now: Any) -> LoginResult | None:
    """`_login_statement` for PostgreSQL; None when the locked path must decide."""
    raw_token, digest = new_refresh_token()
    params: dict[str, Any] = {
        "appid": appid,
        "openid": session.openid,
        "unionid": session.unionid or "",
        "session_key": session.session_key,
        "now": now,
        "kind": WechatIdentity.Kind.MINIPROGRAM.value,
        "token": digest,
        # In autocommit the statement is its own transaction: set_config(..., true) reaches its
        # commit and nothing after it (see _relax_commit for why a login may skip the flush).
        "relax": not connection.in_atomic_block,
        "u_username": new_username(),
        "u_password": _unusable_password(),
    }
    statement, varying, attnames = _login_statement()
    for f in varying:
        if f.attname not in _NEW_USER_PER_LOGIN:
            params[f"u_{f.attname}"] = f.get_db_prep_save(f.get_default(), connection)
    try:
        with connection.cursor() as cursor:
            statement.execute(cursor, params)
            row = cursor.fetchone()
    except IntegrityError:
        return None
    if row is None:
        return None
    user = User.from_db(connection.alias, attnames, row[: len(attnames)])
    unionid, created = row[len(attnames)], row[len(attnames) + 1]
    # What the answer's `openid` / `unionid` resolve from, without another query.
    user._miniprogram_identity = MiniprogramIds(session.openid, unionid or "")  # type: ignore[attr-defined]
    tokens = TokenPair(token=get_token(user), refresh_token=raw_token)
    return LoginResult(user=user, created=bool(created), tokens=tokens)


def wechat_login(*, code: str) -> LoginResult:
    code = (code or "").strip()
    if not code or len(code) > MAX_CODE_LENGTH:
        raise AppError(ErrorCode.BAD_USER_INPUT, "Send the code from wx.login.")
    client = providers.wechat_miniprogram()
    session = _provider_call(client.code2session, code, errors=LOGIN_ERRORS)
    if connection.vendor == "postgresql":  # data-modifying WITH is PostgreSQL's
        result = _login_in_one_statement(client.config.appid, session, timezone.now())
        if result is not None:
            logger.info("wechat login openid=%s user=%s created=%s", session.openid, result.user.pk, result.created)
            return result
    # One transaction: identity, session_key and refresh token commit together, or not at all.
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:  # SET LOCAL would otherwise reach a caller's transaction
            _relax_commit()
        identity, created = _login_identity(appid=client.config.appid, session=session, now=timezone.now())
        tokens = issue_tokens(identity.user)
    logger.info("wechat login openid=%s user=%s created=%s", session.openid, identity.user_id, created)
    return LoginResult(user=identity.user, created=created, tokens=tokens)


# --- user data ------------------------------------------------------------------


def miniprogram_identity(user: User) -> WechatIdentity:
    appid = providers.wechat_miniprogram().config.appid
    identity = WechatIdentity.objects.filter(user=user, appid=appid).first()
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
        if not hmac.compare_digest(expected, signature.lower()):
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
