"""providers/wechat/official_account.py against a fake WeChat behind the session: the exact requests, the parsed
answers, the jsapi_ticket cached and refreshed through the token store, and the menu limits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter

from providers.http import HttpConfig, ProviderError, ProviderUnavailable, make_session
from providers.wechat.official_account import (
    FollowerInfo,
    MenuError,
    OAuthToken,
    OAuthUserInfo,
    OfficialAccountClient,
    OfficialAccountConfig,
    QrCodeTicket,
    validate_menu,
)
from providers.wechat.token import AccessTokenManager, MemoryTokenStore

APPID = "wxoa0000000000001"
SECRET = "oa-secret-never-logged"

Answer = dict[str, Any] | Callable[[requests.PreparedRequest], dict[str, Any]]


class FakeWechat(BaseAdapter):
    """Answers by path, records every request; nothing leaves the process."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, Answer] = {}
        self.requests: list[requests.PreparedRequest] = []
        self.token_count = 0
        self.routes["/cgi-bin/stable_token"] = self._token

    def _token(self, request: requests.PreparedRequest) -> dict[str, Any]:
        self.token_count += 1
        return {"access_token": f"app-token-{self.token_count}", "expires_in": 7200}

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.requests.append(request)
        answer = self.routes.get(urlsplit(request.url).path, {"errcode": 404, "errmsg": "no such fake route"})
        body = answer(request) if callable(answer) else answer
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        response.headers["Content-Type"] = "application/json; charset=utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass

    def calls(self, path: str) -> list[requests.PreparedRequest]:
        return [r for r in self.requests if urlsplit(r.url).path == path]


def query(request: requests.PreparedRequest) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url).query, keep_blank_values=True).items()}


@pytest.fixture
def fake() -> FakeWechat:
    return FakeWechat()


@pytest.fixture
def store() -> MemoryTokenStore:
    return MemoryTokenStore()


@pytest.fixture
def client(fake, store) -> OfficialAccountClient:
    session = make_session(HttpConfig(), mounts={"https://": fake, "http://": fake})
    return OfficialAccountClient(OfficialAccountConfig(appid=APPID, secret=SECRET), session, HttpConfig(), store)


# --- web OAuth -------------------------------------------------------------------------------------


def test_authorize_url_documented_order(client):
    url = client.authorize_url("https://h5.example.com/oauth/callback?next=/orders&x=1", "snsapi_userinfo", "s7Xk9")
    assert url == (
        "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wxoa0000000000001"
        "&redirect_uri=https%3A%2F%2Fh5.example.com%2Foauth%2Fcallback%3Fnext%3D%2Forders%26x%3D1"
        "&response_type=code&scope=snsapi_userinfo&state=s7Xk9#wechat_redirect"
    )
    assert client.authorize_url("https://h5.example.com/cb", "snsapi_base", "a").split("&scope=")[1] == (
        "snsapi_base&state=a#wechat_redirect"
    )


def test_authorize_url_on_the_sandbox(fake, store):
    config = OfficialAccountConfig(appid=APPID, secret=SECRET, open_base_url="http://localhost:8000/sandbox/wechat")
    client = OfficialAccountClient(config, make_session(HttpConfig(), {"http://": fake}), HttpConfig(), store)
    assert client.authorize_url("http://localhost:8000/cb", "snsapi_base", "abc").startswith(
        "http://localhost:8000/sandbox/wechat/connect/oauth2/authorize?appid=wxoa0000000000001&redirect_uri="
    )


@pytest.mark.parametrize(
    ("redirect_uri", "scope", "state", "match"),
    [
        ("https://h5.example.com/cb", "snsapi_login", "abc", "scope"),
        ("https://h5.example.com/cb", "snsapi_base", "", "state"),
        ("https://h5.example.com/cb", "snsapi_base", "a&b=c", "state"),
        ("https://h5.example.com/cb", "snsapi_base", "x" * 129, "state"),
        ("/relative/cb", "snsapi_base", "abc", "redirect_uri"),
        ("javascript:alert(1)", "snsapi_base", "abc", "redirect_uri"),
    ],
)
def test_authorize_url_refuses_bad_input(client, redirect_uri, scope, state, match):
    with pytest.raises(ValueError, match=match):
        client.authorize_url(redirect_uri, scope, state)


