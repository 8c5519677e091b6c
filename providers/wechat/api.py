"""The WeChat server API a mini-program backend calls: login, phone number, session check, tokens."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests

from providers.http import HttpConfig, ProviderError, ProviderUnavailable, json_body, send
from providers.wechat.crypto import check_session_signature
from providers.wechat.token import TOKEN_ERRCODES, AccessTokenManager, TokenStore

logger = logging.getLogger(__name__)

PROVIDER = "wechat"
DEFAULT_BASE_URL = "https://api.weixin.qq.com"


@dataclass(frozen=True)
class WechatAppConfig:
    appid: str
    secret: str
    base_url: str = DEFAULT_BASE_URL
    use_stable_token: bool = True

    def __repr__(self) -> str:  # the secret never reaches a log line
        return f"{type(self).__name__}(appid={self.appid!r}, base_url={self.base_url!r})"


@dataclass(frozen=True)
class LoginSession:
    openid: str
    session_key: str
    unionid: str | None

    def __repr__(self) -> str:
        return f"LoginSession(openid={self.openid!r}, unionid={self.unionid!r})"


@dataclass(frozen=True)
class PhoneInfo:
    phone_number: str
    pure_phone_number: str
    country_code: str


class WechatClient:
    def __init__(
        self,
        config: WechatAppConfig,
        session: requests.Session,
        http: HttpConfig,
        token_store: TokenStore,
    ) -> None:
        self.config = config
        self.session = session
        self.http = http
        self.tokens = AccessTokenManager(token_store, f"access_token:{config.appid}", self.fetch_access_token)

    # --- plumbing ----------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = send(self.session, PROVIDER, method, self.config.base_url + path, self.http, **kwargs)
        body = json_body(response, PROVIDER)
        errcode = body.get("errcode", 0)
        if errcode not in (0, None):
            raise ProviderError(PROVIDER, errcode, str(body.get("errmsg", "")))
        return body

    def _call_with_token(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Retries once on a rejected token, after expiring only that token."""
        params = dict(kwargs.pop("params", None) or {})
        for attempt in (1, 2):
            try:
                token = self.tokens.get()
            except TimeoutError as exc:
                raise ProviderUnavailable(PROVIDER, "access token refresh is stuck") from exc
            except ProviderUnavailable as exc:  # the call itself was not sent
                raise ProviderUnavailable(PROVIDER, f"no access token: {exc.message}") from exc
            params["access_token"] = token
            try:
                return self._call(method, path, params=params, **kwargs)
            except ProviderError as exc:
                if exc.errcode not in TOKEN_ERRCODES or attempt == 2:
                    raise
                self.tokens.invalidate(token)
        raise AssertionError("unreachable")

    # --- tokens ------------------------------------------------------------
    def fetch_access_token(self) -> tuple[str, int]:
        if self.config.use_stable_token:
            body = self._call(
                "POST",
                "/cgi-bin/stable_token",
                json={"grant_type": "client_credential", "appid": self.config.appid, "secret": self.config.secret},
            )
        else:
            body = self._call(
                "GET",
                "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": self.config.appid, "secret": self.config.secret},
            )
        try:
            return str(body["access_token"]), int(body["expires_in"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderUnavailable(PROVIDER, "token answer without access_token") from exc

    def access_token(self) -> str:
        return self.tokens.get()

    # --- mini-program --------------------------------------------------------
    def code2session(self, code: str) -> LoginSession:
        body = self._call(
            "GET",
            "/sns/jscode2session",
            params={
                "appid": self.config.appid,
                "secret": self.config.secret,
                "js_code": code,
                "grant_type": "authorization_code",
            },
        )
        openid, session_key = body.get("openid"), body.get("session_key")
        if not isinstance(openid, str) or not isinstance(session_key, str) or not openid or not session_key:
            raise ProviderUnavailable(PROVIDER, "jscode2session answer without openid/session_key")
        unionid = body.get("unionid")
        return LoginSession(openid=openid, session_key=session_key, unionid=unionid or None)

    def get_phone_number(self, code: str) -> PhoneInfo:
        body = self._call_with_token("POST", "/wxa/business/getuserphonenumber", json={"code": code})
        info = body.get("phone_info")
        if not isinstance(info, dict) or not info.get("purePhoneNumber"):
            raise ProviderUnavailable(PROVIDER, "getuserphonenumber answer without phone_info")
        watermark = info.get("watermark") or {}
        if watermark.get("appid") not in (None, self.config.appid):
            raise ProviderUnavailable(PROVIDER, "phone_info watermark names another appid")
        return PhoneInfo(
            phone_number=str(info.get("phoneNumber") or info["purePhoneNumber"]),
            pure_phone_number=str(info["purePhoneNumber"]),
            country_code=str(info.get("countryCode") or ""),
        )

    def check_session(self, openid: str, session_key: str) -> bool:
        """True while WeChat still holds this session_key for the user."""
        try:
            self._call_with_token(
                "GET",
                "/wxa/checksession",
                params={
                    "openid": openid,
                    "signature": check_session_signature(session_key),
                    "sig_method": "hmac_sha256",
                },
            )
        except ProviderError as exc:
            if exc.errcode == 87009:  # invalid signature: the session_key is no longer current
                return False
            raise
        return True
