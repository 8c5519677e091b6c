"""wechatLogin and the JWT it issues: happy path, provider failures, rate limits, bad tokens."""

import base64
import json
import time
from datetime import timedelta
from types import SimpleNamespace

import jwt
import pytest
from django.conf import settings
from django_ratelimit import core as ratelimit_core
from graphql_jwt.utils import jwt_encode

from accounts.models import RefreshToken, User, WechatIdentity
from config import providers
from tests.helpers import LOGIN, error_code

ME = "{ me { id openid unionid nickname phoneNumber } }"


def counts():
    return User.objects.count(), WechatIdentity.objects.count(), RefreshToken.objects.count()


def test_login_creates_user_once_and_me_answers(gql, wechat_sandbox):
    first = gql.login("alice")
    assert first["created"] is True
    again = gql.login("alice:2")
    assert again["created"] is False
    assert again["user"]["id"] == first["user"]["id"]
    assert again["user"]["openid"] == first["user"]["openid"]
    me = gql(ME)["data"]["me"]
    assert me["openid"] == first["user"]["openid"]
    assert me["unionid"] == first["user"]["unionid"]
    identity = WechatIdentity.objects.get(openid=me["openid"])
    # Each login stores the new session_key, server-side only.
    assert identity.session_key == wechat_sandbox.session_key(settings.WECHAT_MINIPROGRAM_APPID, me["openid"])


def test_session_key_never_reaches_the_client(gql):
    login = gql.raw(LOGIN, {"code": "alice"})
    identity = WechatIdentity.objects.get()
    assert identity.session_key
    assert identity.session_key not in login.content.decode()
    assert "session" not in login.content.decode().lower()


def test_access_token_lives_ten_minutes(gql):
    token = gql.login("alice")["token"]
    payload = jwt.decode(token, settings.GRAPHQL_JWT["JWT_SECRET_KEY"], algorithms=["HS256"])
    assert 590 <= payload["exp"] - time.time() <= 600


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("invalid-code", "BAD_USER_INPUT"),
        ("ratelimit-me", "RATE_LIMITED"),
        ("", "BAD_USER_INPUT"),
        ("x" * 200, "BAD_USER_INPUT"),
    ],
)
def test_bad_codes_change_nothing(gql, code, expected):
    before = counts()
    assert error_code(gql(LOGIN, {"code": code})) == expected
    assert counts() == before


def test_reused_code_is_refused_and_changes_nothing(gql):
    gql.login("bob")
    identity = WechatIdentity.objects.get()
    before = counts(), identity.session_key
    result = gql(LOGIN, {"code": "bob"})
    assert error_code(result) == "BAD_USER_INPUT"
    assert "already used" in result["errors"][0]["message"]
    assert (counts(), WechatIdentity.objects.get().session_key) == before


def test_provider_down_answers_unavailable_within_the_timeout(gql, settings):
    settings.PROVIDER_READ_TIMEOUT = 0.3
    providers.reset()
    providers.sandbox().set_fault("wechat", "timeout", 1)
    before = counts()
    started = time.monotonic()
    assert error_code(gql(LOGIN, {"code": "carol"})) == "PROVIDER_UNAVAILABLE"
    assert time.monotonic() - started < 0.3 + 2  # generous: the client gave up at its read timeout
    assert counts() == before
    # The fault was one-shot, and the failed login left its code unused: the same code works now.
    assert gql.login("carol")["created"] is True


@pytest.mark.parametrize("fault", ["http_500", "malformed"])
def test_provider_errors_answer_unavailable(gql, fault):
    providers.sandbox().set_fault("wechat", fault, 1)
    before = counts()
    assert error_code(gql(LOGIN, {"code": "dave"})) == "PROVIDER_UNAVAILABLE"
    assert counts() == before
    assert gql.login("dave")["created"] is True  # the code was not used up


@pytest.fixture
def one_ratelimit_window(monkeypatch):
    """django-ratelimit counts in fixed windows that it computes from `time.time()` (core._get_window):
    a window edge falling mid-test would reset the count and let the request meant to be refused
    through. Its clock, and only its, stands still here, so every request of the test shares one window
    (the counter's cache entry still expires on the real clock, after period + 5 s: 65 s for "2/m")."""
    frozen = time.time()
    monkeypatch.setattr(ratelimit_core, "time", SimpleNamespace(time=lambda: frozen))


def test_login_rate_limited_per_ip(gql, settings, one_ratelimit_window):
    settings.RATELIMIT_LOGIN = "2/m"
    gql.login("u1")
    gql.login("u2")
    before = counts()
    result = gql(LOGIN, {"code": "u3"})
    assert error_code(result) == "RATE_LIMITED"
    assert counts() == before
    # Another address is not affected.
    other = gql(LOGIN, {"code": "u4"}, REMOTE_ADDR="10.1.2.3")
    assert other["data"]["wechatLogin"]["created"] is True


