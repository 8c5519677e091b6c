"""Platform certificates (older merchants) and PEM inputs, with a certificate made for these tests."""

import json
import time
from pathlib import Path

import pytest
from Crypto.PublicKey import RSA

from providers.http import HttpConfig, make_session
from providers.wechatpay import v3
from providers.wechatpay.keys import certificate_serial, pem_text, public_key_pem
from providers.wechatpay.types import InvalidNotify, WechatPayConfig
from providers.wechatpay.v3_client import WechatPayV3Client

DATA = Path(__file__).parent / "data"
CERT = (DATA / "platform_cert.pem").read_text()
KEY = (DATA / "platform_key.pem").read_text()
# `openssl x509 -noout -serial` of the test certificate
SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F4A9D6"


def test_certificate_serial_is_read_as_wechat_pay_writes_it():
    assert certificate_serial(CERT) == SERIAL


def test_public_key_of_a_certificate_matches_its_private_key():
    assert public_key_pem(CERT) == RSA.import_key(KEY).public_key().export_key().decode()


def test_pem_text_accepts_text_escaped_newlines_and_paths():
    assert pem_text(CERT) == CERT.strip()
    assert pem_text(CERT.strip().replace("\n", "\\n")) == CERT.strip()
    assert pem_text(str(DATA / "platform_cert.pem")) == CERT
    assert pem_text("") == ""
    with pytest.raises(ValueError):
        pem_text("/no/such/file.pem")
    with pytest.raises(ValueError):
        certificate_serial(KEY)


def _client():
    config = WechatPayConfig(
        appid="wx1",
        mchid="1900000109",
        api_v3_key="k" * 32,
        platform_keys={certificate_serial(CERT): public_key_pem(CERT)},
    )
    return WechatPayV3Client(config, make_session(HttpConfig()), HttpConfig())


def _notify(serial):
    resource = {
        "appid": "wx1",
        "mchid": "1900000109",
        "out_trade_no": "T1",
        "trade_state": "SUCCESS",
        "transaction_id": "42001",
        "amount": {"total": 1},
    }
    body = json.dumps(
        {
            "id": "EV1",
            "event_type": "TRANSACTION.SUCCESS",
            "resource": {
                "ciphertext": v3.encrypt_resource("k" * 32, "n" * 12, json.dumps(resource), "transaction"),
                "nonce": "n" * 12,
                "associated_data": "transaction",
            },
        }
    )
    timestamp = str(int(time.time()))
    headers = {
        "Wechatpay-Serial": serial,
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": "abc",
        "Wechatpay-Signature": v3.sign_message(KEY, f"{timestamp}\nabc\n{body}\n"),
    }
    return headers, body.encode()


def test_v3_notify_signed_by_a_platform_certificate_verifies_by_its_serial():
    headers, body = _notify(SERIAL)
    notify = _client().parse_notify(headers, body)
    assert notify.trade is not None and notify.trade.transaction_id == "42001"


def test_v3_notify_naming_another_serial_is_refused():
    headers, body = _notify("0" * 40)
    with pytest.raises(InvalidNotify):
        _client().parse_notify(headers, body)
