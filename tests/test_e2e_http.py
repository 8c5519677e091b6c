"""The whole mini-program flow over real HTTP against a running server, as a front end drives it."""

from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from accounts.models import RefreshToken, hash_refresh_token

LOGIN = "mutation($c: String!) { wechatLogin(code: $c) { token refreshToken created user { id openid } } }"
ME = "{ me { id openid nickname phoneNumber } }"
DECRYPT = """mutation($e: String!, $iv: String!, $r: String, $s: String) {
  decryptUserInfo(encryptedData: $e, iv: $iv, rawData: $r, signature: $s) { nickname city } }"""
PHONE = "mutation($c: String!) { bindPhoneNumber(code: $c) { phoneNumber } }"
REFRESH = "mutation($t: String!) { refreshToken(refreshToken: $t) { token refreshToken } }"
REVOKE = "mutation($t: String!) { revokeToken(refreshToken: $t) { revoked } }"


@pytest.fixture
def api(live_server):
    session = requests.Session()

    def call(query, variables=None, token=None):
        headers = {"Authorization": f"JWT {token}"} if token else {}
        response = session.post(
            f"{live_server.url}/graphql/",
            json={"query": query, "variables": variables or {}},
            headers=headers,
            timeout=10,
        )
        assert response.status_code in (200, 400), response.text
        return response.json()

    call.session = session
    call.url = live_server.url
    return call


def ok(result, field):
    assert "errors" not in result, result
    return result["data"][field]


@pytest.mark.django_db(transaction=True)
def test_mini_program_flow_over_http(api):
    login = ok(api(LOGIN, {"c": "alice"}), "wechatLogin")
    assert login["created"] is True
    token, refresh = login["token"], login["refreshToken"]
    openid = login["user"]["openid"]

    me = ok(api(ME, token=token), "me")
    assert me["openid"] == openid and me["nickname"] == ""

    # What wx.getUserProfile hands the mini-program, made by the sandbox with alice's session_key.
    made = api.session.post(
        f"{api.url}/sandbox/wechat/user-data",
        json={"openid": openid, "data": {"nickName": "Alice", "city": "Shenzhen", "gender": 2}},
        timeout=10,
    )
    assert made.status_code == 200
    d = made.json()
    user = ok(
        api(DECRYPT, {"e": d["encryptedData"], "iv": d["iv"], "r": d["rawData"], "s": d["signature"]}, token=token),
        "decryptUserInfo",
    )
    assert user == {"nickname": "Alice", "city": "Shenzhen"}

    assert ok(api(PHONE, {"c": "phone:13800138000"}, token=token), "bindPhoneNumber") == {
        "phoneNumber": "+8613800138000"
    }
    assert ok(api(ME, token=token), "me")["phoneNumber"] == "+8613800138000"

    # Refresh rotates; the new access token works.
    rotated = ok(api(REFRESH, {"t": refresh}), "refreshToken")
    assert rotated["refreshToken"] != refresh
    assert ok(api(ME, token=rotated["token"]), "me")["openid"] == openid

    # Presented again at once (a parallel request after a 401), the old token gets a fresh pair;
    # after the reuse interval it is refused and kills the rotated one too.
    assert ok(api(REFRESH, {"t": refresh}), "refreshToken")["refreshToken"] not in (refresh, rotated["refreshToken"])
    RefreshToken.objects.filter(token=hash_refresh_token(refresh)).update(
        revoked=timezone.now() - timedelta(seconds=settings.JWT_REFRESH_REUSE_SECONDS + 1)
    )
    reused = api(REFRESH, {"t": refresh})
    assert reused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert api(REFRESH, {"t": rotated["refreshToken"]})["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    # Log in again, revoke, and the revoked token is dead at once.
    again = ok(api(LOGIN, {"c": "alice:2"}), "wechatLogin")
    assert again["created"] is False
    assert ok(api(REVOKE, {"t": again["refreshToken"]}), "revokeToken") == {"revoked": True}
    assert api(REFRESH, {"t": again["refreshToken"]})["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.django_db(transaction=True)
def test_pages_and_health_over_http(api):
    assert requests.get(f"{api.url}/healthz", timeout=10).json() == {"status": "ok", "down": []}
    index = requests.get(f"{api.url}/sandbox/", timeout=10)
    assert index.status_code == 200 and "Provider sandbox" in index.text
    graphiql = requests.get(f"{api.url}/graphql/", headers={"Accept": "text/html"}, timeout=10)
    assert graphiql.status_code == 200 and "graphiql" in graphiql.text.lower()
    big = requests.post(
        f"{api.url}/graphql/", data=b"x" * (3 * 1024 * 1024), headers={"Content-Type": "application/json"}, timeout=30
    )
    assert big.status_code == 413
    assert big.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
