"""The WeChat server API as the sandbox serves it: login codes, tokens, phone numbers, user data, and the
official account's side (web OAuth, jsapi_ticket, menu, followers, scene QR codes, messages to our server URL).

Codes behave like WeChat's: each works once (40163 after), `alice`, `alice:2` and
`alice:3` are three codes of the one sandbox user `alice`, codes starting
`invalid` get 40029 and `ratelimit` 45011, and every login issues a new session_key.
A sandbox user has one openid per app and one unionid across apps: `alice` logged in on the
mini-program and `alice` on the official account's consent page are the same person.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.parsers.expat import ExpatError

import requests
import xmltodict

from providers.compare import constant_time_equal
from providers.sandbox.core import (
    Deliver,
    InjectedFault,
    SandboxRequest,
    SandboxResponse,
    Store,
    Write,
    claim,
    locked,
    take_fault,
)
from providers.sandbox.inbox import PUSH_PATHS, Inbox
from providers.wechat.crypto import check_session_signature, encrypt_user_data, user_data_signature
from providers.wechat.messages import (
    MessageCrypto,
    MessageCryptoError,
    MessageXmlError,
    cdata,
    message_signature,
    parse_message,
    server_signature,
)

logger = logging.getLogger(__name__)

CODE_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
PHONE_CODE_RE = re.compile(r"^phone:(\d{5,15})(?::.*)?$")
TOKEN_TTL = 7200
SESSION_TTL = 3 * 24 * 3600
CODE_TTL = 300  # WeChat login codes die after 5 minutes anyway

# --- the official account ---
# A sandbox user's name, as typed on the consent and phone pages (a login code without its ":2").
USER_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
OAUTH_SCOPES = ("snsapi_base", "snsapi_userinfo")
OAUTH_TOKEN_TTL = 7200
OAUTH_REFRESH_TTL = 30 * 24 * 3600
TICKET_TTL = 7200
TICKET_TYPES = ("jsapi", "wx_card")
QR_TEMPORARY = ("QR_SCENE", "QR_STR_SCENE")
QR_PERMANENT = ("QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE")
QR_DEFAULT_EXPIRE = 60  # "此字段如果不填，则默认有效期为60秒"
QR_MAX_EXPIRE = 2_592_000  # 30 days
QR_KEEP = 30 * 24 * 3600  # how long the sandbox remembers a permanent code
QR_MAX_SCENE_STR = 64
STATE_TTL = 30 * 24 * 3600  # menus, followers, who an openid is
PUSH_TTL = 24 * 3600
REPLY_WAIT = 5.0  # WeChat waits 5 s for a passive reply, then retries
MESSAGE_KINDS = ("text", "subscribe", "scan", "click", "unsubscribe")
MODES = ("plain", "safe")
MAX_TEXT = 2000
# What a snapshot-page (快照页) visitor looks like: a virtual account, not the person.
SNAPSHOT_NICKNAME = "微信用户"


@dataclass(frozen=True)
class SandboxApp:
    appid: str
    secret: str


def _digest_id(prefix: str, *parts: str) -> str:
    raw = hashlib.sha256(":".join(("wxsandbox",) + parts).encode()).digest()
    return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")[: 28 - len(prefix)]


def openid_for(appid: str, user: str) -> str:
    """Stable per (app, user), like a real openid."""
    return _digest_id("o", appid, user)


def unionid_for(user: str) -> str:
    """Stable per user across apps, like a real unionid."""
    return _digest_id("oU", "unionid", user)


def _err(errcode: int, errmsg: str) -> SandboxResponse:
    return SandboxResponse.json({"errcode": errcode, "errmsg": errmsg})


def original_id(appid: str) -> str:
    """The official account's original id (gh_...): the ToUserName of every message it receives."""
    return "gh_" + hashlib.sha256(f"wxsandbox:gh:{appid}".encode()).hexdigest()[:12]


def _virtual(user: str) -> str:
    """The name behind a snapshot-page visitor's virtual openid and unionid (":" is never in a user's name)."""
    return f"snapshot:{user}"


def headimgurl_for(user: str) -> str:
    # WeChat's avatar host and path shape; nothing fetches it in the sandbox.
    return f"https://thirdwx.qlogo.cn/mmopen/vi_32/{_digest_id('Q', 'avatar', user)}/132"


@dataclass(frozen=True)
class ServerUrl:
    """Our official account's server URL as WeChat is configured with it: where messages go, and the token
    and EncodingAESKey ("" : plain mode only) they are signed and encrypted with."""

    url: str
    token: str
    encoding_aes_key: str
    appid: str

    def __repr__(self) -> str:  # the token and key never reach a log line
        return f"ServerUrl(url={self.url!r}, appid={self.appid!r})"

    @property
    def safe_mode(self) -> bool:
        return bool(self.encoding_aes_key)


