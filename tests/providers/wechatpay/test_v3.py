"""providers.wechatpay.v3: signatures, the Authorization header, encrypted resources and the timestamp window."""

import base64
import json

import pytest
from Crypto.PublicKey import RSA

from providers.wechat.crypto import DecryptError
from providers.wechatpay import v3


@pytest.fixture(scope="module")
def rsa_pair():
    key = RSA.generate(2048)
    return key.export_key().decode(), key.public_key().export_key().decode()


def test_v3_sign_and_verify(rsa_pair):
    private, public = rsa_pair
    body = '{"id":"EV-1","resource":{}}'
    signature = v3.sign_message(private, f"1554208460\nnonce123\n{body}\n")
    assert v3.verify_signature(public, "1554208460", "nonce123", body, signature)
    assert not v3.verify_signature(public, "1554208460", "nonce123", body + " ", signature)
    assert not v3.verify_signature(public, "1554208461", "nonce123", body, signature)
    assert not v3.verify_signature(public, "1554208460", "nonce123", body, "bm90IGEgc2lnbmF0dXJl")
    assert not v3.verify_signature(public, "1554208460", "nonce123", body, "%%%")
    other_public = RSA.generate(2048).public_key().export_key().decode()
    assert not v3.verify_signature(other_public, "1554208460", "nonce123", body, signature)


def test_v3_signtest_probe_never_verifies(rsa_pair):
    private, public = rsa_pair
    signature = v3.sign_message(private, "1\nn\nb\n")
    assert not v3.verify_signature(public, "1", "n", "b", "WECHATPAY/SIGNTEST/" + signature)


def test_v3_authorization_header(rsa_pair):
    private, public = rsa_pair
    header = v3.authorization(
        mchid="1900000001",
        serial_no="ABC",
        private_key_pem=private,
        method="POST",
        url_path="/v3/pay/transactions/jsapi",
        body='{"a":1}',
        timestamp="1554208460",
        nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",
    )
    assert header.startswith(
        'WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",'
    )
    signature = header.split('signature="')[1].split('"')[0]
    message = 'POST\n/v3/pay/transactions/jsapi\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n{"a":1}\n'
    assert v3.sign_message(private, message) == signature  # PKCS#1 v1.5 is deterministic
    assert header.endswith('timestamp="1554208460",serial_no="ABC"')


def test_v3_resource_round_trip_and_tamper():
    key = "a" * 32
    plain = json.dumps({"out_trade_no": "T1", "amount": {"total": 1}})
    ciphertext = v3.encrypt_resource(key, "0123456789ab", plain, "transaction")
    assert v3.decrypt_resource(key, "0123456789ab", ciphertext, "transaction") == plain
    with pytest.raises(DecryptError):
        v3.decrypt_resource(key, "0123456789ab", ciphertext, "other-ad")
    with pytest.raises(DecryptError):
        v3.decrypt_resource("b" * 32, "0123456789ab", ciphertext, "transaction")
    raw = bytearray(base64.b64decode(ciphertext))
    raw[0] ^= 1
    with pytest.raises(DecryptError):
        v3.decrypt_resource(key, "0123456789ab", base64.b64encode(bytes(raw)).decode(), "transaction")
    with pytest.raises(DecryptError):
        v3.decrypt_resource("short", "0123456789ab", ciphertext, "transaction")


def test_v3_timestamp_window():
    assert v3.timestamp_fresh("1000", now=1000 + 299)
    assert not v3.timestamp_fresh("1000", now=1000 + 301)
    assert not v3.timestamp_fresh("1000", now=1000 - 301)
    assert not v3.timestamp_fresh("soon", now=1000)


def test_v3_jsapi_params(rsa_pair):
    private, public = rsa_pair
    params = v3.jsapi_params(
        "wx1", "wx201410272009395522657a690389285100", private, nonce_str="n1", timestamp=1414561699
    )
    assert params["signType"] == "RSA"
    message = "wx1\n1414561699\nn1\nprepay_id=wx201410272009395522657a690389285100\n"
    # verify_signature checks "ts\nnonce\nbody\n"; rebuild the same three-line framing around the message.
    lines = message.split("\n")
    assert v3.verify_signature(public, lines[0], lines[1], "\n".join(lines[2:4]), params["paySign"])
