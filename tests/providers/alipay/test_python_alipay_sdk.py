"""Cross-checks with python-alipay-sdk (a test-only oracle): RSA PKCS#1 v1.5 is deterministic, so for the
same key and parameters its signatures and order strings must be byte-identical to ours, and each side
must accept what the other signed. Where no published vector exists this is the independent check."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import alipay as python_alipay_sdk
import pytest
from alipay import AliPay, DCAliPay

from providers.alipay import certs, signing
from providers.alipay import client as client_module
from providers.rsa import sign_sha256, verify_sha256
from tests.providers.alipay.fakes import (
    ALIPAY_KEY,
    ALIPAY_PUBLIC,
    APP_ID,
    APP_KEY,
    APP_PUBLIC,
    EXPIRES,
    GATEWAY,
    NOW,
    VECTORS,
    Gateway,
    client,
    notify_form,
    signed_answer,
)

TIMESTAMP = "2024-05-01 20:00:00"  # NOW in Asia/Shanghai


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "now", lambda: NOW)

    class Shanghai(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Shanghai:  # type: ignore[override]
            return cls(2024, 5, 1, 20, 0, 0)

    monkeypatch.setattr(python_alipay_sdk, "datetime", Shanghai)


def _sdk(private_key: str = APP_KEY, public_key: str = ALIPAY_PUBLIC) -> AliPay:
    return AliPay(appid=APP_ID, app_private_key_string=private_key, alipay_public_key_string=public_key)


def _params(signed: str) -> dict[str, str]:
    return dict(parse_qsl(signed, strict_parsing=True))


def _order_biz(product_code: str) -> dict[str, Any]:
    # the key order ours writes (json.dumps keeps it): subject, out_trade_no, total_amount, product_code, ...
    return {
        "subject": "Coffee",
        "out_trade_no": "T1",
        "total_amount": "18.00",
        "product_code": product_code,
        "time_expire": "2024-05-01 20:30:00",
    }


def test_signatures_are_byte_identical():
    params = {
        "app_id": APP_ID,
        "method": "alipay.trade.query",
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": TIMESTAMP,
        "version": "1.0",
        "biz_content": '{"out_trade_no":"T1"}',
    }
    theirs = _params(_sdk().sign_data(dict(params)))["sign"]
    assert theirs == signing.sign(params, APP_KEY)


def test_app_order_string_is_byte_identical():
    ours = client().app_order_string(
        out_trade_no="T1", total=1800, subject="Coffee", notify_url="https://shop.example/n", time_expire=EXPIRES
    )
    theirs = _sdk().client_api(
        "alipay.trade.app.pay",
        _order_biz("QUICK_MSECURITY_PAY"),
        notify_url="https://shop.example/n",
        format="JSON",
        timestamp=TIMESTAMP,
    )
    assert ours == theirs


def test_page_pay_matches_api_alipay_trade_page_pay():
    ours = _params(
        urlsplit(
            client().page_pay_url(
                out_trade_no="T1",
                total=1800,
                subject="Coffee",
                return_url="https://shop.example/r",
                notify_url="https://shop.example/n",
                time_expire=EXPIRES,
            )
        ).query
    )
    theirs = _params(
        _sdk().api_alipay_trade_page_pay(
            "Coffee",
            "T1",
            "18.00",
            return_url="https://shop.example/r",
            notify_url="https://shop.example/n",
            time_expire="2024-05-01 20:30:00",
        )
    )
    # python-alipay-sdk leaves out the optional `format`; everything else is the same, and its signature
    # is over the content our sign_content builds.
    assert {k: v for k, v in ours.items() if k not in ("format", "sign")} == {
        k: v for k, v in theirs.items() if k != "sign"
    }
    assert verify_sha256(APP_PUBLIC, signing.sign_content(theirs), theirs["sign"])
    with_format = _params(
        _sdk().client_api(
            "alipay.trade.page.pay",
            _order_biz("FAST_INSTANT_TRADE_PAY"),
            return_url="https://shop.example/r",
            notify_url="https://shop.example/n",
            format="JSON",
        )
    )
    assert ours == with_format


@pytest.mark.filterwarnings("ignore:X509.get_issuer is deprecated:DeprecationWarning")
def test_cert_mode_sns_and_request_match_dcalipay():
    app_cert = (VECTORS / "appCertPublicKey_2021001161683774.crt").read_text()
    alipay_cert = (VECTORS / "alipayCertPublicKey_RSA2.crt").read_text()
    root = (VECTORS / "alipayRootCert.crt").read_text()
    dc = DCAliPay(
        appid=APP_ID,
        app_private_key_string=APP_KEY,
        app_public_key_cert_string=app_cert,
        alipay_public_key_cert_string=alipay_cert,
        alipay_root_cert_string=root,
    )
    assert dc.app_cert_sn == certs.cert_sn(app_cert)
    assert dc.alipay_root_cert_sn == certs.root_cert_sn(root)
    assert DCAliPay.get_cert_sn(alipay_cert) == certs.cert_sn(alipay_cert)
    alipay = client(
        app_cert_sn=certs.cert_sn(app_cert),
        alipay_root_cert_sn=certs.root_cert_sn(root),
        alipay_cert_sn=certs.cert_sn(alipay_cert),
    )
    ours = alipay.app_order_string(out_trade_no="T1", total=1800, subject="Coffee", notify_url="", time_expire=EXPIRES)
    theirs = dc.client_api("alipay.trade.app.pay", _order_biz("QUICK_MSECURITY_PAY"), format="JSON")
    assert ours == theirs


def test_each_side_accepts_the_others_notify_signature():
    form = notify_form()
    unsigned = {k: v for k, v in form.items() if k != "sign"}
    assert _sdk(public_key=ALIPAY_PUBLIC).verify(dict(unsigned), form["sign"])
    assert not _sdk(public_key=ALIPAY_PUBLIC).verify({**unsigned, "total_amount": "0.01"}, form["sign"])
    # python-alipay-sdk playing Alipay: it signs what it is given (here: without sign_type)
    as_alipay = _sdk(private_key=ALIPAY_KEY, public_key=APP_PUBLIC)
    without_type = {k: v for k, v in unsigned.items() if k != "sign_type"}
    their_sign = _params(as_alipay.sign_data(dict(without_type)))["sign"]
    notify = client().parse_notify({**unsigned, "sign": their_sign})
    assert notify.trade is not None and notify.trade.amount == 1800


def test_each_side_accepts_the_others_answer_signature():
    raw = r'{"code":"10000","msg":"Success","out_trade_no":"T1","qr_code":"https:\/\/qr.alipay.com\/bax01"}'
    ours = signed_answer("alipay.trade.precreate", raw)
    assert _sdk()._verify_and_return_sync_response(ours, "alipay_trade_precreate_response")["qr_code"] == (
        "https://qr.alipay.com/bax01"
    )
    their_sign = _sdk(private_key=ALIPAY_KEY)._sign(raw)
    assert their_sign == sign_sha256(ALIPAY_KEY, raw)
    body = f'{{"alipay_trade_precreate_response":{raw},"sign":"{their_sign}"}}'
    qr = client(Gateway([(200, body)])).precreate(
        out_trade_no="T1", total=1, subject="x", notify_url="", time_expire=EXPIRES
    )
    assert qr == "https://qr.alipay.com/bax01"


def test_gateway_constant_is_used_for_urls():
    assert (
        client()
        .page_pay_url(out_trade_no="T1", total=1, subject="x", return_url="", notify_url="", time_expire=EXPIRES)
        .startswith(GATEWAY + "?")
    )
