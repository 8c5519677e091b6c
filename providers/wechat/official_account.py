"""The official account's (公众号) server API: web OAuth, the JS-SDK ticket, the menu, followers, scene QR codes.

Calls go through WechatClient's plumbing (one pooled session, explicit timeouts, ProviderError on an errcode,
one retry after expiring a rejected access token), and the access token lives under the same store key as any
WechatClient for this appid. The jsapi_ticket is cached by a second AccessTokenManager on the same store: the
same lock, re-read and expire-if-same, with getticket as its fetch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from providers.http import HttpConfig, ProviderError, ProviderUnavailable
from providers.wechat.api import PROVIDER, WechatAppConfig, WechatClient
from providers.wechat.token import AccessTokenManager, TokenStore

DEFAULT_OPEN_BASE_URL = "https://open.weixin.qq.com"
DEFAULT_MP_BASE_URL = "https://mp.weixin.qq.com"

SCOPE_BASE = "snsapi_base"
SCOPE_USERINFO = "snsapi_userinfo"
SCOPES = (SCOPE_BASE, SCOPE_USERINFO)
# "a-zA-Z0-9, at most 128 bytes" (web OAuth docs)
_STATE = re.compile(r"[A-Za-z0-9]{1,128}")

MAX_QRCODE_EXPIRE_SECONDS = 2_592_000  # 30 days
MAX_SCENE_STR = 64

NO_MENU_ERRCODE = 46003  # menu/get: no menu has been created

# The documented limits of cgi-bin/menu/create.
MAX_BUTTONS = 3
MAX_SUB_BUTTONS = 5
MAX_BUTTON_NAME_BYTES = 16
MAX_SUB_BUTTON_NAME_BYTES = 60
MAX_KEY_BYTES = 128
MAX_URL_BYTES = 1024
# type -> the keys a button of that type must carry
BUTTON_TYPES: dict[str, tuple[str, ...]] = {
    "click": ("key",),
    "view": ("url",),
    "miniprogram": ("url", "appid", "pagepath"),
    "scancode_push": ("key",),
    "scancode_waitmsg": ("key",),
    "pic_sysphoto": ("key",),
    "pic_photo_or_album": ("key",),
    "pic_weixin": ("key",),
    "location_select": ("key",),
    "media_id": ("media_id",),
    "view_limited": ("media_id",),
    "article_id": ("article_id",),
    "article_view_limited": ("article_id",),
}


@dataclass(frozen=True, repr=False)
class OfficialAccountConfig(WechatAppConfig):
    """An app's config (its API host, token) and the hosts of the pages a person opens."""

    # the OAuth consent page's host and the QR-code image host; the sandbox replaces both
    open_base_url: str = DEFAULT_OPEN_BASE_URL
    mp_base_url: str = DEFAULT_MP_BASE_URL


@dataclass(frozen=True)
class OAuthToken:
    """sns/oauth2/access_token (or refresh_token): the user's web-OAuth token, not the app's access token."""

    access_token: str
    expires_in: int
    refresh_token: str
    openid: str
    scope: str
    unionid: str | None
    # a "snapshot page" visitor: a virtual openid that must never be bound to an account
    is_snapshotuser: bool

    def __repr__(self) -> str:
        return (
            f"OAuthToken(openid={self.openid!r}, scope={self.scope!r}, unionid={self.unionid!r}, "
            f"is_snapshotuser={self.is_snapshotuser!r})"
        )


@dataclass(frozen=True)
class OAuthUserInfo:
    """sns/userinfo (scope snsapi_userinfo)."""

    openid: str
    nickname: str
    headimgurl: str
    unionid: str | None
    sex: int = 0
    province: str = ""
    city: str = ""
    country: str = ""
    privilege: tuple[str, ...] = ()


@dataclass(frozen=True)
class FollowerInfo:
    """cgi-bin/user/info: a follower as the account sees them (no nickname or avatar since 2021)."""

    openid: str
    subscribed: bool
    subscribe_time: int | None
    unionid: str | None
    language: str = ""
    remark: str = ""
    subscribe_scene: str = ""
    qr_scene_str: str = ""
    tagid_list: tuple[int, ...] = ()