def post_to_server(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """How WeChat posts a message to our server URL: one POST, answered within 5 s or not at all."""
    response = requests.post(url, data=body, headers=headers, timeout=(3.0, REPLY_WAIT))
    return response.status_code, response.text


def redirect_with(redirect_uri: str, params: Mapping[str, str]) -> str:
    """`redirect_uri` with `params` added to its query, before any #fragment, as WeChat's redirect does."""
    parts = urlsplit(redirect_uri)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def message_xml(fields: Mapping[str, str | int]) -> str:
    """A message as WeChat posts it: numbers bare (CreateTime, MsgId), text in CDATA."""
    parts = [f"<{name}>{value if isinstance(value, int) else cdata(value)}</{name}>" for name, value in fields.items()]
    return "<xml>" + "".join(parts) + "</xml>"


def _xml_fields(xml: str) -> dict[str, Any]:
    """A reply's elements, nested ones (news Articles, Image) as dicts; entity declarations refused."""
    try:
        doc = xmltodict.parse(xml, disable_entities=True)
    except (ExpatError, ValueError) as exc:
        raise MessageXmlError("malformed XML") from exc
    root = doc.get("xml") if isinstance(doc, dict) else None
    if not isinstance(root, dict):
        raise MessageXmlError("expected an <xml> document with elements")
    return dict(root)


def _button_problem(button: Any, sub: bool) -> tuple[int, str] | None:
    """cgi-bin/menu/create's error for one button (codes of sub-buttons are their own), or None."""
    if not isinstance(button, dict):
        return 47001, "data format error"
    name_limit, type_err, name_err, key_err, url_err = (
        (60, 40024, 40025, 40026, 40027) if sub else (16, 40017, 40018, 40019, 40020)
    )
    level = "sub button" if sub else "button"
    name = button.get("name")
    if not isinstance(name, str) or not 1 <= len(name.encode()) <= name_limit:
        return name_err, f"invalid {level} name size"
    subs = button.get("sub_button")
    if subs not in (None, []):
        if sub:
            return 40022, "invalid sub button level"
        if not isinstance(subs, list) or len(subs) > 5:
            return 40023, "invalid sub button size"
        for child in subs:
            problem = _button_problem(child, sub=True)
            if problem:
                return problem
        return None
    kind = button.get("type")
    if kind not in BUTTON_FIELDS:
        return type_err, f"invalid {level} type"
    for field in BUTTON_FIELDS[kind]:
        value = button.get(field)
        if field == "key" and (not isinstance(value, str) or not 1 <= len(value.encode()) <= 128):
            return key_err, f"invalid {level} key size"
        if field == "url" and (not isinstance(value, str) or not 1 <= len(value.encode()) <= 1024):
            return url_err, f"invalid {level} url size"
        if not isinstance(value, str) or not value:
            return 47001, "data format error"
    return None


def _menu_as_stored(buttons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """menu/get's shape: every button, and every sub-button, carries a `sub_button` list (empty for a leaf)."""
    return [{**button, "sub_button": _menu_as_stored(button.get("sub_button") or [])} for button in buttons]


# cgi-bin/menu/create's button types and the fields each must carry.
BUTTON_FIELDS: dict[str, tuple[str, ...]] = {
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


class WechatSimulator:
    name = "wechat"

    def __init__(self, store: Store, apps: list[SandboxApp], deliver: Deliver = post_to_server) -> None:
        self.store = store
        self.apps = {app.appid: app for app in apps}
        # How messages reach our official account's server URL (tests put a fake here).
        self.deliver = deliver
        # What the apps send their users (template, subscribe and customer-service messages): /sandbox/inbox.
        self.inbox = Inbox(store, openid_for=openid_for, user_of=self._user_of)

    # --- state helpers (also used by tests and the /sandbox/ pages) -----------------
    def session_key(self, appid: str, openid: str) -> str | None:
        value = self.store.get(f"sbx:wx:sk:{appid}:{openid}")
        return str(value) if value else None

    def token_fetches(self, appid: str) -> int:
        return int(self.store.get(f"sbx:wx:fetches:{appid}") or 0)

    def expire_access_token(self, appid: str) -> None:
        """Makes the current token invalid at once, as a refresh by someone else would."""
        self.store.delete(f"sbx:wx:at:{appid}")
        self.store.delete(f"sbx:wx:at:prev:{appid}")

    def user_data(self, appid: str, openid: str, data: dict[str, Any], timestamp: int | None = None) -> dict[str, str]:
        """What wx.getUserProfile / getPhoneNumber hand the mini-program: encrypted with the current session_key."""
        session_key = self.session_key(appid, openid)
        if session_key is None:
            raise LookupError("no session for this openid: log in first")
        raw_data = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        encrypted, iv = encrypt_user_data(session_key, data, appid=appid, timestamp=timestamp)
        return {
            "encryptedData": encrypted,
            "iv": iv,
            "rawData": raw_data,
            "signature": user_data_signature(raw_data, session_key),
        }

    # --- HTTP surface ------------------------------------------------------------
    def takes_own_faults(self, request: SandboxRequest) -> bool:
        # A login takes a pending fault in the same step that uses its code up.
        return (request.method, request.path) in (("GET", "/sns/jscode2session"), ("GET", "/sns/oauth2/access_token"))

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        routes = {
            ("GET", "/sns/jscode2session"): self.jscode2session,
            ("POST", "/cgi-bin/stable_token"): self.stable_token,
            ("GET", "/cgi-bin/token"): self.token,
            ("POST", "/wxa/business/getuserphonenumber"): self.get_phone_number,
            ("GET", "/wxa/checksession"): self.check_session,
            ("GET", "/sns/oauth2/access_token"): self.oauth_access_token,
            ("GET", "/sns/oauth2/refresh_token"): self.oauth_refresh_token,
            ("GET", "/sns/userinfo"): self.oauth_userinfo,
            ("GET", "/cgi-bin/ticket/getticket"): self.get_ticket,
            ("POST", "/cgi-bin/menu/create"): self.menu_create,
            ("GET", "/cgi-bin/menu/get"): self.menu_get,
            ("GET", "/cgi-bin/menu/delete"): self.menu_delete,
            ("GET", "/cgi-bin/user/info"): self.user_info,
            ("POST", "/cgi-bin/qrcode/create"): self.qrcode_create,
            **{("POST", path): self.send_message for path in PUSH_PATHS},
        }
        handler = routes.get((request.method, request.path))
        if handler is None:
            return SandboxResponse.json({"errcode": 40066, "errmsg": "invalid url"}, status=404)
        return handler(request)

    def _app(self, appid: str | None, secret: str | None) -> SandboxApp | SandboxResponse:
        app = self.apps.get(appid or "")
        if app is None:
            return _err(40013, "invalid appid")
        if not constant_time_equal(secret, app.secret):
            return _err(40125, "invalid appsecret")
        return app

    def jscode2session(self, request: SandboxRequest) -> SandboxResponse:
        q = request.query
        app = self._app(q.get("appid"), q.get("secret"))
        if isinstance(app, SandboxResponse):
            return app
        code = q.get("js_code", "")
        if not code:
            return _err(41008, "missing code")
        if not CODE_RE.match(code) or code.startswith("invalid"):
            return _err(40029, "invalid code")
        if code.startswith("ratelimit"):
            return _err(45011, "api minute-quota reach limit mustslower retry next minute")
        user = code.split(":", 1)[0]
        openid = openid_for(app.appid, user)
        session_key = base64.b64encode(os.urandom(16)).decode()
        # A pending fault, or else the code is used up and the new session_key stored: one step.
        outcome = claim(
            self.store,
            self.name,
            once=Write(f"sbx:wx:code:{app.appid}:{code}", 1, CODE_TTL),
            then=(Write(f"sbx:wx:sk:{app.appid}:{openid}", session_key, SESSION_TTL),),
        )
        if isinstance(outcome, str):
            raise InjectedFault(outcome)
        if not outcome:
            return _err(40163, "code been used")
        return SandboxResponse.json({"openid": openid, "session_key": session_key, "unionid": unionid_for(user)})

    def _issue_token(self, appid: str) -> str:
        current = self.store.get(f"sbx:wx:at:{appid}")
        if current:
            # The old token keeps working for 5 minutes after a new one is issued.
            self.store.set(f"sbx:wx:at:prev:{appid}", current, 300)
        token = "sbx_" + secrets.token_urlsafe(48)
        self.store.set(f"sbx:wx:at:{appid}", token, TOKEN_TTL)
        # add-then-incr: two first fetches at once both count.
        self.store.add(f"sbx:wx:fetches:{appid}", 0, None)
        self.store.incr(f"sbx:wx:fetches:{appid}")
        return token

    def stable_token(self, request: SandboxRequest) -> SandboxResponse:
        body = request.json()
        if not isinstance(body, dict) or body.get("grant_type") != "client_credential":
            return _err(40002, "invalid grant_type")
        app = self._app(body.get("appid"), body.get("secret"))
        if isinstance(app, SandboxResponse):
            return app
        current = self.store.get(f"sbx:wx:at:{app.appid}")
        if current and not body.get("force_refresh"):
            return SandboxResponse.json({"access_token": current, "expires_in": TOKEN_TTL})
        return SandboxResponse.json({"access_token": self._issue_token(app.appid), "expires_in": TOKEN_TTL})

    def token(self, request: SandboxRequest) -> SandboxResponse:
        q = request.query
        if q.get("grant_type") != "client_credential":
            return _err(40002, "invalid grant_type")
        app = self._app(q.get("appid"), q.get("secret"))
        if isinstance(app, SandboxResponse):
            return app
        return SandboxResponse.json({"access_token": self._issue_token(app.appid), "expires_in": TOKEN_TTL})

    def _token_app(self, request: SandboxRequest) -> SandboxApp | SandboxResponse:
        token = request.query.get("access_token", "")
        if not token:
            return _err(41001, "access_token missing")
        for app in self.apps.values():
            if token in (self.store.get(f"sbx:wx:at:{app.appid}"), self.store.get(f"sbx:wx:at:prev:{app.appid}")):
                return app
        return _err(40001, "invalid credential, access_token is invalid or not latest")

    def get_phone_number(self, request: SandboxRequest) -> SandboxResponse:
        app = self._token_app(request)
        if isinstance(app, SandboxResponse):
            return app
        body = request.json()
        code = body.get("code") if isinstance(body, dict) else None
        if not isinstance(code, str) or not code:
            return _err(47001, "data format error")
        match = PHONE_CODE_RE.match(code)
        if match is None:
            return _err(40029, "invalid code")
        if not self.store.add(f"sbx:wx:phonecode:{app.appid}:{code}", 1, CODE_TTL):
            return _err(40163, "code been used")
        digits = match.group(1)
        return SandboxResponse.json(
            {
                "errcode": 0,
                "errmsg": "ok",
                "phone_info": {
                    "phoneNumber": digits,
                    "purePhoneNumber": digits,
                    "countryCode": "86",
                    "watermark": {"timestamp": int(time.time()), "appid": app.appid},
                },
            }
        )

    def check_session(self, request: SandboxRequest) -> SandboxResponse:
        app = self._token_app(request)
        if isinstance(app, SandboxResponse):
            return app
        q = request.query
        if q.get("sig_method") != "hmac_sha256":
            return _err(87010, "invalid sig_method")
        session_key = self.session_key(app.appid, q.get("openid", ""))
        expected = check_session_signature(session_key) if session_key else ""
        if not session_key or not constant_time_equal(q.get("signature"), expected):
            return _err(87009, "invalid signature")
        return _err(0, "ok")

    # --- messages to users (the inbox) --------------------------------------------------
    def send_message(self, request: SandboxRequest) -> SandboxResponse:
        """template/send, subscribe/send and custom/send: answered, and recorded, by the inbox."""
        app = self._token_app(request)
        if isinstance(app, SandboxResponse):
            return app
        return SandboxResponse.json(self.inbox.answer(PUSH_PATHS[request.path], app.appid, request.json()))

    def _user_of(self, appid: str, openid: str) -> str | None:
        user = self.store.get(f"sbx:wx:oa:who:{appid}:{openid}")
        return user if isinstance(user, str) else None

    # --- the official account: people ----------------------------------------------------
    def _register(self, appid: str, user: str) -> str:
        """The user's openid in `appid`, remembered so user/info knows whose it is."""
        openid = openid_for(appid, user)
        self.store.set(f"sbx:wx:oa:who:{appid}:{openid}", user, STATE_TTL)
        with locked(self.store, "sbx:wx:oa:users:lock"):
            recent = self.store.get("sbx:wx:oa:users") or []
            self.store.set("sbx:wx:oa:users", [user, *(u for u in recent if u != user)][:12], STATE_TTL)
        return openid

    def recent_users(self) -> list[str]:
        """The users last picked on the consent, phone and QR-code pages, latest first."""
        return list(self.store.get("sbx:wx:oa:users") or [])

    def follower(self, appid: str, openid: str) -> dict[str, Any] | None:
        """How `openid` follows the account (time, scene), or None when they do not."""
        value = self.store.get(f"sbx:wx:follow:{appid}:{openid}")
        return dict(value) if isinstance(value, dict) else None

    # --- web OAuth -------------------------------------------------------------------------
    def authorize_problem(self, appid: str, redirect_uri: str, response_type: str, scope: str) -> str | None:
        """What WeChat's consent page says instead of asking, for these parameters; None when it asks."""
        if not appid:
            return "10012: appid is missing (appid 不能为空)"
        if appid not in self.apps:
            return f"no official account has the appid {appid!r} (appid 参数错误)"
        if not redirect_uri:
            return "10011: redirect_uri is missing (redirect_uri 不能为空)"
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return "10003: redirect_uri must be an http(s) URL on the account's OAuth domain (redirect_uri 参数错误)"
        if response_type != "code":
            return "response_type must be code"
        if not scope:
            return "10010: scope is missing (scope 不能为空)"
        if scope not in OAUTH_SCOPES:
            return f"10005: scope must be one of {', '.join(OAUTH_SCOPES)} (scope 参数错误或没有 scope 权限)"
        return None

    def grant_oauth_code(self, appid: str, user: str, scope: str, *, snapshot: bool = False, nickname: str = "") -> str:
        """What Allow on the consent page does: a code for sns/oauth2/access_token, single use, 5 minutes.
        A snapshot-page visitor gets a virtual account (its own openid and unionid, is_snapshotuser: 1)."""
        if appid not in self.apps:
            raise ValueError("unknown appid")
        if scope not in OAUTH_SCOPES:
            raise ValueError(f"scope must be one of {', '.join(OAUTH_SCOPES)}")
        if not USER_RE.match(user):
            raise ValueError("a sandbox user is 1 to 64 letters, digits, '.', '_' or '-'")
        if snapshot:
            person, nickname = _virtual(user), SNAPSHOT_NICKNAME
            openid = openid_for(appid, person)
        else:
            person, nickname = user, (nickname.strip() or user)[:64]
            openid = self._register(appid, user)
        code = "sbxoa" + secrets.token_urlsafe(24)
        grant = {
            "appid": appid,
            "openid": openid,
            "unionid": unionid_for(person),
            "scope": scope,
            "snapshot": snapshot,
            "nickname": nickname,
            "headimgurl": headimgurl_for(person),
        }
        self.store.set(f"sbx:wx:oauth:code:{code}", grant, CODE_TTL)
        return code

    def _oauth_answer(self, grant: dict[str, Any], access_token: str, refresh_token: str) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "access_token": access_token,
            "expires_in": OAUTH_TOKEN_TTL,
            "refresh_token": refresh_token,
            "openid": grant["openid"],
            "scope": grant["scope"],
        }
        if grant["snapshot"]:
            answer["is_snapshotuser"] = 1
        return answer

    def oauth_access_token(self, request: SandboxRequest) -> SandboxResponse:
        q = request.query
        app = self._app(q.get("appid"), q.get("secret"))
        if isinstance(app, SandboxResponse):
            return app
        if q.get("grant_type") != "authorization_code":
            return _err(40002, "invalid grant_type")
        code = q.get("code", "")
        if not code:
            return _err(41008, "missing code")
        grant = self.store.get(f"sbx:wx:oauth:code:{code}")
        if not isinstance(grant, dict) or grant["appid"] != app.appid:
            return _err(40029, "invalid code")
        access_token, refresh_token = "sbxoat_" + secrets.token_urlsafe(48), "sbxoar_" + secrets.token_urlsafe(48)
        # A pending fault, or else the code is used up and the user's tokens stored: one step.
        outcome = claim(
            self.store,
            self.name,
            once=Write(f"sbx:wx:oauth:used:{code}", 1, CODE_TTL),
            then=(
                Write(f"sbx:wx:oauth:at:{access_token}", grant, OAUTH_TOKEN_TTL),
                Write(f"sbx:wx:oauth:rt:{refresh_token}", grant, OAUTH_REFRESH_TTL),
            ),
        )
        if isinstance(outcome, str):
            raise InjectedFault(outcome)
        if not outcome:
            return _err(40163, "code been used")
        answer = self._oauth_answer(grant, access_token, refresh_token)
        if grant["scope"] == "snsapi_userinfo":  # "只有当scope为snsapi_userinfo时返回"
            answer["unionid"] = grant["unionid"]
        return SandboxResponse.json(answer)

    def oauth_refresh_token(self, request: SandboxRequest) -> SandboxResponse:
        q = request.query
        appid = q.get("appid", "")
        if appid not in self.apps:
            return _err(40013, "invalid appid")
        if q.get("grant_type") != "refresh_token":
            return _err(40002, "invalid grant_type")
        refresh_token = q.get("refresh_token", "")
        grant = self.store.get(f"sbx:wx:oauth:rt:{refresh_token}") if refresh_token else None
        if not isinstance(grant, dict) or grant["appid"] != appid:
            return _err(40030, "invalid refresh_token")
        access_token = "sbxoat_" + secrets.token_urlsafe(48)
        self.store.set(f"sbx:wx:oauth:at:{access_token}", grant, OAUTH_TOKEN_TTL)
        return SandboxResponse.json(self._oauth_answer(grant, access_token, refresh_token))

    def oauth_userinfo(self, request: SandboxRequest) -> SandboxResponse:
        q = request.query
        token = q.get("access_token", "")
        if not token:
            return _err(41001, "access_token missing")
        grant = self.store.get(f"sbx:wx:oauth:at:{token}")
        if not isinstance(grant, dict):
            return _err(40001, "invalid credential, access_token is invalid or not latest")
        if not constant_time_equal(q.get("openid"), grant["openid"]):
            return _err(40003, "invalid openid")
        if grant["scope"] != "snsapi_userinfo":
            return _err(48001, "api unauthorized")
        return SandboxResponse.json(
            {
                "openid": grant["openid"],
                "nickname": grant["nickname"],
                "sex": 0,
                "language": "",
                "city": "",
                "province": "",
                "country": "",
                "headimgurl": grant["headimgurl"],
                "privilege": [],
                "unionid": grant["unionid"],
            }
        )

    # --- JS-SDK ticket ------------------------------------------------------------------------
    def ticket_fetches(self, appid: str) -> int:
        return int(self.store.get(f"sbx:wx:ticket:fetches:{appid}") or 0)

    def expire_jsapi_ticket(self, appid: str) -> None:
        """Ends the current ticket at once: the next getticket issues a new one."""
        for kind in TICKET_TYPES:
            self.store.delete(f"sbx:wx:ticket:{appid}:{kind}")

    def get_ticket(self, request: SandboxRequest) -> SandboxResponse:
        app = self._token_app(request)
        if isinstance(app, SandboxResponse):
            return app
        kind = request.query.get("type", "")
        if kind not in TICKET_TYPES:
            return _err(40097, "invalid args")
        self.store.add(f"sbx:wx:ticket:fetches:{app.appid}", 0, None)
        self.store.incr(f"sbx:wx:ticket:fetches:{app.appid}")
        key = f"sbx:wx:ticket:{app.appid}:{kind}"
        now = time.time()
        with locked(self.store, f"{key}:lock"):
            current = self.store.get(key)
            if not isinstance(current, dict) or current["expires_at"] <= now:
                # The shape of a real ticket: 86 URL-safe characters.
                current = {"ticket": secrets.token_urlsafe(64)[:86], "expires_at": now + TICKET_TTL}
                self.store.set(key, current, TICKET_TTL)
        # The same ticket until it expires; expires_in says how long it has left.
        left = max(1, int(current["expires_at"] - now))
        return SandboxResponse.json({"errcode": 0, "errmsg": "ok", "ticket": current["ticket"], "expires_in": left})

    # --- menu ----------------------------------------------------------------------------------
    def menu(self, appid: str) -> list[dict[str, Any]] | None:
        """The buttons of the account's menu as menu/get shows them, or None when it has none."""
        value = self.store.get(f"sbx:wx:menu:{appid}")
        return list(value) if isinstance(value, list) else None

    def menu_keys(self, appid: str) -> list[tuple[str, str]]:
        """(name, key) of every button of the menu that sends a CLICK event."""
        keys = []
        for button in self.menu(appid) or []:
            for leaf in button["sub_button"] or [button]:
                if leaf.get("type") == "click":
                    keys.append((leaf["name"], leaf["key"]))
        return keys

    def menu_create(self, request: SandboxRequest) -> SandboxResponse:
        app = self._token_app(request)
        if isinstance(app, SandboxResponse):
            return app
        body = request.json()
        buttons = body.get("button") if isinstance(body, dict) else None
        if not isinstance(buttons, list):
            return _err(47001, "data format error")
        if not 1 <= len(buttons) <= 3:
            return _err(40016, "invalid button size")
        for button in buttons:
            problem = _button_problem(button, sub=False)
            if problem:
                return _err(*problem)
        self.store.set(f"sbx:wx:menu:{app.appid}", _menu_as_stored(buttons), STATE_TTL)
        return _err(0, "ok")

    def menu_get(self, request: SandboxRequest) -> SandboxResponse:
        app = self._token_app(request)
        if isinstance(app, SandboxResponse):
            return app
        buttons = self.menu(app.appid)
        if buttons is None:
            return _err(46003, "menu no exist")
        return SandboxResponse.json({"menu": {"button": buttons}})

    def menu_delete(self, request: SandboxRequest) -> SandboxResponse:
        app = self._token_app(request)
        if isinstance(app, SandboxResponse):
            return app
        self.store.delete(f"sbx:wx:menu:{app.appid}")
        return _err(0, "ok")

    # --- followers -------------------------------------------------------------------------------
    def user_info(self, request: SandboxRequest) -> SandboxResponse:
        app = self._token_app(request)
        if isinstance(app, SandboxResponse):
            return app
        openid = request.query.get("openid", "")
        if not openid:
            return _err(41009, "missing openid")
        user = self.store.get(f"sbx:wx:oa:who:{app.appid}:{openid}")
        if not isinstance(user, str):
            return _err(40003, "invalid openid")
        follow = self.follower(app.appid, openid)
        if follow is None:
            return SandboxResponse.json(
                {"subscribe": 0, "openid": openid, "unionid": unionid_for(user), "tagid_list": []}
            )
        # Since December 2021 WeChat leaves out the nickname and avatar (empty), and sex and region.
        return SandboxResponse.json(
            {
                "subscribe": 1,
                "openid": openid,
                "nickname": "",
                "sex": 0,
                "language": "zh_CN",
                "city": "",
                "province": "",
                "country": "",
                "headimgurl": "",
                "subscribe_time": follow["time"],
                "unionid": unionid_for(user),
                "remark": "",
                "groupid": 0,
                "tagid_list": [],
                "subscribe_scene": follow["scene"],
                "qr_scene": follow["qr_scene"],
                "qr_scene_str": follow["qr_scene_str"],
            }
        )

    # --- scene QR codes ----------------------------------------------------------------------------
    def qrcode(self, ticket: str) -> dict[str, Any] | None:
        """What the sandbox knows of a QR code's ticket (appid, scene, url, expires_at), None once expired."""
        value = self.store.get(f"sbx:wx:qr:{ticket}") if ticket else None
        return dict(value) if isinstance(value, dict) else None

    def recent_qrcodes(self, appid: str) -> list[dict[str, Any]]:
        """The account's latest QR codes still alive, newest first."""
        tickets = self.store.get(f"sbx:wx:qr:recent:{appid}") or []
        return [code for code in map(self.qrcode, tickets) if code]

    def qrcode_create(self, request: SandboxRequest) -> SandboxResponse:
        app = self._token_app(request)
        if isinstance(app, SandboxResponse):
            return app
        body = request.json()
        if not isinstance(body, dict):
            return _err(47001, "data format error")
        action = body.get("action_name")
        if action not in QR_TEMPORARY + QR_PERMANENT:
            return _err(40097, "invalid args")
        info = body.get("action_info")
        scene = info.get("scene") if isinstance(info, dict) else None
        scene = scene if isinstance(scene, dict) else {}
        scene_id, scene_str = scene.get("scene_id"), scene.get("scene_str")
        if action.endswith("STR_SCENE"):
            if not isinstance(scene_str, str) or not 1 <= len(scene_str) <= QR_MAX_SCENE_STR:
                return _err(40053, "invalid action info")
            scene_id = 0
        else:
            top = 100_000 if action == "QR_LIMIT_SCENE" else 2**32 - 1
            if isinstance(scene_id, bool) or not isinstance(scene_id, int) or not 1 <= scene_id <= top:
                return _err(40053, "invalid action info")
            scene_str = ""
        expire = body.get("expire_seconds", QR_DEFAULT_EXPIRE)
        if action in QR_TEMPORARY and (isinstance(expire, bool) or not isinstance(expire, int) or expire < 1):
            return _err(40097, "invalid args")
        expire = min(expire, QR_MAX_EXPIRE) if action in QR_TEMPORARY else 0
        # A real ticket is base64 (with + / =), which is why showqrcode takes it URL-encoded.
        ticket = "gQ" + base64.b64encode(os.urandom(46)).decode()
        url = "http://weixin.qq.com/q/" + secrets.token_urlsafe(16)[:22]
        ttl = expire or QR_KEEP
        code = {
            "ticket": ticket,
            "appid": app.appid,
            "action_name": action,
            "scene_id": scene_id,
            "scene_str": scene_str,
            "scene": scene_str or str(scene_id),
            "url": url,
            "expires_at": int(time.time()) + expire if expire else None,
        }
        self.store.set(f"sbx:wx:qr:{ticket}", code, ttl)
        recent_key = f"sbx:wx:qr:recent:{app.appid}"
        with locked(self.store, f"{recent_key}:lock"):
            recent = self.store.get(recent_key) or []
            self.store.set(recent_key, [ticket, *recent][:10], QR_KEEP)
        answer: dict[str, Any] = {"ticket": ticket, "url": url}
        if expire:
            answer = {"ticket": ticket, "expire_seconds": expire, "url": url}
        return SandboxResponse.json(answer)

    # --- messages to our server URL ---------------------------------------------------------------
    def message(
        self, appid: str, user: str, kind: str, *, content: str = "", scene: str = "", key: str = "", ticket: str = ""
    ) -> dict[str, str | int]:
        """The message WeChat posts when `user` does `kind` (text, subscribe, scan, click, unsubscribe); a
        subscribe or scan with a `scene` (or a QR code's `ticket`) carries it. Nothing changes here;
        ValueError says what is wrong with the input."""
        if appid not in self.apps:
            raise ValueError("unknown appid")
        if not USER_RE.match(user):
            raise ValueError("a sandbox user is 1 to 64 letters, digits, '.', '_' or '-'")
        fields: dict[str, str | int] = {
            "ToUserName": original_id(appid),
            "FromUserName": openid_for(appid, user),
            "CreateTime": int(time.time()),
        }
        if kind == "text":
            if not 1 <= len(content) <= MAX_TEXT:
                raise ValueError(f"a text message is 1 to {MAX_TEXT} characters")
            cdata(content)  # ValueError: a character XML cannot carry
            # MsgId: a 64-bit number, unique per message (WeChat's retries repeat it).
            return {**fields, "MsgType": "text", "Content": content, "MsgId": 10**18 + secrets.randbelow(8 * 10**18)}
        fields["MsgType"] = "event"
        if kind == "click":
            if not 1 <= len(key.encode()) <= 128:
                raise ValueError("a menu key is 1 to 128 bytes")
            cdata(key)
            return {**fields, "Event": "CLICK", "EventKey": key}
        if kind == "unsubscribe":
            return {**fields, "Event": "unsubscribe", "EventKey": ""}
        if kind not in ("subscribe", "scan"):
            raise ValueError(f"kind must be one of {', '.join(MESSAGE_KINDS)}")
        code = self.qrcode(ticket) if ticket else None
        if ticket and (code is None or code["appid"] != appid):
            raise ValueError("no such QR code (it may have expired)")
        if code is None and scene:
            # The latest QR code of this scene, for its Ticket (WeChat's events always carry one).
            code = next((c for c in self.recent_qrcodes(appid) if c["scene"] == scene), None)
        scene = code["scene"] if code else scene
        if len(scene) > QR_MAX_SCENE_STR:
            raise ValueError(f"a scene is at most {QR_MAX_SCENE_STR} characters")
        cdata(scene)
        extra: dict[str, str | int] = {"Ticket": code["ticket"]} if code else {}
        if kind == "scan":
            if not scene:
                raise ValueError("a scan needs a scene (or a QR code's ticket)")
            return {**fields, "Event": "SCAN", "EventKey": scene, **extra}
        return {**fields, "Event": "subscribe", "EventKey": f"qrscene_{scene}" if scene else "", **extra}

    def _record_follow(self, appid: str, fields: Mapping[str, str | int]) -> None:
        """What WeChat remembers of a subscribe or unsubscribe, whatever our server answers."""
        key = f"sbx:wx:follow:{appid}:{fields['FromUserName']}"
        if fields.get("Event") == "unsubscribe":
            self.store.delete(key)
            return
        if fields.get("Event") != "subscribe":
            return
        scene = str(fields["EventKey"]).removeprefix("qrscene_")
        code = self.qrcode(str(fields.get("Ticket", "")))
        follow = {"time": fields["CreateTime"], "scene": "ADD_SCENE_SEARCH", "qr_scene": 0, "qr_scene_str": ""}
        if code:
            follow.update(scene="ADD_SCENE_QR_CODE", qr_scene=code["scene_id"], qr_scene_str=code["scene_str"])
        elif scene:
            numeric = scene.isdigit() and int(scene) < 2**32
            follow.update(scene="ADD_SCENE_QR_CODE", qr_scene=int(scene) if numeric else 0)
            follow.update(qr_scene_str="" if numeric else scene)
        self.store.set(key, follow, STATE_TTL)

    def send(self, server: ServerUrl, user: str, kind: str, mode: str, **details: str) -> dict[str, Any]:
        """`user` does `kind` on their phone: the message is built, the follow recorded (subscribe follows,
        unsubscribe unfollows) and the message posted to our server URL (see `push`)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if mode == "safe" and not server.safe_mode:
            raise ValueError("safe mode needs an EncodingAESKey (WECHAT_OA_AES_KEY)")
        fields = self.message(server.appid, user, kind, **details)
        self._register(server.appid, user)
        self._record_follow(server.appid, fields)
        return self.push(server, fields, mode)

    def scan(self, server: ServerUrl, user: str, ticket: str, mode: str) -> dict[str, Any]:
        """Scanning a scene QR code: a subscribe with EventKey qrscene_<scene>, or SCAN from a follower."""
        following = self.follower(server.appid, openid_for(server.appid, user)) is not None
        return self.send(server, user, "scan" if following else "subscribe", mode, ticket=ticket)

    def push(self, server: ServerUrl, fields: Mapping[str, str | int], mode: str) -> dict[str, Any]:
        """Posts `fields` to our server URL signed as WeChat signs (safe mode: encrypted, with msg_signature),
        reads the passive reply (safe mode: its msg_signature checked, decrypted) and keeps the exchange
        for `push_record` and `push_again`. A pending bad_signature fault spoils the signature checked."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if mode == "safe" and not server.safe_mode:
            raise ValueError("safe mode needs an EncodingAESKey (WECHAT_OA_AES_KEY)")
        xml = message_xml(fields)
        timestamp, nonce = str(int(time.time())), str(1_000_000_000 + secrets.randbelow(9_000_000_000))
        query = {
            "signature": server_signature(server.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": str(fields["FromUserName"]),
        }
        body = xml
        if mode == "safe":
            encrypted = MessageCrypto(server.token, server.encoding_aes_key, server.appid).encrypt_text(xml)
            query["encrypt_type"] = "aes"
            query["msg_signature"] = message_signature(server.token, timestamp, nonce, encrypted)
            to_user = cdata(str(fields["ToUserName"]))
            body = f"<xml><ToUserName>{to_user}</ToUserName><Encrypt>{cdata(encrypted)}</Encrypt></xml>"
        fault = take_fault(self.store, self.name, ("bad_signature",))
        if fault:
            spoilt = "msg_signature" if mode == "safe" else "signature"
            query[spoilt] = hashlib.sha1(query[spoilt].encode(), usedforsecurity=False).hexdigest()
        record = {
            "id": secrets.token_urlsafe(12),
            "appid": server.appid,
            "openid": str(fields["FromUserName"]),
            "user": self.store.get(f"sbx:wx:oa:who:{server.appid}:{fields['FromUserName']}") or "",
            "kind": str(fields.get("Event") or fields["MsgType"]),
            "mode": mode,
            "fields": dict(fields),
            "message": xml,
            "request": {"url": f"{server.url}?{urlencode(query)}", "body": body},
            "fault": fault,
            "attempt": 1,
            "replay_of": None,
        }
        return self._deliver_push(server, record)

    def push_record(self, push_id: str) -> dict[str, Any] | None:
        value = self.store.get(f"sbx:wx:push:{push_id}") if push_id else None
        return dict(value) if isinstance(value, dict) else None

    def push_again(self, server: ServerUrl, push_id: str) -> dict[str, Any]:
        """WeChat's retry: the very same request (URL, signature, body) sent again. LookupError: unknown id."""
        first = self.push_record(push_id)
        if first is None:
            raise LookupError("no such message at the sandbox (it keeps them for a day)")
        record = {
            **{
                k: first[k]
                for k in ("appid", "openid", "user", "kind", "mode", "fields", "message", "request", "fault")
            },
            "id": secrets.token_urlsafe(12),
            "attempt": first["attempt"] + 1,
            "replay_of": first["replay_of"] or first["id"],
        }
        return self._deliver_push(server, record)

    def _deliver_push(self, server: ServerUrl, record: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "text/xml", "User-Agent": "Mozilla/4.0"}
        try:
            status, answer = self.deliver(record["request"]["url"], headers, record["request"]["body"].encode("utf-8"))
        except (OSError, ValueError) as exc:  # requests' timeouts and refused connections are OSErrors
            status, answer = 0, f"not delivered: {exc}"
        record.update(status=status, body=answer, **self._read_reply(server, record, status, answer))
        record["following"] = self.follower(record["appid"], record["openid"]) is not None
        self.store.set(f"sbx:wx:push:{record['id']}", record, PUSH_TTL)
        logger.info("sandbox: %s to the server URL (%s mode) answered HTTP %s", record["kind"], record["mode"], status)
        return record

    @staticmethod
    def _read_reply(server: ServerUrl, record: dict[str, Any], status: int, answer: str) -> dict[str, Any]:
        """The passive reply as WeChat reads it: `reply` the plain XML, `verified` whether its msg_signature
        matched (None in plain mode), `problem` why WeChat would show the follower nothing or an error."""
        nothing: dict[str, Any] = {"reply": "", "reply_fields": None, "verified": None, "problem": ""}
        if status != 200:
            reason = "no answer within 5 s" if status == 0 else f"HTTP {status}"
            return {**nothing, "problem": f"{reason}: WeChat retries up to 3 times, then tells nobody"}
        if answer.strip() in ("", "success"):
            return nothing  # "nothing to say": WeChat shows the follower nothing
        reply = answer
        if record["mode"] == "safe":
            try:
                envelope = parse_message(answer.encode("utf-8"))
            except MessageXmlError as exc:
                return {**nothing, "verified": False, "problem": f"the reply is not XML WeChat reads: {exc}"}
            if "Encrypt" not in envelope:
                return {**nothing, "verified": False, "problem": "a plain reply in safe mode: WeChat drops it"}
            crypto = MessageCrypto(server.token, server.encoding_aes_key, server.appid)
            try:
                reply = crypto.decrypt(
                    envelope.get("MsgSignature", ""),
                    envelope.get("TimeStamp", ""),
                    envelope.get("Nonce", ""),
                    envelope["Encrypt"],
                )
            except MessageCryptoError as exc:
                return {**nothing, "verified": False, "problem": f"the reply does not verify: {exc}"}
        try:
            fields = _xml_fields(reply)
        except MessageXmlError as exc:
            return {**nothing, "reply": reply, "problem": f"the reply is not XML WeChat reads: {exc}"}
        verified = True if record["mode"] == "safe" else None
        problem = ""
        if fields.get("ToUserName") != record["openid"]:
            problem = "the reply's ToUserName is not the follower's openid"
        elif fields.get("MsgType") not in (
            "text",
            "image",
            "voice",
            "video",
            "music",
            "news",
            "transfer_customer_service",
        ):
            problem = f"WeChat does not know the reply MsgType {fields.get('MsgType')!r}"
        return {"reply": reply, "reply_fields": fields, "verified": verified, "problem": problem}
