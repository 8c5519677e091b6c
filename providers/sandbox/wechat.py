"""The WeChat server API as the sandbox serves it: login codes, tokens, phone numbers, user data.

Codes behave like WeChat's: each works once (40163 after), `alice`, `alice:2` and
`alice:3` are three codes of the one sandbox user `alice`, codes starting
`invalid` get 40029 and `ratelimit` 45011, and every login issues a new session_key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from providers.compare import constant_time_equal
from providers.sandbox.core import InjectedFault, SandboxRequest, SandboxResponse, Store, Write, claim
from providers.wechat.crypto import check_session_signature, encrypt_user_data, user_data_signature

CODE_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
PHONE_CODE_RE = re.compile(r"^phone:(\d{5,15})(?::.*)?$")
TOKEN_TTL = 7200
SESSION_TTL = 3 * 24 * 3600
CODE_TTL = 300  # WeChat login codes die after 5 minutes anyway


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


class WechatSimulator:
    name = "wechat"

    def __init__(self, store: Store, apps: list[SandboxApp]) -> None:
        self.store = store
        self.apps = {app.appid: app for app in apps}

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
        return (request.method, request.path) == ("GET", "/sns/jscode2session")

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        routes = {
            ("GET", "/sns/jscode2session"): self.jscode2session,
            ("POST", "/cgi-bin/stable_token"): self.stable_token,
            ("GET", "/cgi-bin/token"): self.token,
            ("POST", "/wxa/business/getuserphonenumber"): self.get_phone_number,
            ("GET", "/wxa/checksession"): self.check_session,
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
