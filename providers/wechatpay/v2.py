"""WeChat Pay API v2 wire protocol: XML bodies, MD5 / HMAC-SHA256 signatures, refund-notify decryption."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict
from Crypto.Cipher import AES

from providers.compare import constant_time_equal
from providers.wechat.crypto import DecryptError, pkcs7_unpad

MD5 = "MD5"
HMAC_SHA256 = "HMAC-SHA256"
SIGN_TYPES = (MD5, HMAC_SHA256)
# Notifies and answers are small; anything bigger is refused before parsing.
MAX_XML_BYTES = 64 * 1024


class XmlError(ValueError):
    """The body is not the flat XML document WeChat Pay sends."""


def _string_to_sign(params: Mapping[str, Any], key: str) -> str:
    pairs = sorted((k, str(v)) for k, v in params.items() if k != "sign" and v is not None and str(v) != "")
    return "&".join(f"{k}={v}" for k, v in pairs) + f"&key={key}"


def sign(params: Mapping[str, Any], key: str, sign_type: str = "MD5") -> str:
    """Sorts the non-empty params except `sign`, appends &key=KEY, MD5 or HMAC-SHA256, upper-case hex."""
    message = _string_to_sign(params, key).encode("utf-8")
    if sign_type == "MD5":
        return hashlib.md5(message, usedforsecurity=False).hexdigest().upper()  # noqa: S324 (the protocol)
    if sign_type == "HMAC-SHA256":
        return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest().upper()
    raise ValueError(f"unknown sign_type {sign_type!r}")


def verify(params: Mapping[str, Any], key: str, sign_type: str = "MD5") -> bool:
    if not key:
        return False  # an empty key would make every signature forgeable
    given = params.get("sign")
    if not isinstance(given, str) or not given:
        return False
    return constant_time_equal(given.upper(), sign(params, key, sign_type))


def nonce() -> str:
    return secrets.token_hex(16)


def jsapi_params(
    appid: str,
    prepay_id: str,
    key: str,
    sign_type: str = "MD5",
    nonce_str: str | None = None,
    timestamp: str | int | None = None,
) -> dict[str, str]:
    """Exactly the object wx.requestPayment takes."""
    params = {
        "appId": appid,
        "timeStamp": str(int(time.time()) if timestamp is None else timestamp),
        "nonceStr": nonce_str or nonce(),
        "package": f"prepay_id={prepay_id}",
        "signType": sign_type,
    }
    params["paySign"] = sign(params, key, sign_type)
    return params


def to_xml(params: Mapping[str, Any]) -> bytes:
    """Flat <xml> document; values as CDATA-free text (xmltodict escapes them)."""
    body = {"xml": {k: str(v) for k, v in params.items() if v is not None}}
    text: str = xmltodict.unparse(body, full_document=False)
    return text.encode("utf-8")


def parse_xml(body: bytes) -> dict[str, str]:
    """Parses a flat <xml> document; entity declarations (XXE, billion laughs) are refused."""
    if len(body) > MAX_XML_BYTES:
        raise XmlError("XML body too large")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise XmlError("XML with a DTD or entities is refused")
    try:
        doc = xmltodict.parse(body, disable_entities=True)
    except (ExpatError, ValueError, LookupError) as exc:  # LookupError: an encoding expat does not know
        raise XmlError("malformed XML") from exc
    return _flat(doc, "xml")


def _flat(doc: Any, root_name: str) -> dict[str, str]:
    """The children of <root_name> as strings; nested or repeated elements are refused."""
    root = doc.get(root_name) if isinstance(doc, dict) else None
    if not isinstance(root, dict):
        raise XmlError(f"expected a flat <{root_name}> document")
    flat = {}
    for name, value in root.items():
        if isinstance(value, (dict, list)):
            raise XmlError(f"unexpected nested element <{name}>")
        flat[name] = "" if value is None else str(value)
    return flat


def decrypt_refund_info(req_info: str, key: str) -> dict[str, str]:
    """Refund notify `req_info`: base64 of AES-256-ECB (PKCS#7) keyed by md5(API key) in lower-case hex."""
    try:
        data = base64.b64decode(req_info, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptError("req_info is not valid base64") from exc
    if not data or len(data) % 16:
        raise DecryptError("req_info length is not a whole number of blocks")
    aes_key = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).hexdigest().encode()  # noqa: S324
    plain = pkcs7_unpad(AES.new(aes_key, AES.MODE_ECB).decrypt(data))  # noqa: S305 (the protocol)
    try:
        return _flat(xmltodict.parse(plain, disable_entities=True), "root")
    except (ExpatError, ValueError, LookupError) as exc:  # XmlError is a ValueError
        raise DecryptError("req_info is not a flat <root> XML document") from exc
