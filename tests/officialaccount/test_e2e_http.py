"""The official account over real HTTP against a running server in sandbox mode: the server URL verified,
a follower's phone (the sandbox's) sending a text, a subscribe through a bind QR code, a CLICK and an
unsubscribe in plain and safe mode; an H5 user logging in through the consent page, configuring the
JS-SDK and paying a JSAPI order with the account's appid."""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings as django_settings

from accounts.models import WechatIdentity
from config import providers
from officialaccount.models import Follower, KeywordReply
from payments.models import Order
from tests.factories import ProductFactory
from tests.helpers import CREATE_ORDER, LOGIN, graphql_over_http

AUTHORIZE = "mutation A($r: String!) { officialAccountAuthorizeUrl(redirectUri: $r, scope: USERINFO) { url } }"
OA_LOGIN = "mutation L($c: String!, $s: String!) { officialAccountLogin(code: $c, state: $s) { token created } }"
BIND_QR = "mutation { officialAccountBindQrCode { url imageUrl svg } }"
JSSDK = (
    'query J($u: String!) { jssdkConfig(url: $u, jsApiList: ["chooseWXPay"]) { appId timestamp nonceStr signature } }'
)
ORDER = "query($n: String!) { order(outTradeNo: $n) { status transactionId } }"


@pytest.fixture
def server(live_server: Any, settings: Any) -> str:
    settings.PUBLIC_BASE_URL = live_server.url  # the sandbox's phone posts to our server URL here
    settings.WECHAT_OA_REDIRECT_HOSTS = settings.WECHAT_OA_JSSDK_HOSTS = [urlsplit(live_server.url).netloc]
    providers.reset()
    ProductFactory(sku="coffee", price=1800)
    return str(live_server.url)


