"""The sandbox's official account through our real OfficialAccountClient (in-process and over real HTTP): web
OAuth and its consent page, jsapi_ticket, menu, user info, scene QR codes and the showqrcode page; and the
follower's phone page, whose messages to our server URL are checked with our MessageCrypto and with wechatpy."""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests
from django.conf import settings as django_settings
from django.test import Client

from config import providers
from providers.http import HttpConfig, ProviderError, ProviderUnavailable, make_session
from providers.sandbox.wechat import (
    QR_MAX_EXPIRE,
    ServerUrl,
    WechatSimulator,
    message_xml,
    openid_for,
    original_id,
    unionid_for,
)
from providers.wechat.messages import (
    MessageCrypto,
    check_server_signature,
    message_signature,
    parse_message,
    text_reply,
)
from providers.wechat.official_account import OfficialAccountClient, OfficialAccountConfig
from providers.wechat.token import MemoryTokenStore

AUTHORIZE = "/sandbox/wechat/connect/oauth2/authorize"
PHONE = "/sandbox/wechat/official-account/phone"
SHOWQRCODE = "/sandbox/wechat/cgi-bin/showqrcode"
PAGE = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser's form post asks for
JSON = {"HTTP_ACCEPT": "application/json"}
CALLBACK = "https://shop.example.com/h5/callback"

MENU = {
    "button": [
        {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
        {
            "name": "菜单",
            "sub_button": [
                {"type": "view", "name": "搜索", "url": "https://www.example.com/"},
                {"type": "click", "name": "赞一下我们", "key": "V1001_GOOD"},
            ],
        },
    ]
}


@pytest.fixture
def oa() -> OfficialAccountClient:
    return providers.official_account()


@pytest.fixture
def appid() -> str:
    return str(django_settings.WECHAT_OA_APPID)


@pytest.fixture
def sim(wechat_sandbox: WechatSimulator) -> WechatSimulator:
    return wechat_sandbox


class Inbox:
    """Stands in for our server URL: keeps what the sandbox posts and answers with `answer(query, body)`."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.answer: Any = lambda query, body: (200, "success")

    def __call__(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        self.posts.append((url, headers, body))
        return self.answer(dict(parse_qsl(urlsplit(url).query)), body)  # type: ignore[no-any-return]

    @property
    def last(self) -> tuple[dict[str, str], bytes]:
        url, _, body = self.posts[-1]
        return dict(parse_qsl(urlsplit(url).query)), body


@pytest.fixture
def inbox(sim: WechatSimulator) -> Inbox:
    captured = Inbox()
    sim.deliver = captured
    return captured


def _errcode(call: Any, *args: Any) -> int | None:
    with pytest.raises(ProviderError) as info:
        call(*args)
    return info.value.errcode


def _local(url: str) -> str:
    """The path and query of a sandbox page's absolute URL (the client builds them under PUBLIC_BASE_URL)."""
    assert url.startswith(django_settings.PUBLIC_BASE_URL), url
    return url.removeprefix(django_settings.PUBLIC_BASE_URL).split("#", 1)[0]


def _consent(
    client: Client,
    oa: OfficialAccountClient,
    user: str = "alice",
    scope: str = "snsapi_userinfo",
    *,
    decision: str = "allow",
    snapshot: bool = False,
    redirect_uri: str = CALLBACK,
    state: str = "st4te",
) -> dict[str, str]:
    """Opens the consent page of the client's authorize_url, presses Allow or Deny as `user`, and returns
    the query of the redirect back (code and state)."""
    page = client.get(_local(oa.authorize_url(redirect_uri, scope, state)))
    assert page.status_code == 200, page.content
    form = {
        **dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.content.decode())),
        "user": user,
        "decision": decision,
    }
    form = {k: html.unescape(v) for k, v in form.items()}
    if snapshot:
        form["snapshot"] = "1"
    answer = client.post(AUTHORIZE, form, **PAGE)
    assert answer.status_code == 302, answer.content
    location = answer["Location"]
    assert location.startswith(redirect_uri.split("#")[0].split("?")[0] + "?"), location
    return dict(parse_qsl(urlsplit(location).query))


def _phone(client: Client, **body: str) -> Any:
    answer = client.post(PHONE, json.dumps(body), content_type="application/json", **JSON)
    assert answer.status_code == 200, answer.content
    return answer.json()


# --- web OAuth: the consent page and sns/* ------------------------------------------------------------------