OAUTH_ANSWER = {
    "access_token": "user-oauth-token",
    "expires_in": 7200,
    "refresh_token": "user-refresh-token",
    "openid": "oOA-openid-1",
    "scope": "snsapi_userinfo",
    "is_snapshotuser": 0,
    "unionid": "union-1",
}


def test_oauth_access_token(client, fake):
    fake.routes["/sns/oauth2/access_token"] = OAUTH_ANSWER
    token = client.oauth_access_token("CODE123")
    assert token == OAuthToken(
        access_token="user-oauth-token",
        expires_in=7200,
        refresh_token="user-refresh-token",
        openid="oOA-openid-1",
        scope="snsapi_userinfo",
        unionid="union-1",
        is_snapshotuser=False,
    )
    (request,) = fake.requests
    assert request.method == "GET"
    assert request.url.startswith("https://api.weixin.qq.com/sns/oauth2/access_token?")
    assert query(request) == {
        "appid": APPID,
        "secret": SECRET,
        "code": "CODE123",
        "grant_type": "authorization_code",
    }
    assert fake.token_count == 0  # web OAuth never needs the app's access token


def test_oauth_token_repr_hides_tokens(client, fake):
    fake.routes["/sns/oauth2/access_token"] = OAUTH_ANSWER
    text = repr(client.oauth_access_token("CODE123"))
    assert "user-oauth-token" not in text and "user-refresh-token" not in text
    assert "oOA-openid-1" in text
    assert SECRET not in repr(client.config) and SECRET not in repr(client)


def test_oauth_snapshot_user_and_no_unionid(client, fake):
    fake.routes["/sns/oauth2/access_token"] = {**OAUTH_ANSWER, "is_snapshotuser": 1, "unionid": ""}
    token = client.oauth_access_token("CODE123")
    assert token.is_snapshotuser is True
    assert token.unionid is None


def test_oauth_code_used_twice_is_a_provider_error(client, fake):
    fake.routes["/sns/oauth2/access_token"] = {"errcode": 40163, "errmsg": "code been used"}
    with pytest.raises(ProviderError) as info:
        client.oauth_access_token("CODE123")
    assert info.value.errcode == 40163


def test_oauth_answer_without_openid_is_unavailable(client, fake):
    fake.routes["/sns/oauth2/access_token"] = {k: v for k, v in OAUTH_ANSWER.items() if k != "openid"}
    with pytest.raises(ProviderUnavailable, match="openid"):
        client.oauth_access_token("CODE123")


def test_oauth_refresh_token(client, fake):
    answer = {k: v for k, v in OAUTH_ANSWER.items() if k not in ("unionid", "is_snapshotuser")}
    fake.routes["/sns/oauth2/refresh_token"] = {**answer, "access_token": "user-oauth-token-2"}
    token = client.oauth_refresh_token("user-refresh-token")
    assert token.access_token == "user-oauth-token-2" and token.unionid is None and not token.is_snapshotuser
    (request,) = fake.requests
    assert query(request) == {"appid": APPID, "grant_type": "refresh_token", "refresh_token": "user-refresh-token"}


def test_oauth_userinfo(client, fake):
    fake.routes["/sns/userinfo"] = {
        "openid": "oOA-openid-1",
        "nickname": "微信用户",
        "sex": 0,
        "province": "",
        "city": "",
        "country": "",
        "headimgurl": "https://thirdwx.qlogo.cn/mmopen/g3MonUZtNHkdmzicIlibx6iaFqAc56vxLSUfpb6n5WKSYVY0ChQKkiaJSgQ1dZuTOgvLLrhJbERQQ4eMsv84eavHiaiceqxibJxCfHe/46",
        "privilege": ["PRIVILEGE1", "PRIVILEGE2"],
        "unionid": "union-1",
    }
    info = client.oauth_userinfo("user-oauth-token", "oOA-openid-1")
    assert info == OAuthUserInfo(
        openid="oOA-openid-1",
        nickname="微信用户",
        headimgurl=fake.routes["/sns/userinfo"]["headimgurl"],
        unionid="union-1",
        privilege=("PRIVILEGE1", "PRIVILEGE2"),
    )
    (request,) = fake.requests
    assert query(request) == {"access_token": "user-oauth-token", "openid": "oOA-openid-1", "lang": "zh_CN"}