@dataclass(frozen=True)
class QrCodeTicket:
    """A temporary scene QR code: `url` is what the code encodes, `image_url` WeChat's picture of it."""

    ticket: str
    url: str
    expire_seconds: int
    image_url: str


class MenuError(ValueError):
    """The menu breaks the documented limits; `problems` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid menu: " + "; ".join(problems))
        self.problems = problems


def _utf8_json(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Request kwargs for a JSON body in plain UTF-8: menu names sent as \\uXXXX escapes have shown up escaped."""
    return {
        "data": json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        "headers": {"Content-Type": "application/json; charset=utf-8"},
    }


def _text(body: Mapping[str, Any], key: str, what: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ProviderUnavailable(PROVIDER, f"{what} answer without {key}")
    return value


def _number(body: Mapping[str, Any], key: str, what: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ProviderUnavailable(PROVIDER, f"{what} answer without {key}")
    try:
        return int(value)
    except ValueError as exc:
        raise ProviderUnavailable(PROVIDER, f"{what} answer with a non-numeric {key}") from exc


def _optional(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    return "" if value is None else str(value)


class OfficialAccountClient:
    def __init__(
        self,
        config: OfficialAccountConfig,
        session: requests.Session,
        http: HttpConfig,
        token_store: TokenStore,
    ) -> None:
        self.config = config
        self.session = session
        self.http = http
        # WechatClient's plumbing and access token (store key access_token:<appid>), shared with any other
        # client of this appid.
        self._api = WechatClient(
            config,
            session,
            http,
            token_store,
        )
        self.tokens = self._api.tokens
        self.tickets = AccessTokenManager(token_store, f"jsapi_ticket:{config.appid}", self.fetch_jsapi_ticket)

    def __repr__(self) -> str:
        return f"OfficialAccountClient(appid={self.config.appid!r})"

    # --- tokens ------------------------------------------------------------
    def access_token(self) -> str:
        try:
            return self.tokens.get()
        except TimeoutError as exc:
            raise ProviderUnavailable(PROVIDER, "access token refresh is stuck") from exc

    def fetch_jsapi_ticket(self) -> tuple[str, int]:
        """getticket, with the access token's retry: a 40001/42001 there expires that token (if still cached)."""
        body = self._api._call_with_token("GET", "/cgi-bin/ticket/getticket", params={"type": "jsapi"})
        return _text(body, "ticket", "getticket"), _number(body, "expires_in", "getticket")

    def jsapi_ticket(self) -> str:
        """The cached jsapi_ticket, fetched by one process at a time when missing or expired."""
        try:
            return self.tickets.get()
        except TimeoutError as exc:
            raise ProviderUnavailable(PROVIDER, "jsapi_ticket refresh is stuck") from exc

    def invalidate_jsapi_ticket(self, ticket: str) -> bool:
        """Expires `ticket` only if it is still the cached one (a late report cannot drop a fresh ticket)."""
        return self.tickets.invalidate(ticket)

    # --- web OAuth ---------------------------------------------------------
    def authorize_url(self, redirect_uri: str, scope: str, state: str) -> str:
        """The consent URL, parameters in the documented order, ending in #wechat_redirect."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        if not _STATE.fullmatch(state):
            raise ValueError("state must be 1 to 128 characters of a-z, A-Z, 0-9")
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("redirect_uri must be an absolute http(s) URL")
        return (
            f"{self.config.open_base_url}/connect/oauth2/authorize"
            f"?appid={quote(self.config.appid, safe='')}"
            f"&redirect_uri={quote(redirect_uri, safe='')}"
            f"&response_type=code&scope={scope}&state={state}#wechat_redirect"
        )

    def oauth_access_token(self, code: str) -> OAuthToken:
        """Exchanges the callback's code (single use, 5 minutes; a reused one answers 40163)."""
        body = self._api._call(
            "GET",
            "/sns/oauth2/access_token",
            params={
                "appid": self.config.appid,
                "secret": self.config.secret,
                "code": code,
                "grant_type": "authorization_code",
            },
        )
        return self._oauth_token(body, "sns/oauth2/access_token")

    def oauth_refresh_token(self, refresh_token: str) -> OAuthToken:
        body = self._api._call(
            "GET",
            "/sns/oauth2/refresh_token",
            params={"appid": self.config.appid, "grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        return self._oauth_token(body, "sns/oauth2/refresh_token")

    @staticmethod
    def _oauth_token(body: Mapping[str, Any], what: str) -> OAuthToken:
        return OAuthToken(
            access_token=_text(body, "access_token", what),
            expires_in=_number(body, "expires_in", what),
            refresh_token=_text(body, "refresh_token", what),
            openid=_text(body, "openid", what),
            scope=_optional(body, "scope"),
            unionid=body.get("unionid") or None,
            is_snapshotuser=body.get("is_snapshotuser") in (1, "1", True),
        )

    def oauth_userinfo(self, access_token: str, openid: str, lang: str = "zh_CN") -> OAuthUserInfo:
        """sns/userinfo with the user's OAuth token (a 40001 here says nothing about the app's access token)."""
        body = self._api._call(
            "GET", "/sns/userinfo", params={"access_token": access_token, "openid": openid, "lang": lang}
        )
        privilege = body.get("privilege")
        sex = body.get("sex")
        return OAuthUserInfo(
            openid=_text(body, "openid", "sns/userinfo"),
            nickname=_optional(body, "nickname"),
            headimgurl=_optional(body, "headimgurl"),
            unionid=body.get("unionid") or None,
            sex=sex if isinstance(sex, int) and not isinstance(sex, bool) else 0,
            province=_optional(body, "province"),
            city=_optional(body, "city"),
            country=_optional(body, "country"),
            privilege=tuple(str(p) for p in privilege) if isinstance(privilege, list) else (),
        )

    # --- menu ----------------------------------------------------------------
    def create_menu(self, menu: Mapping[str, Any]) -> None:
        """Replaces the menu; a menu breaking the documented limits raises MenuError before any call."""
        problems = validate_menu(menu)
        if problems:
            raise MenuError(problems)
        self._api._call_with_token("POST", "/cgi-bin/menu/create", **_utf8_json(menu))

    def get_menu(self) -> dict[str, Any] | None:
        """WeChat's answer (`menu`, and `conditionalmenu` when there are any), or None when no menu exists."""
        try:
            return self._api._call_with_token("GET", "/cgi-bin/menu/get")
        except ProviderError as exc:
            if exc.errcode == NO_MENU_ERRCODE:
                return None
            raise

    def delete_menu(self) -> None:
        self._api._call_with_token("GET", "/cgi-bin/menu/delete")

    # --- followers and QR codes ------------------------------------------------
    def user_info(self, openid: str, lang: str = "zh_CN") -> FollowerInfo:
        body = self._api._call_with_token("GET", "/cgi-bin/user/info", params={"openid": openid, "lang": lang})
        subscribed = body.get("subscribe") in (1, "1")
        tags = body.get("tagid_list")
        return FollowerInfo(
            openid=_text(body, "openid", "user/info"),
            subscribed=subscribed,
            subscribe_time=_number(body, "subscribe_time", "user/info") if body.get("subscribe_time") else None,
            unionid=body.get("unionid") or None,
            language=_optional(body, "language"),
            remark=_optional(body, "remark"),
            subscribe_scene=_optional(body, "subscribe_scene"),
            qr_scene_str=_optional(body, "qr_scene_str"),
            tagid_list=tuple(int(t) for t in tags if isinstance(t, int)) if isinstance(tags, list) else (),
        )

    def create_temporary_qrcode(self, scene_str: str, expire_seconds: int) -> QrCodeTicket:
        """A QR_STR_SCENE code: scanning it (and following) sends an event whose EventKey carries scene_str."""
        if not 1 <= len(scene_str) <= MAX_SCENE_STR:
            raise ValueError(f"scene_str must be 1 to {MAX_SCENE_STR} characters")
        if not 1 <= expire_seconds <= MAX_QRCODE_EXPIRE_SECONDS:
            raise ValueError(f"expire_seconds must be 1 to {MAX_QRCODE_EXPIRE_SECONDS}")
        body = self._api._call_with_token(
            "POST",
            "/cgi-bin/qrcode/create",
            **_utf8_json(
                {
                    "expire_seconds": expire_seconds,
                    "action_name": "QR_STR_SCENE",
                    "action_info": {"scene": {"scene_str": scene_str}},
                }
            ),
        )
        ticket = _text(body, "ticket", "qrcode/create")
        return QrCodeTicket(
            ticket=ticket,
            url=_text(body, "url", "qrcode/create"),
            expire_seconds=_number(body, "expire_seconds", "qrcode/create"),
            image_url=self.showqrcode_url(ticket),
        )

    def showqrcode_url(self, ticket: str) -> str:
        """Where WeChat serves the code's picture; the ticket is URL-encoded as documented."""
        return f"{self.config.mp_base_url}/cgi-bin/showqrcode?ticket={quote(ticket, safe='')}"


# --- menu validation ---------------------------------------------------------------------------


def _byte_len(value: str) -> int:
    return len(value.encode("utf-8"))


def _check_name(button: Mapping[str, Any], where: str, limit: int, problems: list[str]) -> None:
    name = button.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}.name: required")
    elif _byte_len(name) > limit:
        problems.append(f"{where}.name: {_byte_len(name)} bytes, at most {limit}")


def _check_action(button: Mapping[str, Any], where: str, problems: list[str]) -> None:
    kind = button.get("type")
    if kind not in BUTTON_TYPES:
        problems.append(f"{where}.type: {kind!r} is not one of {', '.join(BUTTON_TYPES)}")
        return
    for field in BUTTON_TYPES[kind]:
        value = button.get(field)
        if not isinstance(value, str) or not value:
            problems.append(f"{where}.{field}: required for type {kind}")
    key, url = button.get("key"), button.get("url")
    if isinstance(key, str) and _byte_len(key) > MAX_KEY_BYTES:
        problems.append(f"{where}.key: {_byte_len(key)} bytes, at most {MAX_KEY_BYTES}")
    if isinstance(url, str) and url:
        if _byte_len(url) > MAX_URL_BYTES:
            problems.append(f"{where}.url: {_byte_len(url)} bytes, at most {MAX_URL_BYTES}")
        if urlsplit(url).scheme not in ("http", "https"):
            problems.append(f"{where}.url: must be an http(s) URL")


def validate_menu(menu: Mapping[str, Any]) -> list[str]:
    """What breaks cgi-bin/menu/create's documented limits, one line each; [] when the menu is fine.

    1-3 buttons; a button either has a type and that type's keys, or 1-5 sub_buttons and no type (an empty
    sub_button list, as menu/get answers, counts as none); names at most 16 bytes (sub-buttons 60), key at
    most 128 bytes, url at most 1024 bytes.
    """
    if not isinstance(menu, Mapping):
        return ["menu: must be an object with a `button` list"]
    buttons = menu.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        return [f"button: must be a list of 1 to {MAX_BUTTONS} buttons"]
    problems: list[str] = []
    for i, button in enumerate(buttons):
        where = f"button[{i}]"
        if not isinstance(button, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        _check_name(button, where, MAX_BUTTON_NAME_BYTES, problems)
        subs = button.get("sub_button")
        if subs in (None, []):
            _check_action(button, where, problems)
            continue
        if not isinstance(subs, list) or len(subs) > MAX_SUB_BUTTONS:
            problems.append(f"{where}.sub_button: must be a list of 1 to {MAX_SUB_BUTTONS} buttons")
            continue
        if "type" in button:
            problems.append(f"{where}.type: a button with sub_button has no type")
        for j, sub in enumerate(subs):
            sub_where = f"{where}.sub_button[{j}]"
            if not isinstance(sub, Mapping):
                problems.append(f"{sub_where}: must be an object")
                continue
            _check_name(sub, sub_where, MAX_SUB_BUTTON_NAME_BYTES, problems)
            if sub.get("sub_button") not in (None, []):
                problems.append(f"{sub_where}.sub_button: menus have two levels only")
            _check_action(sub, sub_where, problems)
    return problems