def test_consent_page_shows_the_request_and_allow_gives_a_single_use_code(client, oa, appid):
    page = client.get(_local(oa.authorize_url(CALLBACK, "snsapi_userinfo", "st4te")))
    text = page.content.decode()
    assert page["Content-Type"].startswith("text/html")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    assert (
        f'<code id="appid">{appid}</code>' in text and '<span class="number" id="host">shop.example.com</span>' in text
    )
    assert 'id="allow"' in text and 'id="deny"' in text and 'name="snapshot"' in text
    assert "cdn" not in text.lower() and "<script src" not in text

    back = _consent(client, oa, "alice")
    assert back["state"] == "st4te" and back["code"].startswith("sbxoa")
    token = oa.oauth_access_token(back["code"])
    assert token.openid == openid_for(appid, "alice")
    assert token.unionid == unionid_for("alice")
    assert token.scope == "snsapi_userinfo" and token.expires_in == 7200
    assert token.is_snapshotuser is False
    # WeChat's callback twice: the code was used.
    assert _errcode(oa.oauth_access_token, back["code"]) == 40163
    assert _errcode(oa.oauth_access_token, "sbxoa-never-issued") == 40029


def test_the_redirect_keeps_the_callbacks_own_query_and_fragment(client, oa):
    back = client.post(
        AUTHORIZE,
        {
            "appid": oa.config.appid,
            "redirect_uri": "https://shop.example.com/h5/?from=menu#/orders",
            "response_type": "code",
            "scope": "snsapi_base",
            "state": "abc",
            "user": "bob",
            "decision": "allow",
        },
        **PAGE,
    )
    location = urlsplit(back["Location"])
    assert location.fragment == "/orders" and location.path == "/h5/"
    query = parse_qs(location.query)
    assert query["from"] == ["menu"] and query["state"] == ["abc"] and len(query["code"]) == 1


def test_deny_goes_back_with_the_state_and_no_code(client, oa):
    back = _consent(client, oa, "alice", decision="deny")
    assert back == {"state": "st4te"}


def test_base_scope_has_no_unionid_and_no_userinfo(client, oa, appid):
    token = oa.oauth_access_token(_consent(client, oa, "carol", "snsapi_base")["code"])
    assert token.openid == openid_for(appid, "carol") and token.scope == "snsapi_base"
    assert token.unionid is None  # "只有当scope为snsapi_userinfo时返回"
    assert _errcode(oa.oauth_userinfo, token.access_token, token.openid) == 48001


def test_userinfo_refresh_and_their_errors(client, oa, appid):
    form_page = client.get(_local(oa.authorize_url(CALLBACK, "snsapi_userinfo", "s")))
    assert 'name="nickname"' in form_page.content.decode()
    answer = client.post(
        AUTHORIZE,
        {
            "appid": appid,
            "redirect_uri": CALLBACK,
            "response_type": "code",
            "scope": "snsapi_userinfo",
            "state": "s",
            "user": "dave",
            "nickname": "大卫 🐼",
            "decision": "allow",
        },
        **PAGE,
    )
    token = oa.oauth_access_token(dict(parse_qsl(urlsplit(answer["Location"]).query))["code"])
    info = oa.oauth_userinfo(token.access_token, token.openid)
    assert (info.openid, info.nickname, info.unionid) == (token.openid, "大卫 🐼", unionid_for("dave"))
    assert info.headimgurl.startswith("https://thirdwx.qlogo.cn/mmopen/")
    assert _errcode(oa.oauth_userinfo, token.access_token, openid_for(appid, "erin")) == 40003
    assert _errcode(oa.oauth_userinfo, "sbxoat_forged", token.openid) == 40001

    refreshed = oa.oauth_refresh_token(token.refresh_token)
    assert refreshed.openid == token.openid and refreshed.access_token != token.access_token
    assert refreshed.refresh_token == token.refresh_token
    assert oa.oauth_userinfo(refreshed.access_token, token.openid).nickname == "大卫 🐼"
    assert _errcode(oa.oauth_refresh_token, "sbxoar_forged") == 40030


def test_a_snapshot_page_visitor_is_a_virtual_account(client, oa, appid, sim):
    token = oa.oauth_access_token(_consent(client, oa, "frank", snapshot=True)["code"])
    assert token.is_snapshotuser is True
    # Neither frank's openid nor his unionid: nothing to bind or merge.
    assert token.openid != openid_for(appid, "frank") and token.unionid != unionid_for("frank")
    assert token.unionid  # a virtual one, as WeChat gives
    info = oa.oauth_userinfo(token.access_token, token.openid)
    assert info.nickname == "微信用户"
    assert _errcode(oa.user_info, token.openid) == 40003
    # A normal visit of the same person is the real account.
    real = oa.oauth_access_token(_consent(client, oa, "frank")["code"])
    assert real.openid == openid_for(appid, "frank") and real.is_snapshotuser is False


