"""The fuzz suite's notify half: hypothesis sends the three WeChat Pay notify endpoints what arrives from
the internet (random bytes, deep and wide XML, DOCTYPEs and entities, JSON that is no object, missing and
odd Wechatpay-* headers, non-UTF-8, wrong content types, every method). Only WeChat Pay's documented
answers come back, never a 5xx, a traceback or a secret, and nothing in the database changes.

Bounded for CI (FUZZ_EXAMPLES per endpoint, 200 by default, the same examples on every run); raise it and
set FUZZ_RANDOM=1 to dig deeper by hand. Later notify endpoints (Alipay, the official account) join here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from payments.models import Order, PaymentEvent, Refund
from providers.wechatpay import v2
from tests.helpers import fuzz_settings
from tests.payments.notify_bodies import V2_PATH, V2_REFUND_PATH, V3_PATH, paid_at_sandbox

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
CONTENT_TYPES = ["text/xml", "application/json", "application/xml", "text/plain", "multipart/form-data", ""]

_text = st.text(max_size=40)
# Values that broke notify endpoints elsewhere: non-ASCII, direction marks, long ids, markup.
_hostile_text = st.sampled_from(["é", "É" * 64, "漢字", "\u202e", "4" * 200, "o" * 200, "' OR 1=1", "<", ""]) | _text
_xml_name = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)


@st.composite
def _xml(draw: Any) -> bytes:
    """XML-shaped bodies: flat and plausible, deep, wide, or with a DTD."""
    kind = draw(st.sampled_from(["flat", "deep", "wide", "doctype", "cdata"]))
    if kind == "deep":
        depth = draw(st.integers(1, 5000))
        return ("<xml>" + "<a>" * depth + "</a>" * depth + "</xml>").encode()
    if kind == "wide":
        return ("<xml>" + "<a>1</a>" * draw(st.integers(1, 5000)) + "</xml>").encode()
    if kind == "doctype":
        entity = draw(st.sampled_from(['SYSTEM "file:///etc/passwd"', '"&lol;&lol;"', 'SYSTEM "http://10.0.0.1/"']))
        return f'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x {entity}>]><xml><a>&x;</a></xml>'.encode()
    fields = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "return_code",
                    "result_code",
                    "sign",
                    "appid",
                    "mch_id",
                    "out_trade_no",
                    "total_fee",
                    "transaction_id",
                    "sign_type",
                    "req_info",
                    "openid",
                ]
            )
            | _xml_name,
            _text,
            max_size=12,
        )
    )
    # Most notifies say they succeeded, so that verification (not the first check) meets the rest.
    fields["return_code"] = draw(st.sampled_from(["SUCCESS", "SUCCESS", "SUCCESS", "FAIL"]) | _text)
    if kind == "cdata":
        return ("<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()) + "</xml>").encode(
            "utf-8", "surrogatepass"
        )
    return v2.to_xml(fields) if all(v.isprintable() for v in fields.values()) else b"<xml/>"


@st.composite
def _notify_xml(draw: Any) -> bytes:
    """A notify's own fields, each with a hostile value: what gets past parsing to verification and lookups."""
    names = ["sign", "sign_type", "appid", "mch_id", "out_trade_no", "total_fee", "transaction_id", "req_info"]
    fields = {"return_code": "SUCCESS", "result_code": "SUCCESS"}
    fields.update({name: draw(_hostile_text) for name in names if draw(st.booleans())})
    return v2.to_xml(fields)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
).map(lambda value: json.dumps(value).encode())

_bodies = st.one_of(
    _notify_xml(),
    st.binary(max_size=2048),
    _xml(),
    _json,
    st.binary(min_size=1, max_size=64).map(lambda b: b"\xff\xfe" + b),  # not UTF-8
    st.just(b'{"resource": {"ciphertext": "AAAA", "nonce": "n", "associated_data": "transaction"}}'),
    st.sampled_from(
        [
            b'<?xml version="1.0" encoding="x-nope"?><xml/>',  # an encoding expat does not know
            '<?xml version="1.0" encoding="utf-16"?><xml><return_code>SUCCESS</return_code></xml>'.encode("utf-16"),
            b"<xml><return_code>SUCCESS</return_code><sign>\xff</sign></xml>",
        ]
    ),
)
_header_value = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "HTTP_WECHATPAY_TIMESTAMP": st.one_of(_header_value, st.integers().map(str)),
        "HTTP_WECHATPAY_NONCE": _header_value,
        "HTTP_WECHATPAY_SIGNATURE": st.one_of(_header_value, st.just("WECHATPAY/SIGNTEST/abc")),
        "HTTP_WECHATPAY_SERIAL": st.one_of(_header_value, st.just(settings.WECHATPAY_PUBLIC_KEY_ID)),
    },
)
SECRETS = [
    settings.WECHATPAY_API_KEY,
    settings.WECHATPAY_API_V3_KEY,
    settings.SECRET_KEY,
    settings.JWT_SECRET,
    settings.WECHAT_MINIPROGRAM_SECRET,
]


def _database() -> list[Any]:
    return [list(model.objects.order_by("pk").values()) for model in (Order, Refund, PaymentEvent)]


@pytest.mark.parametrize("path", [V2_PATH, V2_REFUND_PATH, V3_PATH])
def test_whatever_arrives_gets_a_documented_answer_and_changes_nothing(
    products, buyer, wechatpay_sandbox, caplog, path
):
    paid_at_sandbox(buyer, "V3")  # an order a notify could name
    client = Client()

    # POST, which WeChat Pay sends, most of the time: the other methods are refused before the body is read.
    methods = st.just("POST") | st.sampled_from(METHODS)

    @given(method=methods, content_type=st.sampled_from(CONTENT_TYPES), body=_bodies, headers=_headers)
    @fuzz_settings(200)
    def send(method: str, content_type: str, body: bytes, headers: dict[str, str]) -> None:
        before = _database()
        caplog.clear()
        response = client.generic(method, path, body, content_type=content_type, **headers)
        # Refused as what it is (a warning at most), never caught as an unexpected error.
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [], body[:200]
        status, content = response.status_code, response.content
        assert status < 500, (status, content[:300])
        assert b"Traceback" not in content and not any(s.encode() in content for s in SECRETS if s)
        if method != "POST":
            assert status == 405
        elif path == V3_PATH:
            # WeChat Pay v3: 4xx with {"code": "FAIL", "message": ...}.
            assert 400 <= status < 500 and json.loads(content)["code"] == "FAIL", (status, content[:300])
        else:
            # WeChat Pay v2: 200 with the FAIL answer (return_code is what it reads, not the status).
            assert status == 200 and v2.parse_xml(content)["return_code"] == "FAIL", content[:300]
        assert _database() == before

    send()
