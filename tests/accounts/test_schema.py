"""The accounts GraphQL surface: wechatLogin, me, refreshToken, decryptUserInfo, bindPhoneNumber and
updateProfile; the JWT it issues and reads; rate limits; provider failures; bad input changes nothing."""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import datetime, timedelta
from types import SimpleNamespace

import jwt
import pytest
from Crypto.Cipher import AES
from django.conf import settings
from django.utils.timezone import now as django_now
from django_ratelimit import core as ratelimit_core
from graphql_jwt.utils import jwt_encode

from accounts.models import RefreshToken, User, WechatIdentity, hash_refresh_token
from config import providers
from providers.wechat.crypto import encrypt_user_data, pkcs7_pad
from tests.factories import StaffFactory, UserFactory
from tests.helpers import LOGIN, REFRESH, error_code

ME = "{ me { id openid unionid nickname phoneNumber } }"
DECRYPT = """
mutation D($e: String!, $iv: String!, $raw: String, $sig: String) {
  decryptUserInfo(encryptedData: $e, iv: $iv, rawData: $raw, signature: $sig) {
    nickname avatarUrl gender city province country language
  }
}
"""
PHONE_CODE = "mutation P($c: String!) { bindPhoneNumber(code: $c) { phoneNumber purePhoneNumber phoneCountryCode } }"
PHONE_DATA = "mutation P($e: String!, $iv: String!) { bindPhoneNumber(encryptedData: $e, iv: $iv) { phoneNumber } }"
PROFILE = "mutation U($n: String, $a: String) { updateProfile(nickname: $n, avatarUrl: $a) { nickname avatarUrl } }"

PROFILE_DATA = {
    "nickName": "Band",
    "gender": 1,
    "language": "zh_CN",
    "city": "Guangzhou",
    "province": "Guangdong",
    "country": "CN",
    "avatarUrl": "https://wx.qlogo.cn/mmopen/vi_32/0",
}
PHONE_INFO = {"phoneNumber": "13912345678", "purePhoneNumber": "13912345678", "countryCode": "86"}


def counts():
    return User.objects.count(), WechatIdentity.objects.count(), RefreshToken.objects.count()


# --- wechatLogin and me -------------------------------------------------------------------


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


def test_date_joined_is_one_iso_timestamp_with_its_offset(gql):
    # Regression: a login that built the user from raw rows answered it without a timezone on SQLite.
    login = "mutation L($code: String!) { wechatLogin(code: $code) { token user { dateJoined } } }"
    first = gql(login, {"code": "olga"})["data"]["wechatLogin"]
    again = gql(login, {"code": "olga:2"})["data"]["wechatLogin"]  # a returning user is read back
    gql.token = again["token"]
    me = gql("{ me { dateJoined } }")["data"]["me"]["dateJoined"]
    assert first["user"]["dateJoined"] == again["user"]["dateJoined"] == me
    assert me.endswith("+00:00")
    assert datetime.fromisoformat(me) == User.objects.get().date_joined


# --- SQL per request: pinned, counted outside any test transaction (as in production) -----------


@pytest.mark.django_db(transaction=True)
def test_me_is_one_query(gql, django_assert_num_queries):
    openid = gql.login("alice")["user"]["openid"]
    # The active user named by the token, joined to their mini-program identity.
    with django_assert_num_queries(1):
        me = gql("{ me { id openid nickname } }")["data"]["me"]
    assert me["openid"] == openid


@pytest.mark.django_db(transaction=True)
def test_a_first_login_is_nine_queries(gql, django_assert_num_queries):
    # BEGIN; the identity by openid (none); SAVEPOINT; an identity by unionid (none); INSERT user;
    # INSERT identity; RELEASE SAVEPOINT; INSERT refresh token; COMMIT.
    with django_assert_num_queries(9):
        assert gql.login("alice")["created"] is True


@pytest.mark.django_db(transaction=True)
def test_a_returning_login_is_five_queries(gql, django_assert_num_queries):
    gql.login("alice")
    # BEGIN; the identity by openid with its user; UPDATE identity (session_key); INSERT refresh token; COMMIT.
    with django_assert_num_queries(5):
        assert gql.login("alice:2")["created"] is False