def test_one_person_one_unionid_across_the_mini_program_and_the_official_account(client, oa, appid):
    mini = providers.wechat_miniprogram().code2session("grace")
    web = oa.oauth_access_token(_consent(client, oa, "grace")["code"])
    assert web.unionid == mini.unionid == unionid_for("grace")
    assert web.openid != mini.openid  # one openid per app
    _phone(client, user="grace", mode="plain", kind="subscribe")
    assert oa.user_info(web.openid).unionid == mini.unionid


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"appid": "wx-nobody"}, "no official account has the appid"),
        ({"appid": ""}, "appid is missing"),
        ({"redirect_uri": "javascript:alert(1)"}, "redirect_uri must be an http(s) URL"),
        ({"redirect_uri": "ftp://shop.example.com/"}, "redirect_uri must be an http(s) URL"),
        ({"redirect_uri": ""}, "redirect_uri is missing"),
        ({"scope": "snsapi_login"}, "scope must be one of"),
        ({"response_type": "token"}, "response_type must be code"),
    ],
)
def test_the_consent_page_refuses_what_wechat_refuses(client, appid, sim, params, says):
    query = {"appid": appid, "redirect_uri": CALLBACK, "response_type": "code", "scope": "snsapi_base", "state": "s"}
    query.update(params)
    page = client.get(AUTHORIZE, query)
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")
    (problem,) = re.findall(r'<p id="problem">([^<]*)</p>', page.content.decode())
    assert says in html.unescape(problem)
    # Posting the form anyway grants nothing.
    answer = client.post(AUTHORIZE, {**query, "user": "alice", "decision": "allow"}, **PAGE)
    assert answer.status_code == 400 and "Location" not in answer
    assert sim.recent_users() == []


def test_the_consent_page_asks_again_for_a_name_it_cannot_take(client, oa, appid):
    query = {"appid": appid, "redirect_uri": CALLBACK, "response_type": "code", "scope": "snsapi_base", "state": "s"}
    answer = client.post(AUTHORIZE, {**query, "user": "not a name!", "decision": "allow"}, **PAGE)
    assert answer.status_code == 400
    assert '<p class="bad" id="error">' in answer.content.decode() and 'id="allow"' in answer.content.decode()


def test_a_fault_on_the_code_exchange_does_not_use_the_code_up(client, oa):
    code = _consent(client, oa, "heidi")["code"]
    providers.sandbox().set_fault("wechat", "http_500", 1)
    with pytest.raises(ProviderUnavailable):
        oa.oauth_access_token(code)
    assert oa.oauth_access_token(code).openid  # the retry gets the token
    assert providers.sandbox().faults() == {}


@pytest.mark.parametrize("fault", ["http_500", "malformed"])
def test_faults_reach_the_official_account_endpoints(client, oa, fault):
    token = oa.oauth_access_token(_consent(client, oa, "ivan")["code"])
    oa.access_token()  # fetched before the faults
    sandbox = providers.sandbox()
    sandbox.set_fault("wechat", fault, 3)
    with pytest.raises(ProviderUnavailable):
        oa.oauth_userinfo(token.access_token, token.openid)
    with pytest.raises(ProviderUnavailable):
        oa.get_menu()
    with pytest.raises(ProviderUnavailable):
        oa.create_temporary_qrcode("x", 60)
    assert sandbox.faults() == {}
    assert oa.get_menu() is None


# --- jsapi_ticket ----------------------------------------------------------------------------------------


def test_jsapi_ticket_is_stable_until_it_expires_and_the_client_caches_it(oa, appid, sim):
    first, expires_in = oa.fetch_jsapi_ticket()
    assert expires_in == 7200 and len(first) == 86
    again, left = oa.fetch_jsapi_ticket()
    assert again == first and 7190 <= left <= 7200
    assert oa.jsapi_ticket() == first
    fetched = sim.ticket_fetches(appid)
    assert oa.jsapi_ticket() == first and sim.ticket_fetches(appid) == fetched  # from the token store
    sim.expire_jsapi_ticket(appid)
    renewed, _ = oa.fetch_jsapi_ticket()
    assert renewed != first


