"""Fixtures of the official-account tests: the account's settings (plain mode, or safe mode with an
EncodingAESKey), WeChat's side of the server URL played by wechatpy (its crypto) and hashlib (the plain
signature), never by our own code, and followers the sandbox's user/info knows."""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
import xmltodict
from django.test import Client
from wechatpy.crypto import WeChatCrypto

from config import celery_app, providers

APPID = "wxoatest0000000001"
TOKEN = "oatoken2024"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ACCOUNT = "gh_0123456789ab"  # the account's original id: ToUserName of what WeChat sends
URL = "/wechat/official-account/"

_numbers = itertools.count(1)

# The account in plain mode (no EncodingAESKey) and in safe mode (WeChat encrypts every message): the `oa`
# fixture's two parameters, as ids plain and safe.
BOTH_MODES = pytest.mark.parametrize("oa", ["plain", "safe"], indirect=True)
SAFE_MODE = pytest.mark.parametrize("oa", ["safe"], indirect=True)


def signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def text_message(openid: str, content: str, *, msg_id: str | None = None, create_time: int | None = None) -> str:
    number = next(_numbers)
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id or 24000000000000000 + number}</MsgId></xml>"
    )


def event_message(
    openid: str, event: str, key: str | None = None, *, create_time: int | None = None, **extra: str
) -> str:
    fields = "".join(f"<{name}>{value}</{name}>" for name, value in extra.items())
    event_key = "" if key is None else f"<EventKey><![CDATA[{key}]]></EventKey>"
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event>{event_key}{fields}</xml>"
    )


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    # the reply as WeChat reads it: the XML's fields (decrypted in safe mode), or None for `success` / errors
    reply: dict[str, Any] | None = None
    reply_xml: str = ""


@dataclass
class Wechat:
    """WeChat posting to our server URL, in plain or safe mode, and reading our passive reply. `safe`: the
    account has an EncodingAESKey, so WeChat encrypts what it posts (raw_post sends anything else)."""

    client: Client = field(default_factory=Client)
    token: str = TOKEN
    aes_key: str = AES_KEY
    appid: str = APPID
    safe: bool = False

    def crypto(self, appid: str | None = None) -> WeChatCrypto:
        return WeChatCrypto(self.token, self.aes_key, appid or self.appid)

    def query(self, *, timestamp: str | None = None, nonce: str | None = None, **extra: str) -> dict[str, str]:
        timestamp = str(int(time.time())) if timestamp is None else timestamp
        nonce = nonce or f"n{next(_numbers)}"
        return {"signature": signature(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, **extra}

    def raw_post(self, query: dict[str, str], body: bytes | str) -> Any:
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self.client.post(f"{URL}?{urlencode(query)}", data, content_type="text/xml")

    def encrypted(
        self, xml: str, *, appid: str | None = None, query: dict[str, str] | None = None
    ) -> tuple[dict[str, str], str]:
        """(the query, the body) of a safe-mode POST of `xml`, encrypted and signed by wechatpy."""
        query = query or self.query()
        envelope = self.crypto(appid).encrypt_message(xml, query["nonce"], query["timestamp"])
        encrypted = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", envelope).group(1)  # type: ignore[union-attr]
        msg_signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]>", envelope).group(1)  # type: ignore[union-attr]
        body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        return {**query, "encrypt_type": "aes", "msg_signature": msg_signature}, body

    def post(self, xml: str, *, query: dict[str, str] | None = None) -> Answer:
        """Sends `xml` as WeChat does (encrypted in safe mode) and reads the answer as WeChat would."""
        if self.safe:
            query, body = self.encrypted(xml, query=query)
        else:
            query, body = query or self.query(), xml
        return self.read(self.raw_post(query, body))

    def read(self, response: Any) -> Answer:
        answer = Answer(response.status_code, response["Content-Type"], response.content)
        if response.status_code != 200 or response.content == b"success":
            return answer
        text = response.content.decode("utf-8")
        if self.safe:
            envelope = xmltodict.parse(text)["xml"]
            # wechatpy checks the reply's msg_signature and appid as WeChat does.
            text = self.crypto().decrypt_message(
                text, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
            )
        answer.reply_xml = text
        answer.reply = xmltodict.parse(text)["xml"]
        return answer


@pytest.fixture
def oa(request: pytest.FixtureRequest, settings: Any) -> Iterator[Wechat]:
    """The official account configured, and WeChat to post to it: in plain mode (no EncodingAESKey), or in
    safe mode when parametrised indirectly with "safe" (BOTH_MODES, SAFE_MODE)."""
    mode = getattr(request, "param", "plain")
    assert mode in ("plain", "safe"), mode
    settings.WECHAT_OA_APPID = APPID
    settings.WECHAT_OA_SECRET = "oa-secret-for-tests-0123456789ab"
    settings.WECHAT_OA_TOKEN = TOKEN
    settings.WECHAT_OA_AES_KEY = AES_KEY if mode == "safe" else ""
    providers.reset()
    yield Wechat(safe=mode == "safe")
    providers.reset()


def sandbox_openid(user: str) -> str:
    """Sandbox user `user`'s openid in the account (of the `oa` fixture), known from now on to the sandbox's
    cgi-bin/user/info: it answers with their unionid, `unionid_for(user)`, as for their mini-program login."""
    return str(providers.sandbox().providers["wechat"]._register(APPID, user))


@pytest.fixture(autouse=True)
def _celery_inline() -> Any:
    """Tasks run where they are sent (after the commit), never queued to the Redis of the suite."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before
