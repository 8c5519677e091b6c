"""WeChat Pay API v3 wire protocol: RSA-SHA256 request signing and verification, AEAD_AES_256_GCM resources."""

from __future__ import annotations

import base64
import binascii
import secrets
import time

from Crypto.Cipher import AES

from providers.rsa import sign_sha256, verify_sha256
from providers.wechat.crypto import DecryptError

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
# WeChat Pay's probe notifies carry signatures with this prefix; they must never verify.
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
MAX_CLOCK_SKEW = 300


def sign_message(private_key_pem: str, message: str) -> str:
    """RSA-SHA256 (PKCS#1 v1.5) of `message`, base64."""
    return sign_sha256(private_key_pem, message)


def request_message(method: str, url_path: str, timestamp: str, nonce_str: str, body: str) -> str:
    return f"{method.upper()}\n{url_path}\n{timestamp}\n{nonce_str}\n{body}\n"


def authorization(
    *,
    mchid: str,
    serial_no: str,
    private_key_pem: str,
    method: str,
    url_path: str,
    body: str = "",
    timestamp: str | None = None,
    nonce_str: str | None = None,
) -> str:
    """The Authorization header of a v3 request; url_path includes the query string."""
    timestamp = timestamp or str(int(time.time()))
    nonce_str = nonce_str or secrets.token_hex(16).upper()
    signature = sign_message(private_key_pem, request_message(method, url_path, timestamp, nonce_str, body))
    return (
        f'{SCHEMA} mchid="{mchid}",nonce_str="{nonce_str}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def verify_signature(public_key_pem: str, timestamp: str, nonce_str: str, body: str, signature: str) -> bool:
    """Verifies `timestamp\\nnonce\\nbody\\n` (the raw body) against the Wechatpay-Signature header."""
    if not signature or signature.startswith(SIGNTEST_PREFIX):
        return False
    return verify_sha256(public_key_pem, f"{timestamp}\n{nonce_str}\n{body}\n", signature)


def timestamp_fresh(timestamp: str, now: float | None = None, skew: int = MAX_CLOCK_SKEW) -> bool:
    try:
        value = int(timestamp)
    except (TypeError, ValueError):
        return False
    return abs((time.time() if now is None else now) - value) <= skew


def decrypt_resource(api_v3_key: str, nonce: str, ciphertext: str, associated_data: str) -> str:
    """A notify's `resource`: AEAD_AES_256_GCM with the APIv3 key; the tag is the last 16 bytes."""
    key = api_v3_key.encode("utf-8")
    if len(key) != 32:
        raise DecryptError("the APIv3 key must be 32 bytes")
    try:
        data = base64.b64decode(ciphertext, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptError("ciphertext is not valid base64") from exc
    if len(data) < 17:
        raise DecryptError("ciphertext too short")
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce.encode("utf-8"))
    cipher.update(associated_data.encode("utf-8"))
    try:
        plain = cipher.decrypt_and_verify(data[:-16], data[-16:])
    except ValueError as exc:
        raise DecryptError("resource failed authentication (wrong key or tampered)") from exc
    return plain.decode("utf-8")


def encrypt_resource(api_v3_key: str, nonce: str, plaintext: str, associated_data: str) -> str:
    """What WeChat Pay does to a notify resource (the sandbox uses it)."""
    cipher = AES.new(api_v3_key.encode("utf-8"), AES.MODE_GCM, nonce=nonce.encode("utf-8"))
    cipher.update(associated_data.encode("utf-8"))
    ciphertext, tag = cipher.encrypt_and_digest(plaintext.encode("utf-8"))
    return base64.b64encode(ciphertext + tag).decode()


def jsapi_params(
    appid: str,
    prepay_id: str,
    private_key_pem: str,
    nonce_str: str | None = None,
    timestamp: str | int | None = None,
) -> dict[str, str]:
    """wx.requestPayment for v3: signType RSA, paySign over appId\\ntimeStamp\\nnonceStr\\npackage\\n."""
    params = {
        "appId": appid,
        "timeStamp": str(int(time.time()) if timestamp is None else timestamp),
        "nonceStr": nonce_str or secrets.token_hex(16),
        "package": f"prepay_id={prepay_id}",
        "signType": "RSA",
    }
    message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    params["paySign"] = sign_message(private_key_pem, message)
    return params