@pytest.mark.django_db(transaction=True)
def test_refresh_is_five_queries(gql, django_assert_num_queries):
    token = gql.login("alice")["refreshToken"]
    # BEGIN; the token with its user, locked; UPDATE it (rotated); INSERT the new one; COMMIT.
    with django_assert_num_queries(5):
        assert gql(REFRESH, {"t": token})["data"]["refreshToken"]["refreshToken"]


# --- wechatLogin: bad codes, provider failures ---------------------------------------------


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


# --- wechatLogin: rate limits ----------------------------------------------------------------


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


# --- the access token (JWT) --------------------------------------------------------------


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


def test_a_token_needs_an_active_user_on_every_request(gql):
    gql.login("rosa")
    assert gql(ME)["data"]["me"]["id"]
    User.objects.update(is_active=False)
    assert error_code(gql(ME)) == "UNAUTHENTICATED"


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


# --- decryptUserInfo ---------------------------------------------------------------------


@pytest.fixture
def alice(gql, wechat_sandbox):
    login = gql.login("alice")
    return login["user"]["openid"]


def profile_snapshot():
    return list(User.objects.values_list("nickname", "avatar_url", "gender", "city", "phone_number"))


def user_data(wechat_sandbox, openid, data=PROFILE_DATA, **kw):
    return wechat_sandbox.user_data(settings.WECHAT_MINIPROGRAM_APPID, openid, data, **kw)


def test_decrypt_user_info_saves_profile(gql, wechat_sandbox, alice):
    d = user_data(wechat_sandbox, alice)
    result = gql(DECRYPT, {"e": d["encryptedData"], "iv": d["iv"], "raw": d["rawData"], "sig": d["signature"]})
    assert "errors" not in result, result
    assert result["data"]["decryptUserInfo"] == {
        "nickname": "Band",
        "avatarUrl": "https://wx.qlogo.cn/mmopen/vi_32/0",
        "gender": 1,
        "city": "Guangzhou",
        "province": "Guangdong",
        "country": "CN",
        "language": "zh_CN",
    }
    assert gql("{ me { nickname } }")["data"]["me"]["nickname"] == "Band"


def test_decrypt_without_signature_is_allowed(gql, wechat_sandbox, alice):
    d = user_data(wechat_sandbox, alice)
    result = gql(DECRYPT, {"e": d["encryptedData"], "iv": d["iv"]})
    assert result["data"]["decryptUserInfo"]["nickname"] == "Band"


def _flip_last_block(data):
    raw = bytearray(base64.b64decode(data))
    raw[-1] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _reencrypt(d, data=PROFILE_DATA, appid=None, timestamp=None):
    """Encrypts `data` with the user's real session_key, as a client could, but with a chosen watermark."""
    session_key = WechatIdentity.objects.get().session_key
    appid = appid or settings.WECHAT_MINIPROGRAM_APPID
    encrypted, iv = encrypt_user_data(session_key, data, appid=appid, timestamp=timestamp)
    return {**d, "encryptedData": encrypted, "iv": iv}


