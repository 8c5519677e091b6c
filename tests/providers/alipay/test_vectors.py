"""Signing, verification and certificate SNs against values PUBLISHED by others (vectors/SOURCES.md):
nothing expected here was computed by this code base."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import textwrap

import pytest

from providers.alipay import certs, signing
from providers.alipay.client import CHINA
from providers.rsa import verify_sha256
from providers.trades import InvalidNotify
from providers.wechatpay.keys import public_key_pem
from tests.providers.alipay.fakes import VECTORS, client


def _bare_key(base64_text: str) -> str:
    return (
        "-----BEGIN PUBLIC KEY-----\n"
        + "\n".join(textwrap.wrap(base64_text.strip(), 64))
        + "\n-----END PUBLIC KEY-----\n"
    )


# --- certificate SNs ------------------------------------------------------------------------------------

ROOT_SN = "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"


@pytest.mark.parametrize(
    ("name", "sn"),
    [
        # alipay/alipay-sdk-nodejs-all test/antcertutil.test.ts
        ("appCertPublicKey_2021001161683774.crt", "866efef280dec9137a87d047ac446315"),
        ("alipayCertPublicKey_RSA2.crt", "7513daaaa48aa3ba2e4018d84402479c"),
        # yansongda/pay tests/CertManagerTest.php
        ("alipayAppPublicCert.crt", "e90dd23a37c5c7b616e003970817ff82"),
    ],
)
def test_cert_sn_matches_published_values(name, sn):
    assert certs.cert_sn((VECTORS / name).read_text()) == sn


def test_root_cert_sn_of_alipays_bundle_skips_sm2_ecdsa_and_unloadable_certificates():
    # yansongda/pay tests/CertManagerTest.php and alipay/alipay-sdk-nodejs-all test/antcertutil.test.ts
    bundle = (VECTORS / "alipayRootCert.crt").read_text()
    assert certs.root_cert_sn(bundle) == ROOT_SN
    broken = "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n\n"
    assert certs.root_cert_sn(broken + bundle + broken) == ROOT_SN
    ecdsa_only = bundle.split("-----END CERTIFICATE-----")[2] + "-----END CERTIFICATE-----\n"
    assert certs.root_cert_sn(ecdsa_only) == ""


def test_the_public_key_of_alipays_certificate_matches_the_published_one():
    # alipay/alipay-sdk-nodejs-all test/antcertutil.test.ts publicKeyVal
    published = (
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAhoVesfcGvUv1XvUndmX0rmSZ/2posJBCooySbSVFpV79RtHMzrVz2aKkC3WvOXeT5"
        "iNeQK4mK8gp3vNkWrHTkQGx5BcmkeO1WS384CQde7dAS0gmxeFs5bs+cCQqV2A2c2R9/5rJMtFtp1Ot/rIiMBUn6Ei0UoztM7AneavqQEzSwY"
        "lCKNhPFFtHCiz7u4O5R9CIyvUmYr+zpem2HXBN9ygPAZ0aXBQipGbc45+G07ZCNsmY4hV/Igya1aBf+Ye8p10Ew8uBBri0sIknhSC2LqKKy2IH"
        "1fO6q1d1jhN240QRHvbpRNv60kAfZsEulBASBrCMBi49NiJyr5nre7SNywIDAQAB"
    )
    pem = public_key_pem((VECTORS / "alipayCertPublicKey_RSA2.crt").read_text())
    assert "".join(pem.splitlines()[1:-1]) == published


def test_cert_sn_of_something_else_is_a_value_error():
    with pytest.raises(ValueError):
        certs.cert_sn("not a certificate")


# --- request signature ----------------------------------------------------------------------------------


def test_request_sign_matches_yansongda_pays_published_signature():
    # yansongda/pay tests/Plugin/Alipay/SignPluginTest.php::testNormal (its app_secret_cert)
    params = {
        "app_id": "2016082000295641",
        "method": "alipay.trade.query",
        "format": "JSON",
        "return_url": "http://127.0.0.1:8000/alipay/verify",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": "2021-06-07 21:54:50",
        "version": "1.0",
        "app_cert_sn": "fb5e86cfb784de936dd3594e32381cf8",
        "alipay_root_cert_sn": ROOT_SN,
        "biz_content": signing.compact_json({"out_trade_no": "yansongda-1622986519"}),
    }
    published = (
        "QMh6CzKWIt5yIYCrYrMdC2/Mt+4lTNEaPN0biIZPuiWzgTS7pyIYFOmb+dEi70X5q9UaCBlejwwwTEzRtfIjudPu/mIrlpnwsN8mEhDjyZ"
        "ihmgb/wCZy+kR0OIwvZjTd/3AuALIcwDbhZqDwssZAOTlco4eE7WosEdsob52OfCBAn0ZEf/9zZk5+FSbL8xbwO9hTlspl5ArgFBf9RryBx"
        "AviC09Nr5eSNdwYBIyOUdLtEVHBuHHvwa4UfiCFe0SyDFVQODgoz3Mjcs5d4RmJqKNLorkN8dHzjzlAnCR07EHsMzV4ivNG703hReHMyazP"
        "DuaWBg11/spMJUNUF/tEBQ=="
    )
    assert signing.sign(params, (VECTORS / "yansongda-app-secret-key.pem").read_text()) == published


# --- a notify Alipay sent -------------------------------------------------------------------------------

# alipay/alipay-sdk-nodejs-all test/alipay.test.ts, checkNotifySign "verify sign should delete sign_type":
# a real TRADE_SUCCESS notify. fund_bill_list is written there as a JS array; the form carries its JSON text.
PUBLISHED_NOTIFY = {
    "gmt_create": "2019-08-15 15:56:22",
    "charset": "utf-8",
    "seller_email": "z97-yuquerevenue@service.aliyun.com",
    "subject": "语雀空间 500人规模",
    "sign": "QfTb8tqE1BMhS5qAnXtvsF3/jBkEvu9q9en0pdbBUDDjvKycZhQb7h8GDs4FKfi049PynaNuatxSgLb/nLWZpXyyh0LEWdK2S6Ri7nPwrV"
    "gOs08zugLO20vOQz44y3ti2Ncm8/wZts1Fr2gZ7pShnVX3d1B50hbsXnObT1r/U8ONNQjWXd0HIul4TG+Q3fm3svmSvFEy0WnzuhcyHPX5Gm4E"
    "LNctL6Qd5YniGJFNcc7kopHYtI/XD9YCKCH6Ct02rzUs9i11C9CsadtZn+WhxF26Dqt9sGEFajkJ8cxUTLi8+VCpLHsgPE8P0y095uQcDdK0"
    "YjCh4x7wVSov+lrmOQ==",
    "buyer_id": "2088102534368455",
    "invoice_amount": "0.10",
    "notify_id": "2019081500222155624068450559358070",
    "fund_bill_list": '[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]',
    "notify_type": "trade_status_sync",
    "trade_status": "TRADE_SUCCESS",
    "receipt_amount": "0.10",
    "buyer_pay_amount": "0.10",
    "sign_type": "RSA2",
    "app_id": "2019073166072302",
    "seller_id": "2088531891668739",
    "gmt_payment": "2019-08-15 15:56:24",
    "notify_time": "2019-08-15 15:56:25",
    "version": "1.0",
    "out_trade_no": "20190815155618536-564-57",
    "total_amount": "0.10",
    "trade_no": "2019081522001468450512505578",
    "auth_app_id": "2019073166072302",
    "buyer_logon_id": "xud***@126.com",
    "point_amount": "0.00",
}


def _notify_key() -> str:
    return _bare_key((VECTORS / "alipay-notify-sign-public-key-v1.txt").read_text())


def test_a_published_alipay_notify_verifies_without_sign_type():
    assert signing.verify(PUBLISHED_NOTIFY, _notify_key())
    assert signing.verify({k: v for k, v in PUBLISHED_NOTIFY.items() if k != "sign_type"}, _notify_key())
    assert not signing.verify({**PUBLISHED_NOTIFY, "total_amount": "0.11"}, _notify_key())
    # signed content with sign_type kept is not what Alipay signed
    content = signing.sign_content(PUBLISHED_NOTIFY)
    assert not verify_sha256(_notify_key(), content, PUBLISHED_NOTIFY["sign"])


def test_the_client_parses_the_published_notify():
    alipay = client(app_id="2019073166072302", seller_id="2088531891668739")
    alipay.config = dataclasses.replace(alipay.config, alipay_public_key_pem=_notify_key())
    notify = alipay.parse_notify(PUBLISHED_NOTIFY)
    assert notify.event_id == "2019081500222155624068450559358070" and notify.trade is not None
    trade = notify.trade
    assert (trade.out_trade_no, trade.state, trade.amount) == ("20190815155618536-564-57", "SUCCESS", 10)
    assert (trade.appid, trade.mchid, trade.payer_openid) == (
        "2019073166072302",
        "2088531891668739",
        "2088102534368455",
    )
    assert trade.success_time == dt.datetime(2019, 8, 15, 15, 56, 24, tzinfo=CHINA)
    with pytest.raises(InvalidNotify):
        alipay.parse_notify({**PUBLISHED_NOTIFY, "total_amount": "10.00"})


# --- answers Alipay sent --------------------------------------------------------------------------------

# alipay/alipay-sdk-nodejs-all test/alipay.test.ts, checkResponseSign "should work" (recorded from the
# sandbox; verified by test/fixtures/alipay-public-key.pem of commit bf1c0261).
PUBLISHED_ANSWER = (
    '{"alipay_open_file_upload_response":{"code":"10000","msg":"Success","file_id":"CAxAToWB1JsAAAAAAAAAAAAADgSLAQBr"},'
    '"sign":"F+LDzpTNiavn7xVZPGuPCSSVRSmWzJGgtuji6tVELGEaqMaNj0jRKXUEr5nloZJBBmwEnddOyCjjepMmrTKTvoOqQ0Efxpr/R1iEeHTH'
    "Vbb/Q8TTh6Up5gHJDkILdaWS2q1cWeQ6VT+HQY9P3WRXS7uhILHuDODIhpAyCu5KhWGt0rMCIG+Im6NODJP2oohtSCtmTFXg58HH587Z2y2bdb"
    "jzOxLvzD9IrU1imghXQ2S/Q+wMIvRk9on6cWnBLkrNvJKapA2ReNGWOwyuASvB9zDVzhMPbR+3mfRGkVDxsq5HYLjBKGskJMXHw0HuugZij6Sc"
    'RuaLPODhmHwr/pJ9yw=="}'
)


def test_a_published_alipay_answer_verifies_over_its_raw_text():
    key = (VECTORS / "alipay-public-key-2016073100135823.pem").read_text()
    answer = signing.verify_response(PUBLISHED_ANSWER, "alipay.open.file.upload", key)
    assert answer == {"code": "10000", "msg": "Success", "file_id": "CAxAToWB1JsAAAAAAAAAAAAADgSLAQBr"}
    with pytest.raises(signing.ResponseError):
        signing.verify_response(PUBLISHED_ANSWER.replace("CAxA", "CAxB"), "alipay.open.file.upload", key)


# alipay/alipay-sdk-nodejs-all test/alipay.test.ts, getSignStr(): the signed part of an answer is cut out
# as sent, its "\/" escapes, inner "sign" members and surrounding whitespace as they are.
IMAGE = "alipay.offline.material.image.upload"
IMAGE_SIGNED = (
    r'{"code":"10000","msg":"Success","image_id":"Zp1Nm6FDTZaEuSSniGd5awAAACMAAQED","image_url":"http:\/\/oalipay-dl-'
    r'django.alicdn.com\/rest\/1.0\/image?fileIds=Zp1Nm6FDTZaEuSSniGd5awAAACMAAQED&zoom=original"}'
)
IMAGE_SIGN = (
    "P8xrBWqZCUv11UrEBjhQ4Sk3hyj4607qehO2VbKIS0hWa4U+NeLlOftqTyhGv+x1lzfqN590Y/8CaNIzEEg06FiNWJlUFM/uEFJLzSKGse4Mj"
    "HbblpiSzI3eCV5RzxH26wZbEd9wyVYYi0pHFBf35UrBva47g7b5EuKCHfoVA95/zin9fAyb3xhhiHhmfGaWIDV/1LmE2vtqtOHQnISbY/deC71U"
    "614ySZ3YB97ws8npCcCJ+tgZvhHPkMRGvmyYPCRDB/aIN/sKDSLtfPp0u8DxE8pHLvCHm3wR84MQxqNbKgpd8NTKNvH+obELsbCrqPhjW7qI486"
    "34qx6enDupw=="
)


def test_the_signed_part_is_cut_out_as_sent():
    compact = f'{{"alipay_offline_material_image_upload_response":{IMAGE_SIGNED},"sign":"{IMAGE_SIGN}"}}'
    assert signing.signed_part(compact, IMAGE) == (IMAGE_SIGNED, IMAGE_SIGN)
    spaced = (
        f'{{"alipay_offline_material_image_upload_response"\n        :\n        {IMAGE_SIGNED},\n\n'
        f'          "sign"  :  "{IMAGE_SIGN}"}}'
    )
    assert signing.signed_part(spaced, IMAGE) == (IMAGE_SIGNED, IMAGE_SIGN)
    inner_sign = IMAGE_SIGNED.replace('"code":"10000",', '"code":"10000","sign":"xxx",')
    with_inner = f'{{"alipay_offline_material_image_upload_response":{inner_sign},"sign":"{IMAGE_SIGN}"}}'
    assert signing.signed_part(with_inner, IMAGE) == (inner_sign, IMAGE_SIGN)


# --- a return redirect Alipay's sandbox signed -------------------------------------------------------------

# yige142/ceshiyong alipay_sd/return_url.php, verified by that app's Alipay public key (alipay_sd/config.php).
PUBLISHED_RETURN = json.loads((VECTORS / "alipay-sandbox-return-2016073100136265.json").read_text())


def _return_key() -> str:
    return _bare_key((VECTORS / "alipay-sandbox-public-key-2016073100136265.txt").read_text())


def test_a_return_alipays_sandbox_signed_keeps_sign_type_in_the_signed_string():
    assert verify_sha256(_return_key(), signing.sign_content(PUBLISHED_RETURN), PUBLISHED_RETURN["sign"])
    # Not what the documented rule (sign_type left out, as for notifies) gives.
    assert not signing.verify(PUBLISHED_RETURN, _return_key())


def test_the_client_takes_the_published_return_and_refuses_it_tampered():
    alipay = client(app_id="2016073100136265", seller_id="2088102169356454")
    alipay.config = dataclasses.replace(alipay.config, alipay_public_key_pem=_return_key())
    assert alipay.verify_return(PUBLISHED_RETURN) == "202082810289298"
    for changes in ({"total_amount": "0.01"}, {"out_trade_no": "202082810289299"}, {"sign_type": "RSA"}):
        with pytest.raises(InvalidNotify):
            alipay.verify_return({**PUBLISHED_RETURN, **changes})


def test_request_sign_matches_alipays_php_sdks_logged_signature():
    """yige142/ceshiyong alipay_sd/log.txt: the form Alipay's PHP SDK posted for a page pay, with the
    app key of alipay_sd/config.php."""
    body = (VECTORS / "app-private-key-2016073100136265.txt").read_text().strip()
    key = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(textwrap.wrap(body, 64)) + "\n-----END RSA PRIVATE KEY-----\n"
    params = {
        "biz_content": '{"product_code":"FAST_INSTANT_TRADE_PAY","body":"1","subject":"测试",'
        '"total_amount":"0.01","out_trade_no":"2020827145330125"}',
        "app_id": "2016073100136265",
        "version": "1.0",
        "format": "json",
        "sign_type": "RSA2",
        "method": "alipay.trade.page.pay",
        "timestamp": "2020-08-27 14:53:37",
        "alipay_sdk": "alipay-sdk-php-20161101",
        "notify_url": "http://www.yige142.cn/alipay_sd/notify_url.php",
        "return_url": "http://www.yige142.cn/alipay_sd/return_url.php",
        "charset": "UTF-8",
    }
    assert signing.sign(params, key) == (
        "rP4DJNbssDSU5nOb4UKVMN0qUHZhk/SaZj7fT1l+u5IUwNKoRNITnG0t07fAsZPNpwwF3m6TwYdSmFTLNL4eEx0iPQqwkSbvFU3B/BaL3Uzwq"
        "Ue6Pksl9KO/H/2dF4L7b4xPdoJ3croOBoivD49GCgoTA8fPSs1Z3ysn5fsvwuvYuYnrL3HnEDsqp4AzLe20bjgIZF/tvydOP2KQdFnAwWM4K7u"
        "DopbK7hDnzrIyoqU9Dg7mxm0FuGbOwyN6sexsqfaxZCkn2PnSrz+9rZf2eRORvU8dZqXy/HDH+MukJ6X0xMR4FYw7u7eQdWF5cxPfnEcgM5dMk"
        "gDO0e0+hdPSbQ=="
    )
