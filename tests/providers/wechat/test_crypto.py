"""providers/wechat/crypto.py against WeChat's own published vectors, and its strictness."""

from __future__ import annotations

import base64
import json

import pytest
from Crypto.Cipher import AES

from providers.wechat.crypto import (
    DecryptError,
    check_session_signature,
    decrypt_user_data,
    encrypt_user_data,
    login_state_signature,
    pkcs7_pad,
    pkcs7_unpad,
    user_data_signature,
)

# The official WXBizDataCrypt demo (aes-sample.zip), as copied into many SDKs' tests.
DEMO_APPID = "wx4f4bc4dec97d474b"
DEMO_SESSION_KEY = "tiihtNczf5v6AKRyjwEUhQ=="
DEMO_IV = "r7BXXKkLb8qrSNn05n0qiA=="
DEMO_ENCRYPTED = (
    "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS"
    "9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142d"
    "NCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6"
    "/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn"
    "/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4P"
    "C7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns"
    "/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYV"
    "oKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuy"
    "Db/XcxxmK01EpqOyuxINew=="
)
DEMO_RESULT = {
    "openId": "oGZUI0egBJY1zhBYw2KhdUfwVJJE",
    "nickName": "Band",
    "gender": 1,
    "language": "zh_CN",
    "city": "Guangzhou",
    "province": "Guangdong",
    "country": "CN",
    "avatarUrl": (
        "http://wx.qlogo.cn/mmopen/vi_32/"
        "aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0"
    ),
    "unionId": "ocMvos6NjeKLIBqg5Mr9QjxrP1FA",
    "watermark": {"timestamp": 1477314187, "appid": "wx4f4bc4dec97d474b"},
}

# The signature example of WeChat's "开放数据校验与解密" page.
SIGN_RAW_DATA = (
    '{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong",'
    '"country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/'
    '1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}'
)
SIGN_SESSION_KEY = "HyVFkGl5F5OQWJZZaNzBBg=="
SIGN_EXPECTED = "75e81ceda165f4ffa64f4068af58c64b8f54b88c"

# The example of WeChat's "用户登录态签名" page (POST body '{"foo":"bar"}').
LOGIN_SESSION_KEY = "o0q0otL8aEzpcZL/FT9WsQ=="
LOGIN_EXPECTED = "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"

OTHER_KEY = base64.b64encode(bytes(range(16))).decode()  # another valid 16-byte key


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _encrypt_raw(session_key: str, plain: bytes, iv: bytes = b"\x00" * 16) -> tuple[str, str]:
    """Encrypts arbitrary bytes (already padded or not) the way the WeChat client would."""
    cipher = AES.new(base64.b64decode(session_key), AES.MODE_CBC, iv)
    return _b64(cipher.encrypt(pkcs7_pad(plain))), _b64(iv)


# --- the official demo ------------------------------------------------------------


def test_demo_decrypts_to_the_documented_result():
    assert decrypt_user_data(DEMO_SESSION_KEY, DEMO_ENCRYPTED, DEMO_IV, appid=DEMO_APPID) == DEMO_RESULT


def test_demo_with_another_appid_is_refused():
    with pytest.raises(DecryptError, match="watermark appid"):
        decrypt_user_data(DEMO_SESSION_KEY, DEMO_ENCRYPTED, DEMO_IV, appid="wxother")


# --- bad inputs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session_key", "encrypted", "iv", "what"),
    [
        ("tiihtNczf5v6AKRyjwEUhQ=!", DEMO_ENCRYPTED, DEMO_IV, "session_key"),
        (DEMO_SESSION_KEY, DEMO_ENCRYPTED[:-2] + "*=", DEMO_IV, "encryptedData"),
        (DEMO_SESSION_KEY, DEMO_ENCRYPTED, "r7BXXKkLb8qrSNn05n0qi", "iv"),  # broken length/padding
        # a form-encoded body turns "+" into " ": must not be silently accepted
        (DEMO_SESSION_KEY, DEMO_ENCRYPTED.replace("+", " "), DEMO_IV, "encryptedData"),
        ("tiihtNczf5v6AKRyjwEUhQ=é", DEMO_ENCRYPTED, DEMO_IV, "session_key"),  # non-ASCII
        (DEMO_SESSION_KEY, DEMO_ENCRYPTED, DEMO_IV + "\n", "iv"),  # trailing newline
    ],
)
def test_malformed_base64_is_refused(session_key, encrypted, iv, what):
    with pytest.raises(DecryptError, match=f"{what} is not valid base64"):
        decrypt_user_data(session_key, encrypted, iv, appid=DEMO_APPID)