def test_login_rate_limited_per_code(gql, settings, one_ratelimit_window):
    settings.RATELIMIT_LOGIN_CODE = "2/m"
    gql.login("erin")
    assert error_code(gql(LOGIN, {"code": "erin"})) == "BAD_USER_INPUT"  # used
    before = counts(), list(WechatIdentity.objects.values_list("session_key", "last_login_at"))
    assert error_code(gql(LOGIN, {"code": "erin"})) == "RATE_LIMITED"
    assert (counts(), list(WechatIdentity.objects.values_list("session_key", "last_login_at"))) == before
    # The limit is per code: the same user's next code still logs in.
    assert gql.login("erin:2")["created"] is False


def test_a_login_refused_by_the_code_limit_leaves_the_code_unused(gql, settings, one_ratelimit_window):
    settings.RATELIMIT_LOGIN_CODE = "2/m"
    # Two attempts that WeChat fails before using the code up still count towards its limit.
    providers.sandbox().set_fault("wechat", "http_500", 2)
    for _ in range(2):
        assert error_code(gql(LOGIN, {"code": "fern"})) == "PROVIDER_UNAVAILABLE"
    before = counts()
    assert error_code(gql(LOGIN, {"code": "fern"})) == "RATE_LIMITED"
    assert counts() == before
    # The refused attempt never reached WeChat: once the limit is lifted, the code still works.
    settings.RATELIMIT_LOGIN_CODE = "0"
    assert gql.login("fern")["created"] is True


def test_rate_limit_zero_turns_it_off(gql, settings):
    settings.RATELIMIT_LOGIN = "0"
    for n in range(5):
        gql.login(f"many{n}")
    assert User.objects.count() == 5


def _b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _bad_tokens(username):
    exp = int(time.time()) + 600
    good = jwt_encode({"username": username, "exp": exp})
    header, payload, signature = good.split(".")
    tampered_payload = _b64({"username": username, "exp": exp + 3600})
    return {
        "expired": jwt_encode({"username": username, "exp": int(time.time()) - 10}),
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "bad-signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "alg-none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "other-secret": jwt.encode({"username": username, "exp": exp}, settings.SECRET_KEY, algorithm="HS256"),
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize("kind", ["expired", "tampered", "bad-signature", "alg-none", "other-secret", "garbage"])
def test_bad_access_tokens_are_unauthenticated(gql, kind):
    gql.login("frank")
    user = User.objects.get()
    gql.token = _bad_tokens(user.username)[kind]
    result = gql(ME)
    assert error_code(result) == "UNAUTHENTICATED"
    assert result["data"]["me"] is None
    if kind == "expired":
        assert "refreshToken" in result["errors"][0]["message"]


def test_token_of_disabled_user_is_unauthenticated(gql):
    gql.login("gina")
    User.objects.update(is_active=False)
    assert error_code(gql(ME)) == "UNAUTHENTICATED"


def test_disabled_user_cannot_log_in(gql):
    gql.login("hank")
    User.objects.update(is_active=False)
    before = RefreshToken.objects.count()
    assert error_code(gql(LOGIN, {"code": "hank:2"})) == "FORBIDDEN"
    assert RefreshToken.objects.count() == before


def test_disabled_user_login_keeps_the_old_session_key(gql):
    gql.login("ivan")
    key = WechatIdentity.objects.get().session_key
    User.objects.update(is_active=False)
    assert error_code(gql(LOGIN, {"code": "ivan:2"})) == "FORBIDDEN"
    assert WechatIdentity.objects.get().session_key == key


def test_the_expiry_check_keeps_the_leeway(gql, settings):
    gql.login("pia")
    user = User.objects.get()
    settings.GRAPHQL_JWT = {**settings.GRAPHQL_JWT, "JWT_LEEWAY": timedelta(seconds=30)}
    gql.token = jwt_encode({"username": user.username, "exp": int(time.time()) - 20})  # within the leeway
    assert gql(ME)["data"]["me"]["id"]
    gql.token = jwt_encode({"username": user.username, "exp": int(time.time()) - 40})
    assert error_code(gql(ME)) == "UNAUTHENTICATED"


def test_a_token_is_refused_once_the_key_changes(gql, settings):
    gql.login("quinn")
    assert gql(ME)["data"]["me"]["id"]
    settings.GRAPHQL_JWT = {**settings.GRAPHQL_JWT, "JWT_SECRET_KEY": "another-key-" + "x" * 40}
    assert error_code(gql(ME)) == "UNAUTHENTICATED"


def test_a_token_needs_an_active_user_on_every_request(gql):
    gql.login("rosa")
    assert gql(ME)["data"]["me"]["id"]
    User.objects.update(is_active=False)
    assert error_code(gql(ME)) == "UNAUTHENTICATED"
