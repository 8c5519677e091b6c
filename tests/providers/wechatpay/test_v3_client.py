"""providers.wechatpay.v3_client against the sandbox in-process: the signature type it insists on, and the
key it names so that answers come signed with a key it has."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from django.conf import settings

from config import providers
from providers.http import ProviderUnavailable
from providers.wechatpay.keys import public_key_pem
from providers.wechatpay.types import InvalidNotify
from providers.wechatpay.v3_client import WechatPayV3Client

SIGNATURE_TYPE = "Wechatpay-Signature-Type"


def _client(**changes: object) -> WechatPayV3Client:
    client = providers.wechatpay("V3")
    assert isinstance(client, WechatPayV3Client)
    client.config = dataclasses.replace(client.config, **changes)
    return client


def _signed(body: str) -> dict[str, str]:
    headers = providers.sandbox().providers["wechatpay"].v3_signed_headers(body)
    assert headers[SIGNATURE_TYPE] == "WECHATPAY2-SHA256-RSA2048"
    return headers


def _create(client: WechatPayV3Client, number: str) -> None:
    client.create(
        trade_type="NATIVE",
        out_trade_no=number,
        description="Coffee",
        amount=1800,
        notify_url=f"{settings.PUBLIC_BASE_URL}/notify/wechatpay/v3/",
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30),
    )


def test_an_answer_must_name_wechat_pays_signature_type():
    client, body = _client(), '{"trade_state":"SUCCESS"}'
    headers = _signed(body)
    assert client.verify(headers, body)
    for refused in (
        {**headers, SIGNATURE_TYPE: "SM2-WITH-SM3"},
        {k: v for k, v in headers.items() if k != SIGNATURE_TYPE},
    ):
        assert not client.verify(refused, body)


def test_a_notify_naming_another_signature_type_is_refused_one_naming_none_is_judged_by_its_signature():
    sandbox = providers.sandbox().providers["wechatpay"]
    number = "T-notify-type"
    _create(_client(), number)
    sandbox.pay(number)
    _, headers, body = sandbox.pay_notify(number)
    client = _client()
    with pytest.raises(InvalidNotify, match="signature type"):
        client.parse_notify({**headers, SIGNATURE_TYPE: "SM2-WITH-SM3"}, body)
    untyped = {k: v for k, v in headers.items() if k != SIGNATURE_TYPE}
    notify = client.parse_notify(untyped, body)
    assert notify.trade is not None and notify.trade.out_trade_no == number
    forged = {**untyped, "Wechatpay-Timestamp": str(int(untyped["Wechatpay-Timestamp"]) - 1)}
    with pytest.raises(InvalidNotify):
        client.parse_notify(forged, body)


def test_an_unsigned_type_from_the_provider_fails_the_call(monkeypatch):
    sandbox = providers.sandbox().providers["wechatpay"]
    signed = sandbox.v3_signed_headers

    def untyped(body: str, key_id: str = "") -> dict[str, str]:
        return {k: v for k, v in signed(body, key_id).items() if k != SIGNATURE_TYPE}

    monkeypatch.setattr(sandbox, "v3_signed_headers", untyped)
    with pytest.raises(ProviderUnavailable, match="signature"):
        _create(_client(), "T-untyped")


def test_the_client_names_its_public_key_and_gets_answers_and_notifies_signed_by_it():
    sandbox = providers.sandbox().providers["wechatpay"]
    _create(_client(), "T-public-key")
    order = sandbox.order("T-public-key")
    assert order is not None and order["key_id"] == settings.WECHATPAY_PUBLIC_KEY_ID
    sandbox.pay("T-public-key")
    assert sandbox.pay_notify("T-public-key")[1]["Wechatpay-Serial"] == settings.WECHATPAY_PUBLIC_KEY_ID


def test_with_platform_certificates_only_it_names_no_key_and_verifies_by_the_certificate():
    sandbox = providers.sandbox().providers["wechatpay"]
    certificate = sandbox.certificate
    client = _client(platform_keys={certificate.serial: public_key_pem(certificate.pem)})
    _create(client, "T-certificate")
    trade = client.query("T-certificate")
    assert trade.state == "NOTPAY"
    sandbox.pay("T-certificate")
    _, headers, body = sandbox.pay_notify("T-certificate")
    assert headers["Wechatpay-Serial"] == certificate.serial
    notify = client.parse_notify(headers, body)
    assert notify.trade is not None and notify.trade.state == "SUCCESS"
    # A client that knows only the public key cannot verify what names the certificate.
    assert not _client().verify(headers, body.decode())