@pytest.mark.parametrize("iv_len", [0, 8, 15, 17, 32])
def test_iv_of_wrong_length_is_refused(iv_len):
    with pytest.raises(DecryptError, match="iv must decode to 16 bytes"):
        decrypt_user_data(DEMO_SESSION_KEY, DEMO_ENCRYPTED, _b64(b"\x01" * iv_len), appid=DEMO_APPID)


@pytest.mark.parametrize("key_len", [0, 8, 15, 24, 32])
def test_session_key_of_wrong_length_is_refused(key_len):
    # 24- and 32-byte keys are valid for AES-192/256: they must still be refused, not used.
    with pytest.raises(DecryptError, match="session_key must decode to 16 bytes"):
        decrypt_user_data(_b64(b"\x02" * key_len), DEMO_ENCRYPTED, DEMO_IV, appid=DEMO_APPID)


def test_wrong_key_fails_on_padding_not_on_json():
    with pytest.raises(DecryptError) as info:
        decrypt_user_data(OTHER_KEY, DEMO_ENCRYPTED, DEMO_IV, appid=DEMO_APPID)
    assert "padding" in str(info.value)
    assert "JSON" not in str(info.value)


def test_tampered_last_block_fails_on_padding():
    raw = bytearray(base64.b64decode(DEMO_ENCRYPTED))
    raw[-5] ^= 0x01  # a byte of the last block: its whole plaintext block turns to noise
    with pytest.raises(DecryptError, match="padding"):
        decrypt_user_data(DEMO_SESSION_KEY, _b64(bytes(raw)), DEMO_IV, appid=DEMO_APPID)


@pytest.mark.parametrize("cut", [1, 7, 15])
def test_ciphertext_not_a_whole_number_of_blocks_is_refused(cut):
    raw = base64.b64decode(DEMO_ENCRYPTED)[:-cut]
    with pytest.raises(DecryptError, match="whole number of blocks"):
        decrypt_user_data(DEMO_SESSION_KEY, _b64(raw), DEMO_IV, appid=DEMO_APPID)


def test_empty_ciphertext_is_refused():
    with pytest.raises(DecryptError, match="whole number of blocks"):
        decrypt_user_data(DEMO_SESSION_KEY, "", DEMO_IV, appid=DEMO_APPID)


@pytest.mark.parametrize(
    "watermark",
    [
        {"appid": DEMO_APPID},  # no timestamp
        {"appid": DEMO_APPID, "timestamp": "1477314187"},  # not an integer
        {"appid": DEMO_APPID, "timestamp": None},
    ],
)
def test_watermark_without_integer_timestamp_is_refused(watermark):
    plain = json.dumps({"nickName": "A", "watermark": watermark}).encode()
    encrypted, iv = _encrypt_raw(DEMO_SESSION_KEY, plain)
    with pytest.raises(DecryptError, match="watermark has no timestamp"):
        decrypt_user_data(DEMO_SESSION_KEY, encrypted, iv, appid=DEMO_APPID)


@pytest.mark.parametrize(
    "payload",
    [
        {"nickName": "A"},  # no watermark at all
        {"nickName": "A", "watermark": "wx4f4bc4dec97d474b"},  # not an object
        {"nickName": "A", "watermark": {"timestamp": 1}},  # no appid
    ],
)
def test_missing_or_malformed_watermark_is_refused(payload):
    encrypted, iv = _encrypt_raw(DEMO_SESSION_KEY, json.dumps(payload).encode())
    with pytest.raises(DecryptError, match="watermark appid"):
        decrypt_user_data(DEMO_SESSION_KEY, encrypted, iv, appid=DEMO_APPID)


@pytest.mark.parametrize(("plain", "message"), [(b"not json at all", "not JSON"), (b"[1, 2]", "not a JSON object")])
def test_valid_padding_around_non_object_is_refused(plain, message):
    encrypted, iv = _encrypt_raw(DEMO_SESSION_KEY, plain)
    with pytest.raises(DecryptError, match=message):
        decrypt_user_data(DEMO_SESSION_KEY, encrypted, iv, appid=DEMO_APPID)


# --- encrypt round trip -----------------------------------------------------------


def test_encrypt_then_decrypt_round_trip():
    data = {"nickName": "小明", "gender": 2, "avatarUrl": "https://example.invalid/a.png"}
    encrypted, iv = encrypt_user_data(DEMO_SESSION_KEY, data, appid="wxabc", timestamp=1_700_000_000)
    assert len(base64.b64decode(iv)) == 16
    assert len(base64.b64decode(encrypted)) % 16 == 0
    result = decrypt_user_data(DEMO_SESSION_KEY, encrypted, iv, appid="wxabc")
    assert result == {**data, "watermark": {"timestamp": 1_700_000_000, "appid": "wxabc"}}
    # the input dict is not modified
    assert "watermark" not in data