BAD_INPUTS = {
    "malformed base64": lambda d: {**d, "encryptedData": "@@not-base64@@"},
    "malformed iv": lambda d: {**d, "iv": "!!"},
    "short iv": lambda d: {**d, "iv": base64.b64encode(b"12345678").decode()},
    "tampered": lambda d: {**d, "encryptedData": _flip_last_block(d["encryptedData"])},
    "wrong signature": lambda d: {**d, "signature": "0" * 40},
    # compare_digest raised TypeError (INTERNAL) for a non-ASCII signature.
    "non-ASCII signature": lambda d: {**d, "rawData": "{}", "signature": "é"},
    "rawData changed": lambda d: {**d, "rawData": d["rawData"].replace("Band", "Evil")},
    "signature without rawData": lambda d: {**d, "rawData": None},
    "other appid watermark": lambda d: _reencrypt(d, appid="wxother"),
    "stale watermark": lambda d: _reencrypt(d, timestamp=int(time.time()) - settings.WECHAT_USER_DATA_MAX_AGE - 60),
    "another user's data": lambda d: _reencrypt(d, data={**PROFILE_DATA, "openId": "o-someone-else"}),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_user_data_is_refused_and_changes_nothing(gql, wechat_sandbox, alice, case):
    d = BAD_INPUTS[case](user_data(wechat_sandbox, alice))
    before = profile_snapshot()
    result = gql(DECRYPT, {"e": d["encryptedData"], "iv": d["iv"], "raw": d["rawData"], "sig": d["signature"]})
    assert error_code(result) == "BAD_USER_INPUT"
    assert profile_snapshot() == before


def test_data_from_an_old_session_key_is_refused(gql, wechat_sandbox, alice):
    """The classic: wx.login ran again, so the data was made with a key we no longer hold."""
    d = user_data(wechat_sandbox, alice)
    gql.login("alice:2")  # rotates the session_key on both sides
    before = profile_snapshot()
    result = gql(DECRYPT, {"e": d["encryptedData"], "iv": d["iv"]})
    assert error_code(result) == "BAD_USER_INPUT"
    assert "wechatLogin" in result["errors"][0]["message"]
    assert profile_snapshot() == before


def test_every_decrypt_failure_gives_the_same_message(gql, wechat_sandbox, alice):
    """A different message for bad padding than for bad JSON would be a padding oracle."""
    other_key = base64.b64encode(b"k" * 16).decode()
    wrong_key, iv1 = encrypt_user_data(other_key, PROFILE_DATA, appid=settings.WECHAT_MINIPROGRAM_APPID)
    session_key = WechatIdentity.objects.get().session_key
    not_json = base64.b64encode(
        AES.new(base64.b64decode(session_key), AES.MODE_CBC, b"0" * 16).encrypt(pkcs7_pad(b"not json"))
    ).decode()
    other_app, iv3 = encrypt_user_data(session_key, PROFILE_DATA, appid="wxother")
    messages = set()
    for encrypted, iv in ((wrong_key, iv1), (not_json, base64.b64encode(b"0" * 16).decode()), (other_app, iv3)):
        result = gql(DECRYPT, {"e": encrypted, "iv": iv})
        assert error_code(result) == "BAD_USER_INPUT"
        messages.add(result["errors"][0]["message"])
    assert len(messages) == 1


def test_decrypt_requires_login(gql):
    assert error_code(gql(DECRYPT, {"e": "x", "iv": "y"})) == "UNAUTHENTICATED"


# --- bindPhoneNumber ---------------------------------------------------------------------


def test_bind_phone_by_code(gql, alice):
    result = gql(PHONE_CODE, {"c": "phone:13800138000"})
    assert result["data"]["bindPhoneNumber"] == {
        "phoneNumber": "+8613800138000",
        "purePhoneNumber": "13800138000",
        "phoneCountryCode": "86",
    }


@pytest.mark.parametrize("code", ["not-a-phone-code", "", "phone:"])
def test_bind_phone_bad_code_changes_nothing(gql, alice, code):
    before = profile_snapshot()
    assert error_code(gql(PHONE_CODE, {"c": code})) == "BAD_USER_INPUT"
    assert profile_snapshot() == before


def test_bind_phone_code_is_single_use(gql, alice):
    gql(PHONE_CODE, {"c": "phone:13800138000"})
    User.objects.update(phone_number="")
    assert error_code(gql(PHONE_CODE, {"c": "phone:13800138000"})) == "BAD_USER_INPUT"
    assert User.objects.get().phone_number == ""


def test_bind_phone_by_encrypted_data(gql, wechat_sandbox, alice):
    d = user_data(wechat_sandbox, alice, PHONE_INFO)
    result = gql(PHONE_DATA, {"e": d["encryptedData"], "iv": d["iv"]})
    assert result["data"]["bindPhoneNumber"]["phoneNumber"] == "+8613912345678"


def _encrypt_with_another_key(d):
    """What data made under a session_key we no longer hold looks like."""
    other_key = base64.b64encode(b"k" * 16).decode()
    encrypted, iv = encrypt_user_data(other_key, PHONE_INFO, appid=settings.WECHAT_MINIPROGRAM_APPID)
    return {**d, "encryptedData": encrypted, "iv": iv}


PHONE_BAD_INPUTS = {
    "malformed base64": lambda d: {**d, "encryptedData": "@@not-base64@@"},
    "empty data": lambda d: {**d, "encryptedData": ""},
    "not whole blocks": lambda d: {**d, "encryptedData": base64.b64encode(b"x" * 20).decode()},
    "malformed iv": lambda d: {**d, "iv": "!!"},
    "short iv": lambda d: {**d, "iv": base64.b64encode(b"12345678").decode()},
    "long iv": lambda d: {**d, "iv": base64.b64encode(b"0" * 32).decode()},
    "tampered": lambda d: {**d, "encryptedData": _flip_last_block(d["encryptedData"])},
    "wrong key": _encrypt_with_another_key,
    "other appid watermark": lambda d: _reencrypt(d, data=PHONE_INFO, appid="wxother"),
    "stale watermark": lambda d: _reencrypt(
        d, data=PHONE_INFO, timestamp=int(time.time()) - settings.WECHAT_USER_DATA_MAX_AGE - 60
    ),
    "future watermark": lambda d: _reencrypt(d, data=PHONE_INFO, timestamp=int(time.time()) + 3600),
    "another user's data": lambda d: _reencrypt(d, data={**PHONE_INFO, "openId": "o-someone-else"}),
    "no phone number": lambda d: _reencrypt(d, data={"countryCode": "86"}),
}


def everything():
    """Every column of every user and identity: a refused bind must not touch any of them."""
    return list(User.objects.order_by("pk").values()), list(WechatIdentity.objects.order_by("pk").values())


@pytest.mark.parametrize("case", sorted(PHONE_BAD_INPUTS))
def test_bind_phone_bad_encrypted_data_changes_nothing(gql, wechat_sandbox, alice, case):
    # A phone bound already, so "unchanged" would catch a bind that blanks it.
    gql(PHONE_CODE, {"c": "phone:13800138000"})
    d = PHONE_BAD_INPUTS[case](user_data(wechat_sandbox, alice, PHONE_INFO))
    before = everything()
    result = gql(PHONE_DATA, {"e": d["encryptedData"], "iv": d["iv"]})
    assert error_code(result) == "BAD_USER_INPUT"
    assert result["data"]["bindPhoneNumber"] is None
    assert User.objects.get().phone_number == "+8613800138000"
    assert everything() == before


def test_bind_phone_needs_exactly_one_form(gql, alice):
    both = 'mutation { bindPhoneNumber(code: "phone:1380013800", encryptedData: "x", iv: "y") { id } }'
    assert error_code(gql(both)) == "BAD_USER_INPUT"
    assert error_code(gql("mutation { bindPhoneNumber { id } }")) == "BAD_USER_INPUT"


def test_phone_provider_down(gql, alice):
    providers.sandbox().set_fault("wechat", "http_500", 1)
    before = profile_snapshot()
    assert error_code(gql(PHONE_CODE, {"c": "phone:13800138000"})) == "PROVIDER_UNAVAILABLE"
    assert profile_snapshot() == before


# --- updateProfile -----------------------------------------------------------------------


def test_update_profile(gql, alice):
    result = gql(PROFILE, {"n": "  Alice  ", "a": "https://example.com/a.png"})
    assert result["data"]["updateProfile"] == {"nickname": "Alice", "avatarUrl": "https://example.com/a.png"}


@pytest.mark.parametrize(
    "variables",
    [{"n": ""}, {"n": "x" * 65}, {"a": "javascript:alert(1)"}, {"a": "not a url"}, {}],
)
def test_update_profile_bad_input_changes_nothing(gql, alice, variables):
    before = profile_snapshot()
    assert error_code(gql(PROFILE, variables)) == "BAD_USER_INPUT"
    assert profile_snapshot() == before


# --- the session_key never reaches a log, whichever mutation ran ---------------------------


@pytest.fixture
def every_log(caplog, console_log):
    """Every record of every logger at DEBUG, in caplog and through the project's handler into a string."""
    handler, stream = console_log
    caplog.set_level(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in loggers:
        caplog.set_level(logging.DEBUG, logger=logger.name)
    # Records of loggers that do not propagate never reach the root's handlers: catch them where they are.
    islands = [logger for logger in loggers if not logger.propagate]
    # (The root logger has the project's handler already.)
    for logger in islands:
        logger.addHandler(handler)
        logger.addHandler(caplog.handler)
    yield caplog, stream
    for logger in islands:
        logger.removeHandler(handler)
        logger.removeHandler(caplog.handler)


def _session_keys():
    keys = set(WechatIdentity.objects.values_list("session_key", flat=True))
    assert all(keys)
    return keys | {base64.b64decode(key).hex() for key in keys}  # the raw bytes, as a debug line might show them


def test_session_key_is_never_logged(gql, wechat_sandbox, every_log, settings):
    # Production's DEBUG off: with DEBUG on, Django's own SQL log at DEBUG level carries every parameter.
    settings.DEBUG = False
    caplog, stream = every_log
    refresh = gql.login("alice")["refreshToken"]
    keys = _session_keys()
    openid = WechatIdentity.objects.get().openid
    d = user_data(wechat_sandbox, openid)
    profile = {"e": d["encryptedData"], "iv": d["iv"], "raw": d["rawData"], "sig": d["signature"]}
    assert "errors" not in gql(DECRYPT, profile)
    # The failure paths log their reason: they are the likeliest to say too much.
    assert error_code(gql(DECRYPT, {**profile, "e": _flip_last_block(d["encryptedData"])})) == "BAD_USER_INPUT"
    assert error_code(gql(DECRYPT, {**profile, "sig": "0" * 40})) == "BAD_USER_INPUT"
    assert "errors" not in gql(PHONE_CODE, {"c": "phone:13800138000"})
    phone = user_data(wechat_sandbox, openid, PHONE_INFO)
    assert "errors" not in gql(PHONE_DATA, {"e": phone["encryptedData"], "iv": phone["iv"]})
    stale = _reencrypt(phone, data=PHONE_INFO, timestamp=int(time.time()) - settings.WECHAT_USER_DATA_MAX_AGE - 60)
    assert error_code(gql(PHONE_DATA, {"e": stale["encryptedData"], "iv": stale["iv"]})) == "BAD_USER_INPUT"
    providers.sandbox().set_fault("wechat", "http_500", 1)
    assert error_code(gql(PHONE_CODE, {"c": "phone:13700137000"})) == "PROVIDER_UNAVAILABLE"
    assert gql(REFRESH, {"t": refresh})["data"]["refreshToken"]["refreshToken"]
    # Past the reuse interval, presenting it again is reuse, logged as a warning.
    RefreshToken.objects.filter(token=hash_refresh_token(refresh)).update(
        revoked=django_now() - timedelta(seconds=settings.JWT_REFRESH_REUSE_SECONDS + 1)
    )
    assert error_code(gql(REFRESH, {"t": refresh})) == "UNAUTHENTICATED"
    gql.login("alice:2")  # a returning user: a new session_key replaces the old one
    keys |= _session_keys()
    assert error_code(gql(LOGIN, {"code": "alice:2"})) == "BAD_USER_INPUT"  # WeChat refused a used code
    assert len(keys) == 4  # two session_keys, each in two spellings

    records = " ".join(repr(vars(record)) for record in caplog.records)  # message, args, extras, exceptions
    # Both channels did capture the flow, so finding no key in them means something.
    assert "wechat login openid=" in caplog.text
    assert "wechat login openid=" in stream.getvalue()
    assert "not decrypted" in caplog.text
    for key in keys:
        assert key not in caplog.text
        assert key not in records
        assert key not in stream.getvalue()


# --- tokenAuth (staff) --------------------------------------------------------------------------

TOKEN_AUTH = (
    "mutation T($u: String!, $p: String!) { tokenAuth(username: $u, password: $p) { token refreshToken user { id } } }"
)
STAFF_ORDERS = "{ orders(first: 1) { edges { node { outTradeNo } } } }"


def test_token_auth_gives_staff_a_token_pair_that_staff_operations_accept(gql):
    staff = StaffFactory(username="ops", password="correct horse")
    result = gql(TOKEN_AUTH, {"u": "ops", "p": "correct horse"})
    assert "errors" not in result, result
    pair = result["data"]["tokenAuth"]
    assert jwt.decode(pair["token"], options={"verify_signature": False})["username"] == "ops"
    assert RefreshToken.objects.filter(user=staff, token=hash_refresh_token(pair["refreshToken"])).exists()
    staff.refresh_from_db()
    assert staff.last_login is not None
    gql.token = pair["token"]
    assert "errors" not in gql(STAFF_ORDERS)
    # A staff-only mutation passes the permission check (and fails on the unknown order instead).
    refused = gql('mutation { refundOrder(outTradeNo: "nope", amount: 1) { status } }')
    assert error_code(refused) == "NOT_FOUND", refused
    # The refresh token rotates like a mini-program user's.
    rotated = gql(REFRESH, {"t": pair["refreshToken"]})
    assert "errors" not in rotated, rotated


@pytest.mark.parametrize(
    ("username", "password"),
    [("ops", "wrong"), ("nobody", "correct horse"), ("buyer", "correct horse"), ("retired", "correct horse")],
    ids=["wrong-password", "unknown-user", "not-staff", "inactive-staff"],
)
def test_token_auth_refuses_everything_else_with_one_answer(gql, username, password):
    StaffFactory(username="ops", password="correct horse")
    UserFactory(username="buyer", password="correct horse")
    StaffFactory(username="retired", password="correct horse", is_active=False)
    before = RefreshToken.objects.count()
    result = gql(TOKEN_AUTH, {"u": username, "p": password})
    assert result["data"] == {"tokenAuth": None}
    assert error_code(result) == "UNAUTHENTICATED"
    assert result["errors"][0]["message"] == "Wrong username or password, or not a staff account."
    assert RefreshToken.objects.count() == before


def test_token_auth_is_rate_limited_per_username_and_per_address(gql, settings):
    settings.RATELIMIT_STAFF_LOGIN = "3/m"
    StaffFactory(username="ops", password="correct horse")
    for _ in range(3):
        assert error_code(gql(TOKEN_AUTH, {"u": "ops", "p": "guess"})) == "UNAUTHENTICATED"
    # The right password no longer helps: the username is locked for the minute, from any address.
    locked = gql(TOKEN_AUTH, {"u": "OPS", "p": "correct horse"}, REMOTE_ADDR="10.0.0.9")
    assert error_code(locked) == "RATE_LIMITED", locked
    # And one address cannot spray other usernames either.
    assert error_code(gql(TOKEN_AUTH, {"u": "other", "p": "x"})) == "RATE_LIMITED"


@pytest.mark.parametrize(
    ("base_url", "logged"),
    [
        ("https://api.nowhere.invalid", "DNS lookup of api.nowhere.invalid failed"),
        ("http://127.0.0.1:9", "connection to 127.0.0.1:9 refused"),
    ],
    ids=["dns", "refused"],
)
def test_an_unreachable_wechat_is_logged_as_what_it_is(gql, settings, caplog, base_url, logged):
    settings.SANDBOX = False
    settings.WECHAT_API_BASE_URL = base_url
    providers.reset()
    before = counts()
    with caplog.at_level(logging.WARNING, logger="accounts.services"):
        result = gql(LOGIN, {"code": "any"})
    assert error_code(result) == "PROVIDER_UNAVAILABLE"
    assert result["errors"][0]["message"] == "WeChat is not reachable right now: try again shortly."
    assert f"wechat unavailable: {logged}" in caplog.text
    assert "did not answer" not in caplog.text
    assert counts() == before
