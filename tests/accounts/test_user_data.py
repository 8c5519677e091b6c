"""decryptUserInfo, bindPhoneNumber and updateProfile, with every bad input changing nothing."""

import base64
import logging
import time

import pytest
from Crypto.Cipher import AES
from django.conf import settings

from accounts.models import User, WechatIdentity
from config import providers
from providers.wechat.crypto import encrypt_user_data, pkcs7_pad
from tests.helpers import LOGIN, error_code

DECRYPT = """
mutation D($e: String!, $iv: String!, $raw: String, $sig: String) {
  decryptUserInfo(encryptedData: $e, iv: $iv, rawData: $raw, signature: $sig) {
    nickname avatarUrl gender city province country language
  }
}
"""
PHONE_CODE = "mutation P($c: String!) { bindPhoneNumber(code: $c) { phoneNumber purePhoneNumber phoneCountryCode } }"
PHONE_DATA = "mutation P($e: String!, $iv: String!) { bindPhoneNumber(encryptedData: $e, iv: $iv) { phoneNumber } }"
REFRESH = "mutation R($t: String!) { refreshToken(refreshToken: $t) { token refreshToken } }"
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
    from config import providers

    providers.sandbox().set_fault("wechat", "http_500", 1)
    before = profile_snapshot()
    assert error_code(gql(PHONE_CODE, {"c": "phone:13800138000"})) == "PROVIDER_UNAVAILABLE"
    assert profile_snapshot() == before


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


# --- the session_key never reaches a log --------------------------------------------------


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
    assert error_code(gql(REFRESH, {"t": refresh})) == "UNAUTHENTICATED"  # a reuse, logged as a warning
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