def test_getticket_takes_only_an_access_token_the_sandbox_issued(oa, appid, sim):
    oa.access_token()
    # Someone else refreshed the app's token: the client's is refused (40001), expired and fetched again.
    sim.expire_access_token(appid)
    ticket, _ = oa.fetch_jsapi_ticket()
    assert ticket
    session = make_session(HttpConfig(), {})
    session.mount("https://api.weixin.qq.com", oa.session.get_adapter("https://api.weixin.qq.com"))
    url = "https://api.weixin.qq.com/cgi-bin/ticket/getticket"
    forged = session.get(url, params={"access_token": "sbx_forged", "type": "jsapi"}, timeout=5).json()
    assert forged["errcode"] == 40001
    bad_type = session.get(url, params={"access_token": oa.access_token(), "type": "nope"}, timeout=5).json()
    assert bad_type["errcode"] == 40097


# --- menu ------------------------------------------------------------------------------------------------


def test_the_menu_is_kept_per_account(oa, appid, sim):
    assert oa.get_menu() is None  # 46003
    oa.create_menu(MENU)
    got = oa.get_menu()
    assert got is not None
    buttons = got["menu"]["button"]
    assert buttons[0] == {**MENU["button"][0], "sub_button": []}
    assert buttons[1]["name"] == "菜单" and [b["sub_button"] for b in buttons[1]["sub_button"]] == [[], []]
    assert sim.menu_keys(appid) == [("今日歌曲", "V1001_TODAY_MUSIC"), ("赞一下我们", "V1001_GOOD")]
    # the mini-program's token sees no menu of the account's
    assert sim.menu(django_settings.WECHAT_MINIPROGRAM_APPID) is None
    oa.delete_menu()
    assert oa.get_menu() is None


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (b"not json", 47001),
        (json.dumps({"button": [{"type": "click", "name": "a", "key": "k"}] * 4}).encode(), 40016),
        (json.dumps({"button": [{"type": "click", "name": "十七个字节的名字啊", "key": "k"}]}).encode(), 40018),
        (json.dumps({"button": [{"type": "dance", "name": "a", "key": "k"}]}).encode(), 40017),
        (json.dumps({"button": [{"type": "click", "name": "a", "key": "k" * 129}]}).encode(), 40019),
        (json.dumps({"button": [{"type": "view", "name": "a"}]}).encode(), 40020),
        (
            json.dumps(
                {"button": [{"name": "a", "sub_button": [{"type": "click", "name": "b", "key": "k"}] * 6}]}
            ).encode(),
            40023,
        ),
        (
            json.dumps({"button": [{"name": "a", "sub_button": [{"type": "x", "name": "b", "key": "k"}]}]}).encode(),
            40024,
        ),
    ],
)
def test_menu_create_refuses_what_wechat_refuses(oa, body, errcode):
    # Straight to the endpoint: the client would refuse these itself before calling.
    answer = oa.session.post(
        "https://api.weixin.qq.com/cgi-bin/menu/create",
        params={"access_token": oa.access_token()},
        data=body,
        timeout=5,
    ).json()
    assert answer["errcode"] == errcode
    assert oa.get_menu() is None


# --- followers and scene QR codes ------------------------------------------------------------------------


def test_user_info_follows_the_follow(client, oa, appid, inbox):
    openid = openid_for(appid, "judy")
    assert _errcode(oa.user_info, openid) == 40003  # an openid the account never saw
    code = oa.create_temporary_qrcode("bind-7", 600)
    _phone(client, user="judy", mode="plain", kind="subscribe", scene="bind-7")
    info = oa.user_info(openid)
    assert info.subscribed and info.unionid == unionid_for("judy")
    assert (info.subscribe_scene, info.qr_scene_str) == ("ADD_SCENE_QR_CODE", "bind-7")
    assert info.subscribe_time and abs(info.subscribe_time - int(parse_message(inbox.last[1])["CreateTime"])) == 0
    assert parse_message(inbox.last[1])["Ticket"] == code.ticket  # the scene's latest code
    _phone(client, user="judy", mode="plain", kind="unsubscribe")
    gone = oa.user_info(openid)
    assert not gone.subscribed and gone.unionid == unionid_for("judy") and gone.subscribe_time is None