def test_oauth_userinfo_rejected_token_leaves_the_app_token_alone(client, fake, store):
    app_token = client.access_token()
    fake.routes["/sns/userinfo"] = {"errcode": 40001, "errmsg": "invalid credential"}
    with pytest.raises(ProviderError):
        client.oauth_userinfo("user-oauth-token", "oOA-openid-1")
    assert store.get(f"access_token:{APPID}") == app_token
    assert len(fake.calls("/sns/userinfo")) == 1


# --- jsapi_ticket ----------------------------------------------------------------------------------


def ticket_route(fake: FakeWechat, rejected: set[str] | None = None) -> list[str]:
    """getticket: a new ticket per call, 40001 for an access token in `rejected`; returns the tokens used."""
    used: list[str] = []

    def getticket(request: requests.PreparedRequest) -> dict[str, Any]:
        params = query(request)
        assert params["type"] == "jsapi"
        used.append(params["access_token"])
        if params["access_token"] in (rejected or set()):
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        return {"errcode": 0, "errmsg": "ok", "ticket": f"ticket-{len(used)}", "expires_in": 7200}

    fake.routes["/cgi-bin/ticket/getticket"] = getticket
    return used


def test_jsapi_ticket_fetched_once_and_cached_in_the_store(client, fake, store):
    used = ticket_route(fake)
    assert client.jsapi_ticket() == "ticket-1"
    assert client.jsapi_ticket() == "ticket-1"
    assert used == ["app-token-1"]
    assert store.get(f"jsapi_ticket:{APPID}") == "ticket-1"
    assert store.get(f"access_token:{APPID}") == "app-token-1"  # the key any WechatClient of this appid uses


def test_jsapi_ticket_many_threads_one_fetch(client, fake, run_together):
    used = ticket_route(fake)
    original = fake.routes["/cgi-bin/ticket/getticket"]

    def slow(request):
        time.sleep(0.05)  # every waiter piles up behind the one fetch
        return original(request)

    fake.routes["/cgi-bin/ticket/getticket"] = slow
    results = run_together(client.jsapi_ticket, 12)
    assert results == ["ticket-1"] * 12
    assert len(used) == 1 and fake.token_count == 1


def test_jsapi_ticket_refresh_on_40001_expires_only_that_access_token(client, fake, store):
    store.set(f"access_token:{APPID}", "stale-token", 7000)  # cached, but WeChat no longer takes it
    used = ticket_route(fake, rejected={"stale-token"})
    assert client.jsapi_ticket() == "ticket-2"
    assert used == ["stale-token", "app-token-1"]  # one retry with a freshly fetched token
    assert fake.token_count == 1
    assert store.get(f"access_token:{APPID}") == "app-token-1"
    assert store.get(f"jsapi_ticket:{APPID}") == "ticket-2"
    assert client.jsapi_ticket() == "ticket-2" and len(used) == 2


def test_jsapi_ticket_late_40001_does_not_drop_a_fresh_token(client, fake, store):
    ticket_route(fake)
    client.jsapi_ticket()
    assert client.tokens.invalidate("stale-token") is False
    assert store.get(f"access_token:{APPID}") == "app-token-1"


def test_jsapi_ticket_gives_up_after_one_retry(client, fake):
    fake.routes["/cgi-bin/ticket/getticket"] = {"errcode": 42001, "errmsg": "access_token expired"}
    with pytest.raises(ProviderError) as info:
        client.jsapi_ticket()
    assert info.value.errcode == 42001
    assert len(fake.calls("/cgi-bin/ticket/getticket")) == 2


def test_invalidate_jsapi_ticket_expires_only_the_cached_one(client, fake, store):
    used = ticket_route(fake)
    assert client.jsapi_ticket() == "ticket-1"
    assert client.invalidate_jsapi_ticket("ticket-0") is False
    assert client.jsapi_ticket() == "ticket-1"
    assert client.invalidate_jsapi_ticket("ticket-1") is True
    assert store.get(f"jsapi_ticket:{APPID}") is None
    assert client.jsapi_ticket() == "ticket-2"
    assert len(used) == 2


