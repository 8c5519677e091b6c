"""The official account's web OAuth through /graphql/, against the sandbox's consent page: the authorize
URL and its state, login (one user with the mini-program's by unionid), binding by OAuth and by QR code,
jssdkConfig; every refusal changing nothing."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.test import Client
from graphql_jwt.shortcuts import get_token

from accounts.models import RefreshToken, User, WechatIdentity
from config import providers
from providers.sandbox.wechat import ServerUrl
from providers.wechat.messages import jssdk_signature
from tests.helpers import GraphQLClient, error_code

AUTHORIZE = (
    "mutation A($r: String!, $s: OAuthScope!) { officialAccountAuthorizeUrl(redirectUri: $r, scope: $s) { url } }"
)
LOGIN = (
    "mutation L($c: String!, $s: String!) { officialAccountLogin(code: $c, state: $s) {"
    " token refreshToken created user { id nickname avatarUrl unionid } } }"
)
BIND = "mutation B($c: String!, $s: String!) { bindOfficialAccount(code: $c, state: $s) { id } }"
BIND_QR = "mutation { officialAccountBindQrCode { url expiresAt svg } }"
JSSDK = (
    "query J($u: String!, $l: [String!]!) { jssdkConfig(url: $u, jsApiList: $l) {"
    " appId timestamp nonceStr signature jsApiList } }"
)
REDIRECT = "http://localhost:8000/oa/callback"


@pytest.fixture
def oa(gql: GraphQLClient, settings: Any) -> GraphQLClient:
    settings.WECHAT_OA_REDIRECT_HOSTS = settings.WECHAT_OA_JSSDK_HOSTS = ["localhost:8000"]
    settings.RATELIMIT_LOGIN = "0"
    return gql


def authorize(gql: GraphQLClient, scope: str = "BASE") -> str:
    result = gql(AUTHORIZE, {"r": REDIRECT, "s": scope})
    assert "errors" not in result, result
    return str(result["data"]["officialAccountAuthorizeUrl"]["url"])


def consent(url: str, user: str, **form: str) -> dict[str, list[str]]:
    """What the browser brings back to redirectUri after the sandbox's consent page (Allow as `user`)."""
    consent_page = urlsplit(url.split("#", 1)[0])
    assert url.endswith("#wechat_redirect") and consent_page.path == "/sandbox/wechat/connect/oauth2/authorize"
    # The consent form posts the request's parameters back with the choice, as the page's hidden fields do.
    fields = {name: values[0] for name, values in parse_qs(consent_page.query).items()}
    answer = Client().post(consent_page.path, {**fields, "decision": "allow", "user": user, **form})
    assert answer.status_code == 302, answer.content[:300]
    back = urlsplit(answer["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
    return parse_qs(back.query)


def logged_in(gql: GraphQLClient, user: str, scope: str = "BASE", **form: str) -> dict[str, Any]:
    back = consent(authorize(gql, scope), user, **form)
    result = gql(LOGIN, {"c": back["code"][0], "s": back["state"][0]})
    assert "errors" not in result, result
    return result["data"]["officialAccountLogin"]  # type: ignore[no-any-return]


def counts() -> tuple[int, int, int]:
    return User.objects.count(), WechatIdentity.objects.count(), RefreshToken.objects.count()


def test_the_authorize_url_is_the_consent_page_with_a_random_single_use_state(oa):
    url = authorize(oa, "USERINFO")
    query = parse_qs(urlsplit(url.split("#")[0]).query)
    assert query["appid"] == [django_settings.WECHAT_OA_APPID] and query["redirect_uri"] == [REDIRECT]
    assert query["scope"] == ["snsapi_userinfo"] and query["response_type"] == ["code"]
    assert len(query["state"][0]) >= 24 and query["state"][0] != parse_qs(urlsplit(authorize(oa)).query).get("state")


@pytest.mark.parametrize(
    "redirect", ["https://evil.example/cb", "http://localhost:8000.evil.example/cb", "//localhost:8000/cb", "/cb"]
)
def test_a_redirect_uri_off_the_allowed_hosts_is_refused(oa, redirect):
    assert error_code(oa(AUTHORIZE, {"r": redirect, "s": "BASE"})) == "BAD_USER_INPUT"


def test_an_oauth_login_is_the_same_user_as_on_the_mini_program(oa):
    mini = oa.login("alice")  # wechatLogin: the mini-program
    # USERINFO: WeChat's token then carries the unionid (BASE's does not: see the next test).
    login = logged_in(oa, "alice", "USERINFO")
    assert login["created"] is False and login["user"]["id"] == mini["user"]["id"]
    user = User.objects.get(pk=mini["user"]["id"])
    kinds = sorted(user.wechat_identities.values_list("kind", "appid"))
    assert kinds == sorted(
        [("miniprogram", providers.miniprogram_appid()), ("official_account", django_settings.WECHAT_OA_APPID)]
    )
    assert len({identity.unionid for identity in user.wechat_identities.all()}) == 1
    # The token works.
    oa.token = login["token"]
    assert oa("{ me { id } }")["data"]["me"]["id"] == mini["user"]["id"]


@pytest.mark.django_db(transaction=True)
def test_a_base_login_of_a_follower_finds_the_unionid_in_their_user_info(oa, live_server):
    mini = oa.login("nina")
    # nina follows the account from her phone (our server URL gets the subscribe; the sandbox's
    # user/info then answers subscribe 1 with her unionid)...
    server = ServerUrl(
        url=f"{live_server.url}/wechat/official-account/",
        token=django_settings.WECHAT_OA_TOKEN,
        encoding_aes_key=django_settings.WECHAT_OA_AES_KEY,
        appid=django_settings.WECHAT_OA_APPID,
    )
    sent = providers.sandbox().providers["wechat"].send(server, "nina", "subscribe", "safe")
    assert sent["status"] == 200, sent
    assert logged_in(oa, "nina")["user"]["id"] == mini["user"]["id"]
    # ...oscar does not: a BASE login finds no unionid, and he is a user of his own.
    other = oa.login("oscar")
    assert logged_in(oa, "oscar")["user"]["id"] != other["user"]["id"]


def test_a_first_oauth_login_creates_the_user_and_userinfo_fills_the_profile(oa):
    login = logged_in(oa, "dora", "USERINFO", nickname="Dora")
    assert login["created"] is True and login["user"]["nickname"] == "Dora"
    assert login["user"]["avatarUrl"].startswith("https://")


def test_a_code_used_twice_answers_once_and_never_makes_a_second_user(oa):
    back = consent(authorize(oa), "erin")
    first = oa(LOGIN, {"c": back["code"][0], "s": back["state"][0]})
    assert first["data"]["officialAccountLogin"]["created"] is True
    before = counts()
    # WeChat calling the redirect twice: the same code and state again, or the code with a fresh state.
    assert error_code(oa(LOGIN, {"c": back["code"][0], "s": back["state"][0]})) == "BAD_USER_INPUT"
    fresh_state = parse_qs(urlsplit(authorize(oa)).query)["state"][0]
    again = oa(LOGIN, {"c": back["code"][0], "s": fresh_state})
    assert error_code(again) == "BAD_USER_INPUT" and "already used" in again["errors"][0]["message"]
    assert counts() == before


@pytest.mark.parametrize("state", ["", "made-up-state", "x" * 500])
def test_an_unknown_state_is_refused_before_wechat_is_asked(oa, state):
    back = consent(authorize(oa), "fay")
    before = counts()
    result = oa(LOGIN, {"c": back["code"][0], "s": state})
    assert error_code(result) == "BAD_USER_INPUT" and "state" in result["errors"][0]["message"]
    assert counts() == before
    # The code was not spent: the real state still logs in.
    assert "errors" not in oa(LOGIN, {"c": back["code"][0], "s": back["state"][0]})


def test_a_snapshot_page_visitor_is_refused(oa):
    back = consent(authorize(oa), "gus", snapshot="1")
    before = counts()
    result = oa(LOGIN, {"c": back["code"][0], "s": back["state"][0]})
    assert error_code(result) == "FORBIDDEN" and "snapshot" in result["errors"][0]["message"]
    assert counts() == before


def test_binding_by_oauth_binds_the_consenting_follower_to_the_logged_in_user(oa):
    bob = oa.login("bob")["user"]["id"]
    back = consent(authorize(oa), "bob-on-another-phone")
    assert oa(BIND, {"c": back["code"][0], "s": back["state"][0]})["data"]["bindOfficialAccount"] == {"id": bob}
    identity = WechatIdentity.objects.get(user_id=bob, appid=django_settings.WECHAT_OA_APPID)
    assert identity.kind == "official_account"


def test_a_follower_bound_to_someone_else_is_a_conflict(oa):
    logged_in(oa, "hana")  # hana's follower identity belongs to hana
    oa.login("ivan")
    back = consent(authorize(oa), "hana")
    before = counts()
    assert error_code(oa(BIND, {"c": back["code"][0], "s": back["state"][0]})) == "CONFLICT"
    assert counts() == before


def test_a_binding_started_by_another_user_is_refused(oa):
    oa.login("jack")
    back = consent(authorize(oa), "jack-follower")  # the state is jack's
    oa.login("kate")
    before = counts()
    assert error_code(oa(BIND, {"c": back["code"][0], "s": back["state"][0]})) == "FORBIDDEN"
    assert counts() == before


def test_binding_needs_a_login(oa):
    back = consent(authorize(oa), "lola")
    assert error_code(oa(BIND, {"c": back["code"][0], "s": back["state"][0]})) == "UNAUTHENTICATED"


def test_the_bind_qr_code_is_a_scene_code_drawn_as_svg(oa, monkeypatch):
    user = oa.login("mia")["user"]["id"]
    client = providers.official_account()
    real, made = client.create_temporary_qrcode, []

    def recording(scene: str, expire_seconds: int) -> Any:
        ticket = real(scene, expire_seconds)
        made.append((scene, expire_seconds, ticket.url))
        return ticket

    monkeypatch.setattr(client, "create_temporary_qrcode", recording)
    qr = oa(BIND_QR)["data"]["officialAccountBindQrCode"]
    ((scene, seconds, url),) = made
    assert qr["url"] == url and seconds == 600
    assert qr["svg"].startswith("<svg") and qr["svg"].rstrip().endswith("</svg>")
    # The server URL finds the user by the code's scene when it is scanned (officialaccount.services).
    assert cache.get(f"oa:bind:{scene}") == int(user)


def test_jssdk_config_signs_the_page_url_without_its_fragment(oa):
    page = "http://localhost:8000/h5/pay?item=1"
    config = oa(JSSDK, {"u": page + "#/cart", "l": ["chooseWXPay", "updateAppMessageShareData"]})
    config = config["data"]["jssdkConfig"]
    ticket = providers.official_account().jsapi_ticket()
    assert config["appId"] == django_settings.WECHAT_OA_APPID
    assert config["signature"] == jssdk_signature(ticket, config["nonceStr"], config["timestamp"], page)
    assert config["jsApiList"] == ["chooseWXPay", "updateAppMessageShareData"]
    expected = hashlib.sha1(
        f"jsapi_ticket={ticket}&noncestr={config['nonceStr']}&timestamp={config['timestamp']}&url={page}".encode()
    ).hexdigest()
    assert config["signature"] == expected


@pytest.mark.parametrize("url", ["https://evil.example/h5", "javascript:alert(1)", "/h5"])
def test_jssdk_config_for_a_page_off_the_allowed_hosts_is_refused(oa, url):
    assert error_code(oa(JSSDK, {"u": url, "l": ["chooseWXPay"]})) == "BAD_USER_INPUT"


def test_the_oauth_mutations_need_the_official_account_configured(oa, settings):
    settings.WECHAT_OA_APPID = ""
    providers.reset()
    result = oa(AUTHORIZE, {"r": REDIRECT, "s": "BASE"})
    assert error_code(result) == "BAD_USER_INPUT" and "not configured" in result["errors"][0]["message"]


def test_a_staff_token_can_bind_too(oa, django_user_model):
    staff = django_user_model.objects.create_user(username="ops", password="x", is_staff=True)
    oa.token = get_token(staff)
    back = consent(authorize(oa), "ops-phone")
    assert oa(BIND, {"c": back["code"][0], "s": back["state"][0]})["data"]["bindOfficialAccount"]["id"] == str(staff.pk)