def test_a_scene_qr_code_is_shown_and_scanned_on_the_showqrcode_page(client, oa, appid, inbox):
    code = oa.create_temporary_qrcode("bind-42", 600)
    assert code.expire_seconds == 600 and code.url.startswith("http://weixin.qq.com/q/")
    assert code.image_url.startswith(django_settings.PUBLIC_BASE_URL + SHOWQRCODE + "?ticket=")
    page = client.get(_local(code.image_url) + "&user=kate")
    assert page.status_code == 200
    text = page.content.decode()
    assert '<code id="scene">bind-42</code>' in text and "<svg" in text
    assert "Scan and follow as kate" in text
    (action,) = re.findall(r'<form id="scan" method="post" action="([^"]*)">', text)
    scanned = client.post(html.unescape(action), {"user": "kate", "mode": "plain"}, **PAGE)
    assert scanned.status_code == 303 and scanned["Location"].startswith(PHONE + "?sent=")
    message = parse_message(inbox.last[1])
    assert (message["Event"], message["EventKey"], message["Ticket"]) == ("subscribe", "qrscene_bind-42", code.ticket)
    assert message["FromUserName"] == openid_for(appid, "kate") and message["ToUserName"] == original_id(appid)
    assert oa.user_info(openid_for(appid, "kate")).qr_scene_str == "bind-42"
    # Kate follows now: the page says so, and scanning again is a SCAN event with the bare scene.
    assert "Scan as kate (already following)" in client.get(_local(code.image_url) + "&user=kate").content.decode()
    again = client.post(html.unescape(action), json.dumps({"user": "kate", "mode": "plain"}), "application/json")
    assert again.status_code == 200 and again.json()["kind"] == "SCAN"
    message = parse_message(inbox.last[1])
    assert (message["Event"], message["EventKey"], message["Ticket"]) == ("SCAN", "bind-42", code.ticket)