def test_jsapi_ticket_ttl_below_expires_in(fake):
    clock = [1000.0]
    store = MemoryTokenStore(clock=lambda: clock[0])
    client = OfficialAccountClient(
        OfficialAccountConfig(appid=APPID, secret=SECRET),
        make_session(HttpConfig(), {"https://": fake}),
        HttpConfig(),
        store,
    )
    ticket_route(fake)
    assert client.jsapi_ticket() == "ticket-1"
    clock[0] += 7200 - 300 - 1
    assert client.jsapi_ticket() == "ticket-1"
    clock[0] += 2  # past expires_in minus the margin: fetched again (the access token expired too)
    assert client.jsapi_ticket() == "ticket-2"


def test_stuck_ticket_refresh_is_unavailable(client, fake, store):
    ticket_route(fake)
    client.tickets = AccessTokenManager(
        store, client.tickets.key, client.fetch_jsapi_ticket, wait_seconds=0.2, poll_seconds=0.01
    )
    owner = store.acquire(client.tickets.key + ":lock", 60_000)
    assert owner is not None
    try:
        with pytest.raises(ProviderUnavailable, match="jsapi_ticket refresh is stuck"):
            client.jsapi_ticket()
    finally:
        store.release(client.tickets.key + ":lock", owner)
    assert fake.calls("/cgi-bin/ticket/getticket") == []


def test_getticket_answer_without_ticket_is_unavailable(client, fake):
    fake.routes["/cgi-bin/ticket/getticket"] = {"errcode": 0, "errmsg": "ok"}
    with pytest.raises(ProviderUnavailable, match="ticket"):
        client.jsapi_ticket()


# --- menu ------------------------------------------------------------------------------------------

