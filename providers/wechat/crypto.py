"""WeChat open-data crypto: encrypted user data and its signatures.

encryptedData is AES-128-CBC with key = base64(session_key), iv = base64(iv),
PKCS#7 padded to 16 bytes, wrapping JSON with a `watermark {appid, timestamp}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from typing import Any

from Crypto.Cipher import AES

BLOCK = 16


class DecryptError(ValueError):
    """The data cannot be trusted: bad base64, key, iv, padding, JSON or watermark."""


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptError(f"{what} is not valid base64") from exc


def pkcs7_pad(data: bytes, block: int = BLOCK) -> bytes:
    n = block - len(data) % block
    return data + bytes([n]) * n


def pkcs7_unpad(data: bytes, block: int = BLOCK) -> bytes:
    """Strict: a wrong key almost always fails here, before any JSON is parsed."""
    if not data or len(data) % block:
        raise DecryptError("ciphertext length is not a whole number of blocks")
    n = data[-1]
    if not 1 <= n <= block or data[-n:] != bytes([n]) * n:
        raise DecryptError("bad padding (wrong session_key or iv, or tampered data)")
    return data[:-n]


def decrypt_user_data(session_key: str, encrypted_data: str, iv: str, *, appid: str) -> dict[str, Any]:
    """Decrypts wx.getUserProfile / getPhoneNumber data; checks the watermark's appid.

    Returns the JSON object including `watermark`, whose `timestamp` the caller
    compares with its own maximum age.
    """
    key = _b64decode(session_key, "session_key")
    iv_bytes = _b64decode(iv, "iv")
    data = _b64decode(encrypted_data, "encryptedData")
    if len(key) != 16:
        raise DecryptError("session_key must decode to 16 bytes")
    if len(iv_bytes) != 16:
        raise DecryptError("iv must decode to 16 bytes")
    if not data or len(data) % BLOCK:
        raise DecryptError("encryptedData length is not a whole number of blocks")
    plain = pkcs7_unpad(AES.new(key, AES.MODE_CBC, iv_bytes).decrypt(data))
    try:
        payload = json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecryptError("decrypted data is not JSON") from exc
    if not isinstance(payload, dict):
        raise DecryptError("decrypted data is not a JSON object")
    watermark = payload.get("watermark")
    if not isinstance(watermark, dict) or watermark.get("appid") != appid:
        raise DecryptError("watermark appid does not match this app")
    if not isinstance(watermark.get("timestamp"), int):
        raise DecryptError("watermark has no timestamp")
    return payload


def encrypt_user_data(
    session_key: str,
    data: dict[str, Any],
    *,
    appid: str,
    timestamp: int | None = None,
    iv: bytes | None = None,
) -> tuple[str, str]:
    """What the WeChat client does: adds the watermark and encrypts. Returns (encryptedData, iv)."""
    payload = dict(data)
    payload["watermark"] = {"timestamp": int(time.time()) if timestamp is None else timestamp, "appid": appid}
    iv = iv if iv is not None else os.urandom(BLOCK)
    plain = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    cipher = AES.new(base64.b64decode(session_key), AES.MODE_CBC, iv)
    encrypted = cipher.encrypt(pkcs7_pad(plain))
    return base64.b64encode(encrypted).decode(), base64.b64encode(iv).decode()


def user_data_signature(raw_data: str, session_key: str) -> str:
    """signature = sha1(rawData + session_key), lower-case hex."""
    return hashlib.sha1((raw_data + session_key).encode("utf-8"), usedforsecurity=False).hexdigest()  # noqa: S324 (the protocol)


def login_state_signature(session_key: str, data: str = "") -> str:
    """User login-state signature: hmac_sha256(data, session_key), lower-case hex.

    The key is the session_key string as given, not its base64 decoding; `data` is
    the POST body, or "" for a GET request.
    """
    return hmac.new(session_key.encode("utf-8"), data.encode("utf-8"), hashlib.sha256).hexdigest()


def check_session_signature(session_key: str) -> str:
    """wxa/checksession is a GET: the login-state signature of the empty string."""
    return login_state_signature(session_key)