def phone(url: str, **fields: str) -> dict[str, Any]:
    """The sandbox phone's JSON API: what was sent to our server URL, and our passive reply as read."""
    answer = requests.post(
        f"{url}/sandbox/wechat/official-account/phone", json=fields, headers={"Accept": "application/json"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    record: dict[str, Any] = answer.json()
    assert record["status"] == 200, record
    return record


def reply_text(record: dict[str, Any], mode: str) -> str:
    if mode == "safe":
        assert record["verified"] is True, record  # its msg_signature checked before decrypting
    return str(record["reply_fields"]["Content"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_the_server_url_over_http(server, settings, mode):
    if mode == "plain":  # an account without an EncodingAESKey (the sandbox's phone reads it from settings)
        settings.WECHAT_OA_AES_KEY = ""
        providers.reset()
    # WeChat's check when the URL is saved in the console.
    timestamp, nonce = str(int(time.time())), "n0nce"
    signed = hashlib.sha1("".join(sorted([django_settings.WECHAT_OA_TOKEN, timestamp, nonce])).encode()).hexdigest()
    query = {"signature": signed, "timestamp": timestamp, "nonce": nonce, "echostr": "e-123"}
    checked = requests.get(f"{server}/wechat/official-account/", params=query, timeout=10)
    assert (checked.status_code, checked.text) == (200, "e-123")
    forged = requests.get(f"{server}/wechat/official-account/", params={**query, "signature": "0" * 40}, timeout=10)
    assert forged.status_code == 403

    # A text: the default reply; WeChat's retry of the same message gets the same reply.
    text = phone(server, user="quinn", mode=mode, kind="text", content="hello")
    first = reply_text(text, mode)
    assert first
    assert ("<Encrypt>" in text["request"]["body"]) is (mode == "safe")
    if mode == "safe":
        # A plaintext message to the safe-mode account, whose signature covers none of it, is not WeChat's.
        plain = requests.post(
            f"{server}/sandbox/wechat/official-account/phone",
            json={"user": "quinn", "mode": "plain", "kind": "text", "content": "hello"},
            headers={"Accept": "application/json"},
            timeout=30,
        ).json()
        assert (plain["status"], plain["body"]) == (403, "this account takes safe-mode messages only"), plain
    again = requests.post(server + text["again"], headers={"Accept": "application/json"}, timeout=30).json()
    assert again["status"] == 200 and reply_text(again, mode) == first

    # A mini-program user binds the account: their bind QR code, scanned on their phone and followed.
    token = graphql_over_http(server, LOGIN, {"code": "pia"})["wechatLogin"]["token"]
    qr = graphql_over_http(server, BIND_QR, token=token)["officialAccountBindQrCode"]
    assert qr["svg"].startswith("<svg") and qr["imageUrl"]
    scanned = requests.post(
        qr["imageUrl"], json={"user": "pia", "mode": mode}, headers={"Accept": "application/json"}, timeout=30
    ).json()
    assert scanned["status"] == 200 and scanned["fields"]["EventKey"].startswith("qrscene_"), scanned
    assert "bound" in reply_text(scanned, mode)
    (identity,) = WechatIdentity.objects.filter(appid=django_settings.WECHAT_OA_APPID, kind="official_account")
    assert identity.openid == scanned["openid"] and identity.user.wechat_identities.count() == 2
    assert Follower.objects.get(openid=scanned["openid"]).subscribed is True

    # A menu CLICK answered from its keyword reply; then the follower leaves.
    # (Made here: a transactional test's database starts empty, without the migration's replies.)
    KeywordReply.objects.create(keyword="E2E_HELP", match="click", content="Here to help ]]> always.")
    clicked = phone(server, user="pia", mode=mode, kind="click", key="E2E_HELP")
    assert reply_text(clicked, mode) == "Here to help ]]> always."
    left = phone(server, user="pia", mode=mode, kind="unsubscribe")
    assert left["reply"] in ("", "success")
    assert Follower.objects.get(openid=scanned["openid"]).subscribed is False


@pytest.mark.django_db(transaction=True)
def test_an_h5_user_logs_in_configures_the_js_sdk_and_pays_with_the_accounts_appid(server):
    browser = requests.Session()
    callback = f"{server}/h5/callback"
    url = graphql_over_http(server, AUTHORIZE, {"r": callback})["officialAccountAuthorizeUrl"]["url"]
    consent = browser.get(url.split("#")[0], timeout=10)
    assert consent.status_code == 200 and "Allow" in consent.text
    fields = {name: values[0] for name, values in parse_qs(urlsplit(url.split("#")[0]).query).items()}
    allowed = browser.post(
        consent.url.split("?")[0], data={**fields, "decision": "allow", "user": "rosa"}, allow_redirects=False
    )
    assert allowed.status_code == 302 and allowed.headers["Location"].startswith(callback)
    back = parse_qs(urlsplit(allowed.headers["Location"]).query)
    login = graphql_over_http(server, OA_LOGIN, {"c": back["code"][0], "s": back["state"][0]})
    token = login["officialAccountLogin"]["token"]

    page = f"{server}/h5/pay?item=coffee"
    config = graphql_over_http(server, JSSDK, {"u": page + "#top"}, token)["jssdkConfig"]
    ticket = providers.official_account().jsapi_ticket()
    signed = f"jsapi_ticket={ticket}&noncestr={config['nonceStr']}&timestamp={config['timestamp']}&url={page}"
    assert config["appId"] == django_settings.WECHAT_OA_APPID
    assert config["signature"] == hashlib.sha1(signed.encode()).hexdigest()

    variables = {"input": {"sku": "coffee", "quantity": 1, "tradeType": "JSAPI", "app": "OFFICIAL_ACCOUNT"}}
    created = graphql_over_http(server, CREATE_ORDER, variables, token)["createWechatPayOrder"]
    number = created["order"]["outTradeNo"]
    assert created["payParams"]["appId"] == django_settings.WECHAT_OA_APPID
    assert Order.objects.get(out_trade_no=number).appid == django_settings.WECHAT_OA_APPID
    assert browser.post(f"{server}/sandbox/pay/{number}", timeout=30).status_code == 202
    deadline = time.monotonic() + 30
    while graphql_over_http(server, ORDER, {"n": number}, token)["order"]["status"] != "PAID":
        assert time.monotonic() < deadline, "the notify never applied"
        time.sleep(0.1)
    assert graphql_over_http(server, ORDER, {"n": number}, token)["order"]["transactionId"]