def test_encrypt_uses_a_fresh_iv_and_defaults_the_timestamp():
    (enc1, iv1), (enc2, iv2) = (encrypt_user_data(DEMO_SESSION_KEY, {"a": 1}, appid="wxabc") for _ in range(2))
    assert iv1 != iv2
    assert enc1 != enc2
    ts = decrypt_user_data(DEMO_SESSION_KEY, enc1, iv1, appid="wxabc")["watermark"]["timestamp"]
    assert isinstance(ts, int) and ts > 1_700_000_000


def test_encrypt_with_given_iv_matches_manual_aes():
    iv = bytes(range(16, 32))
    encrypted, iv_b64 = encrypt_user_data(DEMO_SESSION_KEY, {"a": 1}, appid="wxabc", timestamp=5, iv=iv)
    assert iv_b64 == _b64(iv)
    plain = AES.new(base64.b64decode(DEMO_SESSION_KEY), AES.MODE_CBC, iv).decrypt(base64.b64decode(encrypted))
    assert pkcs7_unpad(plain) == b'{"a":1,"watermark":{"timestamp":5,"appid":"wxabc"}}'


# --- PKCS#7 -----------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 31, 32])
def test_pkcs7_pad_and_unpad(length):
    data = bytes(range(length))
    padded = pkcs7_pad(data)
    n = 16 - length % 16
    assert padded == data + bytes([n]) * n
    assert len(padded) % 16 == 0
    assert pkcs7_unpad(padded) == data


@pytest.mark.parametrize(
    "data",
    [
        b"A" * 15 + b"\x00",  # pad byte 0
        b"A" * 15 + b"\x11",  # pad byte 17 > block size
        b"A" * 15 + b"\xff",
        b"A" * 13 + b"\x01\x02\x03",  # claims 3 bytes of padding, the bytes disagree
        b"A" * 12 + b"\x04\x04\x03\x04",
        b"A" * 16 + b"\x10" * 15 + b"\x0f",
        b"",  # nothing
        b"A" * 17,  # not whole blocks
    ],
)
def test_pkcs7_unpad_is_strict(data):
    with pytest.raises(DecryptError):
        pkcs7_unpad(data)


def test_pkcs7_unpad_accepts_a_full_block_of_padding():
    assert pkcs7_unpad(b"B" * 16 + b"\x10" * 16) == b"B" * 16


# --- signatures -------------------------------------------------------------------


def test_user_data_signature_matches_the_official_example():
    assert user_data_signature(SIGN_RAW_DATA, SIGN_SESSION_KEY) == SIGN_EXPECTED


def test_user_data_signature_changes_with_data_and_key():
    assert user_data_signature(SIGN_RAW_DATA + " ", SIGN_SESSION_KEY) != SIGN_EXPECTED
    assert user_data_signature(SIGN_RAW_DATA, DEMO_SESSION_KEY) != SIGN_EXPECTED


def test_login_state_signature_matches_the_official_example():
    # WeChat's "用户登录态签名" page: hmac_sha256('{"foo":"bar"}', 'o0q0otL8aEzpcZL/FT9WsQ==') = 654571...
    assert login_state_signature(LOGIN_SESSION_KEY, '{"foo":"bar"}') == LOGIN_EXPECTED


def test_login_state_signature_signs_the_body_as_utf8():
    # A body with Chinese text must be signed as the UTF-8 bytes the client sends. Obtained with:
    # printf '%s' '{"nickName":"小明"}' | openssl dgst -sha256 -hmac 'o0q0otL8aEzpcZL/FT9WsQ=='
    expected = "d827fe5a4f52b63706d2d8edd0af381bbc8794cf4acfad9cfd7c8e893d7cb954"
    assert login_state_signature(LOGIN_SESSION_KEY, '{"nickName":"小明"}') == expected


def test_login_state_signature_depends_on_data_and_key():
    assert login_state_signature(LOGIN_SESSION_KEY, '{"foo":"baz"}') != LOGIN_EXPECTED
    assert login_state_signature(DEMO_SESSION_KEY, '{"foo":"bar"}') != LOGIN_EXPECTED


@pytest.mark.parametrize(
    ("session_key", "expected"),
    [
        # Obtained independently with: printf '' | openssl dgst -sha256 -hmac 'o0q0otL8aEzpcZL/FT9WsQ=='
        (LOGIN_SESSION_KEY, "46e043c5525c2d817c44be603d30837a808a1d930d038f6fdc3e62a201fed128"),
        # Obtained independently with: printf '' | openssl dgst -sha256 -hmac 'tiihtNczf5v6AKRyjwEUhQ=='
        (DEMO_SESSION_KEY, "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"),
    ],
)
def test_check_session_signature_is_the_get_signature_computed_by_openssl(session_key, expected):
    assert check_session_signature(session_key) == expected