def test_qrcode_create_answers_as_wechat_does(oa):
    def create(body: dict[str, Any]) -> Any:
        url = "https://api.weixin.qq.com/cgi-bin/qrcode/create"
        return oa.session.post(url, params={"access_token": oa.access_token()}, json=body, timeout=5).json()

    numeric = create({"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 123}}})
    assert numeric["expire_seconds"] == 60  # the documented default
    assert providers.sandbox().providers["wechat"].qrcode(numeric["ticket"])["scene"] == "123"
    permanent = create({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "shop"}}})
    assert set(permanent) == {"ticket", "url"}
    longest = create(
        {"expire_seconds": 10**9, "action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": "x"}}}
    )
    assert longest["expire_seconds"] == QR_MAX_EXPIRE
    assert create({"action_name": "QR_FANCY", "action_info": {"scene": {"scene_id": 1}}})["errcode"] == 40097
    assert create({"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_id": 1}}})["errcode"] == 40053
    assert (
        create({"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100_001}}})["errcode"] == 40053
    )


def test_an_unknown_ticket_is_a_404_page(client):
    page = client.get(SHOWQRCODE, {"ticket": "gQnothing=="})
    assert page.status_code == 404 and "No such QR code" in page.content.decode()
    assert client.post(SHOWQRCODE + "?ticket=gQnothing==", {"user": "a"}).json()["error"].startswith("No such QR")


# --- the follower's phone: messages to our server URL ------------------------------------------------------


def test_a_plain_text_is_signed_as_wechat_signs_it(client, appid, inbox):
    sent = _phone(client, user="alice", mode="plain", kind="text", content="hi ]]> <there> & 你好")
    query, body = inbox.last
    assert inbox.posts[-1][0].startswith(django_settings.PUBLIC_BASE_URL + "/wechat/official-account/?")
    assert inbox.posts[-1][1]["Content-Type"] == "text/xml"
    assert set(query) == {"signature", "timestamp", "nonce", "openid"}
    assert check_server_signature(
        django_settings.WECHAT_OA_TOKEN, query["signature"], query["timestamp"], query["nonce"]
    )
    message = parse_message(body)
    assert message["Content"] == "hi ]]> <there> & 你好"
    assert message["MsgType"] == "text" and message["FromUserName"] == query["openid"] == openid_for(appid, "alice")
    assert message["ToUserName"] == original_id(appid) and message["MsgId"].isdigit() and len(message["MsgId"]) == 19
    assert sent["request"]["body"] == body.decode() == sent["message"]
    assert sent["status"] == 200 and sent["reply"] == "" and sent["verified"] is None and sent["problem"] == ""


def test_a_safe_mode_message_opens_with_our_crypto_and_with_wechatpy(client, appid, inbox):
    from wechatpy.crypto import WeChatCrypto

    token, key = django_settings.WECHAT_OA_TOKEN, django_settings.WECHAT_OA_AES_KEY
    sent = _phone(client, user="bob", mode="safe", kind="click", key="V1001_GOOD")
    query, body = inbox.last
    assert query["encrypt_type"] == "aes" and set(query) >= {"signature", "msg_signature", "timestamp", "nonce"}
    assert check_server_signature(token, query["signature"], query["timestamp"], query["nonce"])
    envelope = parse_message(body)
    assert set(envelope) == {"ToUserName", "Encrypt"} and envelope["ToUserName"] == original_id(appid)
    assert query["msg_signature"] == message_signature(token, query["timestamp"], query["nonce"], envelope["Encrypt"])
    ours = MessageCrypto(token, key, appid).decrypt(
        query["msg_signature"], query["timestamp"], query["nonce"], envelope["Encrypt"]
    )
    theirs = WeChatCrypto(token, key, appid).decrypt_message(
        body.decode(), query["msg_signature"], query["timestamp"], query["nonce"]
    )
    assert ours == theirs == sent["message"]
    message = parse_message(ours.encode())
    assert (message["MsgType"], message["Event"], message["EventKey"]) == ("event", "CLICK", "V1001_GOOD")
    assert "MsgId" not in message


def _encrypted_reply(query: dict[str, str], body: bytes, content: str) -> str:
    """Our server's part, done by wechatpy: open the message, answer a text reply in safe mode."""
    from wechatpy.crypto import WeChatCrypto

    crypto = WeChatCrypto(
        django_settings.WECHAT_OA_TOKEN, django_settings.WECHAT_OA_AES_KEY, django_settings.WECHAT_OA_APPID
    )
    message = parse_message(
        crypto.decrypt_message(body.decode(), query["msg_signature"], query["timestamp"], query["nonce"]).encode()
    )
    reply = text_reply(message["FromUserName"], message["ToUserName"], content, 1700000000)
    return str(crypto.encrypt_message(reply, query["nonce"], query["timestamp"]))


def test_the_phone_shows_a_safe_mode_reply_decrypted_and_verified(client, appid, inbox):
    inbox.answer = lambda query, body: (200, _encrypted_reply(query, body, "welcome ]]> 欢迎"))
    sent = _phone(client, user="carol", mode="safe", kind="subscribe")
    assert sent["verified"] is True and sent["problem"] == ""
    assert sent["reply_fields"]["Content"] == "welcome ]]> 欢迎"
    assert sent["reply_fields"]["ToUserName"] == openid_for(appid, "carol")
    page = client.get(PHONE, {"sent": sent["id"]}).content.decode()
    assert '<span class="bubble reply">welcome ]]&gt; 欢迎</span>' in page
    assert "reply msg_signature verified, decrypted" in page
    assert '<span class="bubble mine" id="sent-message">[subscribe]</span>' in page


@pytest.mark.parametrize(
    ("answer", "verified", "problem"),
    [
        (
            lambda q, b: (
                200,
                _encrypted_reply(q, b, "x").replace("<MsgSignature><![CDATA[", "<MsgSignature><![CDATA[0"),
            ),
            False,
            "does not verify",
        ),
        (lambda q, b: (200, text_reply("o", "gh", "plain", 1)), False, "a plain reply in safe mode"),
        (lambda q, b: (500, "oops"), None, "HTTP 500"),
        (lambda q, b: (403, ""), None, "HTTP 403"),
        (lambda q, b: (200, ""), None, ""),
    ],
)
def test_the_phone_says_what_wechat_would_make_of_the_answer(client, inbox, answer, verified, problem):
    inbox.answer = answer
    sent = _phone(client, user="dave", mode="safe", kind="text", content="hello")
    assert sent["verified"] is verified and problem in sent["problem"]
    assert sent["reply_fields"] is None


def test_an_unreachable_server_url_is_no_answer(client, sim):
    def down(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        raise requests.ConnectionError("connection refused")

    sim.deliver = down
    sent = _phone(client, user="erin", mode="plain", kind="text", content="anyone?")
    assert sent["status"] == 0 and "no answer within 5 s" in sent["problem"]


def test_send_again_replays_the_very_same_request(client, inbox):
    first = _phone(client, user="frank", mode="safe", kind="text", content="twice")
    answer = client.post(first["again"], **JSON)
    assert answer.status_code == 200
    again = answer.json()
    assert inbox.posts[0] == inbox.posts[1]  # URL (signature, timestamp, nonce), headers and body
    assert again["attempt"] == 2 and again["replay_of"] == first["id"] and again["message"] == first["message"]
    third = client.post(again["again"], **JSON).json()
    assert third["attempt"] == 3 and third["replay_of"] == first["id"] and len(inbox.posts) == 3
    # From the page: back to the page showing the retry.
    pressed = client.post(third["again"], **PAGE)
    assert pressed.status_code == 303
    assert "Sent again (attempt 4)" in client.get(pressed["Location"]).content.decode()
    assert client.post(f"{PHONE}/nope/again", **JSON).status_code == 404


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_a_bad_signature_fault_spoils_the_next_message_only(client, inbox, mode):
    token = django_settings.WECHAT_OA_TOKEN
    providers.sandbox().set_fault("wechat", "bad_signature", 1)
    spoilt = _phone(client, user="grace", mode=mode, kind="text", content="forged?")
    assert spoilt["fault"] == "bad_signature"
    query, body = inbox.last
    good = _phone(client, user="grace", mode=mode, kind="text", content="real")
    assert good["fault"] is None
    query2, body2 = inbox.last

    def signed(q: dict[str, str], b: bytes) -> bool:
        if mode == "plain":
            return check_server_signature(token, q["signature"], q["timestamp"], q["nonce"])
        encrypted = parse_message(b)["Encrypt"]
        return q["msg_signature"] == message_signature(token, q["timestamp"], q["nonce"], encrypted)

    assert not signed(query, body) and signed(query2, body2)
    assert providers.sandbox().faults() == {}


def test_the_phone_page_sends_from_its_form_and_shows_the_exchange(client, oa, appid, inbox):
    oa.create_menu(MENU)
    page = client.get(PHONE).content.decode()
    assert (
        '<span class="number" id="server-url">' + django_settings.PUBLIC_BASE_URL + "/wechat/official-account/</span>"
        in page
    )
    assert '<option value="V1001_TODAY_MUSIC">今日歌曲</option>' in page
    for kind in ("text", "subscribe", "click", "unsubscribe"):
        assert f'name="kind" value="{kind}"' in page
    inbox.answer = lambda query, body: (
        200,
        text_reply(parse_message(body)["FromUserName"], original_id(appid), "🎵", 1),
    )
    pressed = client.post(
        PHONE, {"user": "heidi", "mode": "plain", "kind": "click", "key": "V1001_TODAY_MUSIC"}, **PAGE
    )
    assert pressed.status_code == 303
    shown = client.get(pressed["Location"]).content.decode()
    assert '<span class="bubble mine" id="sent-message">[CLICK V1001_TODAY_MUSIC]</span>' in shown
    assert '<span class="bubble reply">🎵</span>' in shown and "<b>HTTP 200</b>" in shown
    assert f'action="{PHONE}/' in shown  # send again
    # A bad press comes back to the page saying why.
    bad = client.post(PHONE, {"user": "heidi", "mode": "plain", "kind": "text", "content": ""}, **PAGE)
    assert bad.status_code == 400 and '<p class="bad" id="error">' in bad.content.decode()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"user": "a b", "mode": "plain", "kind": "text", "content": "x"}, "a sandbox user is"),
        ({"user": "alice", "mode": "loud", "kind": "text", "content": "x"}, "mode must be"),
        ({"user": "alice", "mode": "plain", "kind": "poke"}, "kind must be"),
        ({"user": "alice", "mode": "plain", "kind": "text", "content": ""}, "a text message is"),
        ({"user": "alice", "mode": "plain", "kind": "text", "content": "bell \x07"}, "XML cannot carry"),
        ({"user": "alice", "mode": "plain", "kind": "click", "key": ""}, "a menu key is"),
        ({"user": "alice", "mode": "plain", "kind": "scan"}, "a scan needs a scene"),
        ({"user": "alice", "mode": "plain", "kind": "subscribe", "scene": "s" * 65}, "a scene is at most"),
    ],
)
def test_the_phone_api_refuses_bad_input_and_sends_nothing(client, inbox, sim, body, says):
    answer = client.post(PHONE, json.dumps(body), content_type="application/json", **JSON)
    assert answer.status_code == 400 and says in answer.json()["error"]
    assert (
        inbox.posts == []
        and sim.follower(django_settings.WECHAT_OA_APPID, openid_for(django_settings.WECHAT_OA_APPID, "alice")) is None
    )