# The documented create example (click, view and miniprogram buttons).
DOC_MENU: dict[str, Any] = {
    "button": [
        {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
        {
            "name": "菜单",
            "sub_button": [
                {"type": "view", "name": "搜索", "url": "http://www.soso.com/"},
                {
                    "type": "miniprogram",
                    "name": "wxa",
                    "url": "http://mp.weixin.qq.com",
                    "appid": "wx286b93c14bbf93aa",
                    "pagepath": "pages/lunar/index",
                },
                {"type": "click", "name": "赞一下我们", "key": "V1001_GOOD"},
            ],
        },
    ]
}


def test_create_menu_sends_plain_utf8_json(client, fake):
    fake.routes["/cgi-bin/menu/create"] = {"errcode": 0, "errmsg": "ok"}
    client.create_menu(DOC_MENU)
    (request,) = fake.calls("/cgi-bin/menu/create")
    assert request.method == "POST"
    assert query(request) == {"access_token": "app-token-1"}
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "今日歌曲".encode() in request.body and b"\\u" not in request.body
    assert json.loads(request.body) == DOC_MENU


def test_create_menu_refuses_an_invalid_menu_before_calling(client, fake):
    with pytest.raises(MenuError) as info:
        client.create_menu({"button": [{"type": "click", "name": "x" * 17}]})
    assert info.value.problems == ["button[0].name: 17 bytes, at most 16", "button[0].key: required for type click"]
    assert fake.requests == []


def test_create_menu_provider_error(client, fake):
    fake.routes["/cgi-bin/menu/create"] = {"errcode": 40018, "errmsg": "invalid button name size"}
    with pytest.raises(ProviderError) as info:
        client.create_menu(DOC_MENU)
    assert info.value.errcode == 40018


def test_get_menu(client, fake):
    answer = {"menu": {"button": [{"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC", "sub_button": []}]}}
    fake.routes["/cgi-bin/menu/get"] = answer
    assert client.get_menu() == answer
    assert validate_menu(answer["menu"]) == []  # what menu/get answers can be pushed back
    (request,) = fake.calls("/cgi-bin/menu/get")
    assert request.method == "GET" and query(request) == {"access_token": "app-token-1"}


def test_get_menu_when_there_is_none(client, fake):
    fake.routes["/cgi-bin/menu/get"] = {"errcode": 46003, "errmsg": "menu no exist"}
    assert client.get_menu() is None


def test_delete_menu(client, fake):
    fake.routes["/cgi-bin/menu/delete"] = {"errcode": 0, "errmsg": "ok"}
    client.delete_menu()
    (request,) = fake.calls("/cgi-bin/menu/delete")
    assert request.method == "GET" and query(request) == {"access_token": "app-token-1"}


def test_validate_menu_documented_example_is_valid():
    assert validate_menu(DOC_MENU) == []


def test_validate_menu_every_known_type():
    subs = [
        {"type": "scancode_push", "name": "a", "key": "k"},
        {"type": "scancode_waitmsg", "name": "b", "key": "k"},
        {"type": "pic_sysphoto", "name": "c", "key": "k"},
        {"type": "pic_photo_or_album", "name": "d", "key": "k"},
        {"type": "pic_weixin", "name": "e", "key": "k"},
    ]
    more = [
        {"type": "location_select", "name": "f", "key": "k"},
        {"type": "media_id", "name": "g", "media_id": "MEDIA"},
        {"type": "view_limited", "name": "h", "media_id": "MEDIA"},
        {"type": "article_id", "name": "i", "article_id": "ARTICLE"},
        {"type": "article_view_limited", "name": "j", "article_id": "ARTICLE"},
    ]
    menu = {"button": [{"name": "一", "sub_button": subs}, {"name": "二", "sub_button": more}]}
    assert validate_menu(menu) == []


@pytest.mark.parametrize(
    ("menu", "problems"),
    [
        ({}, ["button: must be a list of 1 to 3 buttons"]),
        ({"button": []}, ["button: must be a list of 1 to 3 buttons"]),
        ({"button": [{"type": "click", "name": "a", "key": "k"}] * 4}, ["button: must be a list of 1 to 3 buttons"]),
        (
            {"button": [{"name": "menu", "sub_button": [{"type": "click", "name": "a", "key": "k"}] * 6}]},
            ["button[0].sub_button: must be a list of 1 to 5 buttons"],
        ),
        (
            {"button": [{"type": "click", "name": "一二三四五六", "key": "k"}]},  # 18 bytes
            ["button[0].name: 18 bytes, at most 16"],
        ),
        (
            {"button": [{"name": "m", "sub_button": [{"type": "click", "name": "字" * 21, "key": "k"}]}]},
            ["button[0].sub_button[0].name: 63 bytes, at most 60"],
        ),
        (
            {"button": [{"name": "m", "sub_button": [{"type": "click", "name": "字" * 20, "key": "k"}]}]},
            [],
        ),
        ({"button": [{"type": "click", "key": "k"}]}, ["button[0].name: required"]),
        ({"button": [{"type": "click", "name": "a"}]}, ["button[0].key: required for type click"]),
        ({"button": [{"type": "click", "name": "a", "key": "k" * 129}]}, ["button[0].key: 129 bytes, at most 128"]),
        ({"button": [{"type": "view", "name": "a"}]}, ["button[0].url: required for type view"]),
        (
            {"button": [{"type": "view", "name": "a", "url": "https://e.com/" + "x" * 1011}]},
            ["button[0].url: 1025 bytes, at most 1024"],
        ),
        ({"button": [{"type": "view", "name": "a", "url": "javascript:1"}]}, ["button[0].url: must be an http(s) URL"]),
        (
            {"button": [{"type": "miniprogram", "name": "a", "url": "https://e.com"}]},
            ["button[0].appid: required for type miniprogram", "button[0].pagepath: required for type miniprogram"],
        ),
        ({"button": [{"type": "media_id", "name": "a"}]}, ["button[0].media_id: required for type media_id"]),
        ({"button": [{"type": "article_id", "name": "a"}]}, ["button[0].article_id: required for type article_id"]),
        (
            {"button": [{"type": "tap", "name": "a"}]},
            [
                "button[0].type: 'tap' is not one of click, view, miniprogram, scancode_push, scancode_waitmsg, "
                "pic_sysphoto, pic_photo_or_album, pic_weixin, location_select, media_id, view_limited, "
                "article_id, article_view_limited"
            ],
        ),
        (
            {
                "button": [
                    {
                        "type": "click",
                        "name": "m",
                        "key": "k",
                        "sub_button": [{"type": "click", "name": "a", "key": "k"}],
                    }
                ]
            },
            ["button[0].type: a button with sub_button has no type"],
        ),
        (
            {
                "button": [
                    {
                        "name": "m",
                        "sub_button": [{"name": "a", "sub_button": [{"type": "click", "name": "b", "key": "k"}]}],
                    }
                ]
            },
            [
                "button[0].sub_button[0].sub_button: menus have two levels only",
                "button[0].sub_button[0].type: None is not one of click, view, miniprogram, scancode_push, "
                "scancode_waitmsg, pic_sysphoto, pic_photo_or_album, pic_weixin, location_select, media_id, "
                "view_limited, article_id, article_view_limited",
            ],
        ),
        ({"button": ["click"]}, ["button[0]: must be an object"]),
    ],
)
def test_validate_menu_limits(menu, problems):
    assert validate_menu(menu) == problems


# --- followers and QR codes --------------------------------------------------------------------------


def test_user_info(client, fake):
    fake.routes["/cgi-bin/user/info"] = {
        "subscribe": 1,
        "openid": "oOA-openid-1",
        "language": "zh_CN",
        "subscribe_time": 1382694957,
        "unionid": "union-1",
        "remark": "",
        "groupid": 0,
        "tagid_list": [128, 2],
        "subscribe_scene": "ADD_SCENE_QR_CODE",
        "qr_scene": 0,
        "qr_scene_str": "bind:abc",
    }
    info = client.user_info("oOA-openid-1")
    assert info == FollowerInfo(
        openid="oOA-openid-1",
        subscribed=True,
        subscribe_time=1382694957,
        unionid="union-1",
        language="zh_CN",
        subscribe_scene="ADD_SCENE_QR_CODE",
        qr_scene_str="bind:abc",
        tagid_list=(128, 2),
    )
    (request,) = fake.calls("/cgi-bin/user/info")
    assert query(request) == {"access_token": "app-token-1", "openid": "oOA-openid-1", "lang": "zh_CN"}


def test_user_info_not_following(client, fake):
    fake.routes["/cgi-bin/user/info"] = {"subscribe": 0, "openid": "oOA-openid-2"}
    info = client.user_info("oOA-openid-2")
    assert info.subscribed is False and info.subscribe_time is None and info.unionid is None


def test_create_temporary_qrcode(client, fake):
    fake.routes["/cgi-bin/qrcode/create"] = {
        "ticket": "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw==",
        "expire_seconds": 600,
        "url": "http://weixin.qq.com/q/kZgfwMTm72WWPkovabbI",
    }
    qr = client.create_temporary_qrcode("bind:abc", 600)
    assert qr == QrCodeTicket(
        ticket=fake.routes["/cgi-bin/qrcode/create"]["ticket"],
        url="http://weixin.qq.com/q/kZgfwMTm72WWPkovabbI",
        expire_seconds=600,
        image_url=(
            "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="
            "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw%3D%3D"
        ),
    )
    (request,) = fake.calls("/cgi-bin/qrcode/create")
    assert request.method == "POST" and query(request) == {"access_token": "app-token-1"}
    assert json.loads(request.body) == {
        "expire_seconds": 600,
        "action_name": "QR_STR_SCENE",
        "action_info": {"scene": {"scene_str": "bind:abc"}},
    }


@pytest.mark.parametrize(
    ("scene_str", "expire_seconds", "match"),
    [("", 60, "scene_str"), ("x" * 65, 60, "scene_str"), ("ok", 0, "expire_seconds"), ("ok", 2_592_001, "expire")],
)
def test_create_temporary_qrcode_refuses_bad_input(client, fake, scene_str, expire_seconds, match):
    with pytest.raises(ValueError, match=match):
        client.create_temporary_qrcode(scene_str, expire_seconds)
    assert fake.requests == []


def test_showqrcode_url_on_the_sandbox(fake, store):
    config = OfficialAccountConfig(appid=APPID, secret=SECRET, mp_base_url="http://localhost:8000/sandbox/wechat")
    client = OfficialAccountClient(config, make_session(HttpConfig(), {"http://": fake}), HttpConfig(), store)
    assert (
        client.showqrcode_url("a+b/c=") == "http://localhost:8000/sandbox/wechat/cgi-bin/showqrcode?ticket=a%2Bb%2Fc%3D"
    )
