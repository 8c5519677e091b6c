"""SHA256withRSA (PKCS#1 v1.5), base64: WeChat Pay v3 and Alipay's RSA2 both sign with it."""

from __future__ import annotations

import base64
import binascii
import functools

from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA
from Crypto.Signature import pkcs1_15


@functools.lru_cache(maxsize=32)
def _key(pem: str) -> RSA.RsaKey:
    """Parsing a PEM costs more than signing or verifying with it; there are only a few keys."""
    return RSA.import_key(pem)


def sign_sha256(private_key_pem: str, message: str) -> str:
    """The signature of `message` (UTF-8), base64."""
    digest = SHA256.new(message.encode("utf-8"))
    return base64.b64encode(pkcs1_15.new(_key(private_key_pem)).sign(digest)).decode()


def verify_sha256(public_key_pem: str, message: str, signature: str) -> bool:
    """Whether `signature` (base64) is the key's signature of `message`; anything malformed is False."""
    try:
        raw_signature = base64.b64decode(signature, validate=True)
        key = _key(public_key_pem)
    except (binascii.Error, ValueError, IndexError, TypeError):
        return False
    try:
        pkcs1_15.new(key).verify(SHA256.new(message.encode("utf-8")), raw_signature)
    except (ValueError, TypeError):
        return False
    return True