def test_safe_mode_needs_an_encoding_aes_key(client, inbox, settings):
    settings.WECHAT_OA_AES_KEY = ""
    answer = client.post(
        PHONE, json.dumps({"user": "a", "mode": "safe", "kind": "subscribe"}), "application/json", **JSON
    )
    assert answer.status_code == 400 and "EncodingAESKey" in answer.json()["error"]
    assert inbox.posts == []
    assert 'value="safe" disabled' in client.get(PHONE).content.decode()


def test_message_xml_is_what_wechat_posts():
    xml = message_xml({"ToUserName": "gh_1", "CreateTime": 1348831860, "Content": "a]]>b"})
    assert xml == (
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><CreateTime>1348831860</CreateTime>"
        "<Content><![CDATA[a]]]]><![CDATA[>b]]></Content></xml>"
    )
    assert parse_message(xml.encode())["Content"] == "a]]>b"


def test_the_index_links_the_official_account_pages(client, oa):
    oa.create_temporary_qrcode("promo", 60)
    page = client.get("/sandbox/").content.decode()
    assert f'href="{PHONE}" id="oa-phone"' in page
    (consent,) = re.findall(r'<a href="([^"]*)" id="oa-consent">', page)
    assert client.get(html.unescape(consent)).status_code == 200
    assert re.search(rf'<a class="number" href="{SHOWQRCODE}\?ticket=[^"]+">promo</a>', page)
    for endpoint in ("GET /sns/oauth2/access_token", "POST /cgi-bin/qrcode/create", "GET /cgi-bin/ticket/getticket"):
        assert f"<code>{endpoint}</code>" in page


# --- over real HTTP ------------------------------------------------------------------------------------------


@pytest.fixture
def http_oa(live_server, transactional_db) -> OfficialAccountClient:
    pages = live_server.url + "/sandbox/wechat"
    config = OfficialAccountConfig(
        appid=django_settings.WECHAT_OA_APPID,
        secret=django_settings.WECHAT_OA_SECRET,
        base_url=pages,
        open_base_url=pages,
        mp_base_url=pages,
    )
    http = HttpConfig()
    return OfficialAccountClient(config, make_session(http), http, MemoryTokenStore())


def test_http_consent_code_userinfo_menu_ticket_and_qrcode(http_oa):
    url = http_oa.authorize_url("http://127.0.0.1:9/callback", "snsapi_userinfo", "xyz")
    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and 'id="allow"' in page.text
    form = {
        k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.text)
    }
    back = requests.post(
        urlsplit(url)._replace(query="", fragment="").geturl(),
        data={**form, "user": "ivan", "decision": "allow"},
        allow_redirects=False,
        timeout=10,
    )
    assert back.status_code == 302
    query = dict(parse_qsl(urlsplit(back.headers["Location"]).query))
    assert query["state"] == "xyz"
    token = http_oa.oauth_access_token(query["code"])
    assert token.unionid == unionid_for("ivan")
    assert http_oa.oauth_userinfo(token.access_token, token.openid).nickname == "ivan"
    assert _errcode(http_oa.oauth_access_token, query["code"]) == 40163

    assert http_oa.jsapi_ticket()
    http_oa.create_menu(MENU)
    assert http_oa.get_menu()["menu"]["button"][0]["key"] == "V1001_TODAY_MUSIC"  # type: ignore[index]
    code = http_oa.create_temporary_qrcode("bind-http", 300)
    shown = requests.get(code.image_url, timeout=10)  # the ticket's + / = survive the URL
    assert shown.status_code == 200 and '<code id="scene">bind-http</code>' in shown.text


class _OurServerUrl(BaseHTTPRequestHandler):
    """A tiny stand-in for our server URL (the real view is being written): wechatpy checks the signature,
    opens a safe-mode message and answers an encrypted text reply; a bad signature gets 403."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        from wechatpy.exceptions import InvalidSignatureException
        from wechatpy.utils import check_signature

        query = dict(parse_qsl(urlsplit(self.path).query))
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            check_signature(django_settings.WECHAT_OA_TOKEN, query["signature"], query["timestamp"], query["nonce"])
            answer = _encrypted_reply(query, body, "got it") if query.get("encrypt_type") == "aes" else "success"
            status = 200
        except (InvalidSignatureException, KeyError):
            status, answer = 403, ""
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def our_server_url(settings) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OurServerUrl)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.PUBLIC_BASE_URL = f"http://127.0.0.1:{server.server_address[1]}"
    yield settings.PUBLIC_BASE_URL
    server.shutdown()
    server.server_close()


def test_http_the_phone_api_posts_to_the_server_url_over_real_http(live_server, transactional_db, our_server_url):
    def send(**body: str) -> Any:
        answer = requests.post(live_server.url + PHONE, json=body, headers={"Accept": "application/json"}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    sent = send(user="judy", mode="safe", kind="text", content="hello over http")
    assert sent["request"]["url"].startswith(our_server_url + "/wechat/official-account/?")
    assert sent["status"] == 200 and sent["verified"] is True
    assert sent["reply_fields"]["Content"] == "got it"
    providers.sandbox().set_fault("wechat", "bad_signature", 1)
    assert send(user="judy", mode="plain", kind="subscribe")["status"] == 403
    assert send(user="judy", mode="plain", kind="unsubscribe")["status"] == 200


def test_the_server_url_dataclass_keeps_its_secrets_out_of_repr():
    server = ServerUrl(
        url="http://x/wechat/official-account/", token="tok-secret", encoding_aes_key="k" * 43, appid="wx1"
    )
    assert "tok-secret" not in repr(server) and "kkkk" not in repr(server)
