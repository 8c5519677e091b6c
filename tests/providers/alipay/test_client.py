"""providers.alipay.client against a fake gateway whose answers a test "Alipay" key signs."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from providers.alipay import client as client_module
from providers.alipay import signing
from providers.alipay.client import CHINA, fen, wire_time, yuan
from providers.http import ProviderError, ProviderUnavailable
from providers.rsa import sign_sha256, verify_sha256
from providers.trades import InvalidNotify
from tests.providers.alipay.fakes import (
    ALIPAY_KEY,
    APP_ID,
    APP_KEY,
    APP_PUBLIC,
    EXPIRES,
    GATEWAY,
    NOW,
    SELLER_ID,
    Gateway,
    answer_of,
    client,
    notify_form,
    sign_as_alipay,
    signed_answer,
)

QUERY = "alipay.trade.query"
REFUND = "alipay.trade.refund"
REFUND_QUERY = "alipay.trade.fastpay.refund.query"
CLOSE = "alipay.trade.close"
PRECREATE = "alipay.trade.precreate"


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "now", lambda: NOW)


def _paid(**fields: str) -> dict[str, str]:
    answer = {
        "code": "10000",
        "msg": "Success",
        "buyer_logon_id": "abc***@example.com",
        "buyer_pay_amount": "18.00",
        "buyer_user_id": "2088102169481075",
        "out_trade_no": "T1",
        "send_pay_date": "2024-05-01 20:00:05",
        "total_amount": "18.00",
        "trade_no": "2024050122001400000000000001",
        "trade_status": "TRADE_SUCCESS",
    }
    answer.update(fields)
    return answer


# --- money and time on the wire -----------------------------------------------------------------------


def test_fen_become_two_place_yuan_and_back_without_floats():
    assert [yuan(n) for n in (0, 1, 29, 1800, 123456789)] == ["0.00", "0.01", "0.29", "18.00", "1234567.89"]
    assert [fen(s) for s in ("18", "18.0", "18.00", "0.29", "0.01")] == [1800, 1800, 1800, 29, 1]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            yuan(bad)  # type: ignore[arg-type]
    for bad in ("18.001", "-1.00", "1e3", "", " 18", "18.", ".5", "١٨", "NaN", 18):
        with pytest.raises(ValueError):
            fen(bad)


def test_times_are_sent_in_asia_shanghai_and_must_be_aware():
    assert wire_time(dt.datetime(2024, 5, 1, 16, 30, tzinfo=dt.UTC)) == "2024-05-02 00:30:00"
    with pytest.raises(ValueError):
        wire_time(dt.datetime(2024, 5, 1, 16, 30))


# --- what the payer opens -----------------------------------------------------------------------------


def test_page_pay_url_is_a_signed_get_of_the_gateway():
    url = client().page_pay_url(
        out_trade_no="T1",
        total=1800,
        subject="咖啡",
        return_url="https://shop.example/return",
        notify_url="https://shop.example/notify/alipay/",
        time_expire=EXPIRES,
    )
    assert url.startswith(GATEWAY + "?")
    params = dict(parse_qsl(urlsplit(url).query, strict_parsing=True))
    assert {k: v for k, v in params.items() if k not in ("sign", "biz_content")} == {
        "app_id": APP_ID,
        "method": "alipay.trade.page.pay",
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": "2024-05-01 20:00:00",
        "version": "1.0",
        "notify_url": "https://shop.example/notify/alipay/",
        "return_url": "https://shop.example/return",
    }
    assert json.loads(params["biz_content"]) == {
        "subject": "咖啡",
        "out_trade_no": "T1",
        "total_amount": "18.00",
        "product_code": "FAST_INSTANT_TRADE_PAY",
        "time_expire": "2024-05-01 20:30:00",
    }
    assert '"咖啡"' in params["biz_content"]  # compact, non-ASCII as is
    assert verify_sha256(APP_PUBLIC, signing.sign_content(params), params["sign"])


def test_wap_pay_url_carries_quit_url_and_quick_wap_way():
    url = client().wap_pay_url(
        out_trade_no="T1",
        total=5,
        subject="Tea",
        return_url="https://shop.example/return",
        notify_url="",
        time_expire=EXPIRES,
        quit_url="https://shop.example/cart",
    )
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["method"] == "alipay.trade.wap.pay" and "notify_url" not in params
    biz = json.loads(params["biz_content"])
    assert biz["product_code"] == "QUICK_WAP_WAY" and biz["quit_url"] == "https://shop.example/cart"
    assert biz["total_amount"] == "0.05"


def test_cert_mode_requests_name_both_certificate_sns():
    url = client(app_cert_sn="a" * 32, alipay_root_cert_sn="b_c", alipay_cert_sn="d" * 32).page_pay_url(
        out_trade_no="T1", total=1, subject="x", return_url="", notify_url="", time_expire=EXPIRES
    )
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["app_cert_sn"] == "a" * 32 and params["alipay_root_cert_sn"] == "b_c"
    assert verify_sha256(APP_PUBLIC, signing.sign_content(params), params["sign"])


# --- calls: the wire ------------------------------------------------------------------------------------


def test_precreate_posts_a_signed_form_and_reads_the_qr_code_from_an_escaped_answer():
    # Alipay writes "/" as "\/": the signature is over these bytes, not over a re-serialisation.
    raw = r'{"code":"10000","msg":"Success","out_trade_no":"T1","qr_code":"https:\/\/qr.alipay.com\/bax01"}'
    gateway = Gateway([(200, signed_answer(PRECREATE, raw))])
    qr = client(gateway).precreate(
        out_trade_no="T1", total=1800, subject="Coffee", notify_url="https://shop.example/n", time_expire=EXPIRES
    )
    assert qr == "https://qr.alipay.com/bax01"
    sent = gateway.sent[0]
    assert sent.method == "POST" and sent.url == GATEWAY
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded;charset=utf-8"
    assert gateway.kwargs[0]["timeout"] == (1.5, 4.0)
    form = gateway.form(0)
    assert form["method"] == PRECREATE and form["notify_url"] == "https://shop.example/n"
    assert verify_sha256(APP_PUBLIC, signing.sign_content(form), form["sign"])
    assert gateway.biz(0) == {
        "out_trade_no": "T1",
        "total_amount": "18.00",
        "subject": "Coffee",
        "time_expire": "2024-05-01 20:30:00",
    }


def test_a_re_serialised_or_tampered_answer_does_not_verify():
    raw = r'{"code":"10000","msg":"Success","out_trade_no":"T1","qr_code":"https:\/\/qr.alipay.com\/bax01"}'
    body = signed_answer(PRECREATE, raw)
    reserialised = json.dumps(json.loads(body), separators=(",", ":"))
    assert "\\/" not in reserialised
    tampered = body.replace("bax01", "bax02")
    for bad in (reserialised, tampered):
        with pytest.raises(ProviderUnavailable, match="signature"):
            client(Gateway([(200, bad)])).precreate(
                out_trade_no="T1", total=1, subject="x", notify_url="", time_expire=EXPIRES
            )


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        ((502, "<html>Bad Gateway</html>"), "HTTP 502"),
        ((302, ""), "HTTP 302"),
        ((200, "<html>maintenance</html>"), "not a JSON object"),
        ((200, '{"alipay_trade_query_response":{"code":"10000"}}'), "signature"),
        ((200, '{"other_response":{"code":"10000"},"sign":"x"}'), "no alipay_trade_query_response"),
        (requests.ReadTimeout("slow"), "did not answer within 4 s"),
        (requests.ConnectTimeout("no route"), "no connection"),
        (requests.ConnectionError("refused"), "failed"),
    ],
)
def test_no_usable_answer_is_provider_unavailable(reply, match):
    gateway = Gateway([reply])
    with pytest.raises(ProviderUnavailable, match=match):
        client(gateway).query("T1")
    assert len(gateway.sent) == 1  # not retried, redirects not followed


def test_an_unsigned_gateway_error_is_unavailable_and_names_its_code_for_the_log():
    body = '{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature"}}'
    with pytest.raises(ProviderUnavailable, match="isv.invalid-signature"):
        client(Gateway([(200, body)])).query("T1")


def test_a_signed_error_response_is_a_provider_error():
    error = '{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id","sub_msg":"无效的AppID参数"}'
    body = f'{{"error_response":{error},"sign":"{sign_sha256(ALIPAY_KEY, error)}"}}'
    with pytest.raises(ProviderError) as caught:
        client(Gateway([(200, body)])).query("T1")
    assert (caught.value.errcode, caught.value.errmsg) == ("isv.invalid-app-id", "无效的AppID参数")


def test_a_business_error_without_sub_code_keeps_code_and_msg():
    body = answer_of(QUERY, {"code": "20000", "msg": "Service Currently Unavailable"})
    with pytest.raises(ProviderError) as caught:
        client(Gateway([(200, body)])).query("T1")
    assert (caught.value.errcode, caught.value.errmsg) == ("20000", "Service Currently Unavailable")


def test_cert_mode_refuses_an_answer_signed_with_another_certificate():
    config = {"app_cert_sn": "a" * 32, "alipay_root_cert_sn": "b_c", "alipay_cert_sn": "f" * 32}
    wrong = answer_of(QUERY, _paid(), cert_sn="0" * 32)
    with pytest.raises(ProviderUnavailable, match="another certificate"):
        client(Gateway([(200, wrong)]), **config).query("T1")
    for body in (answer_of(QUERY, _paid(), cert_sn="f" * 32), answer_of(QUERY, _paid())):
        gateway = Gateway([(200, body)])
        assert client(gateway, **config).query("T1").state == "SUCCESS"
        assert gateway.form(0)["app_cert_sn"] == "a" * 32


# --- query ----------------------------------------------------------------------------------------------


def test_query_maps_a_paid_trade():
    trade = client(Gateway([(200, answer_of(QUERY, _paid(total_amount="18")))])).query("T1")
    assert trade.state == "SUCCESS" and trade.amount == 1800
    assert (trade.appid, trade.mchid) == (APP_ID, SELLER_ID)
    assert trade.transaction_id == "2024050122001400000000000001"
    assert trade.payer_openid == "2088102169481075"
    assert trade.success_time == dt.datetime(2024, 5, 1, 20, 0, 5, tzinfo=CHINA)


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({"trade_status": "WAIT_BUYER_PAY", "send_pay_date": ""}, "NOTPAY"),
        ({"trade_status": "TRADE_FINISHED"}, "SUCCESS"),
        ({"trade_status": "TRADE_CLOSED"}, "REFUND"),  # paid (send_pay_date), then fully refunded
        ({"trade_status": "TRADE_CLOSED", "send_pay_date": ""}, "CLOSED"),
        ({"trade_status": "TRADE_CLOSED", "send_pay_date": "", "total_amount": "18.00"}, "CLOSED"),
    ],
)
def test_query_states(fields, state):
    answer = {k: v for k, v in _paid(**fields).items() if v != ""}
    assert client(Gateway([(200, answer_of(QUERY, answer))])).query("T1").state == state


def test_query_prefers_buyer_open_id():
    answer = _paid(buyer_open_id="074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5")
    assert client(Gateway([(200, answer_of(QUERY, answer))])).query("T1").payer_openid.startswith("074a1")


@pytest.mark.parametrize(
    "fields", [{"total_amount": "18.001"}, {"total_amount": "-18.00"}, {"trade_status": "NEW"}, {"out_trade_no": "T2"}]
)
def test_query_refuses_an_answer_it_cannot_read(fields):
    with pytest.raises(ProviderUnavailable):
        client(Gateway([(200, answer_of(QUERY, _paid(**fields)))])).query("T1")


def test_query_of_an_order_alipay_never_saw_raises_trade_not_exist():
    body = answer_of(QUERY, {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"})
    with pytest.raises(ProviderError) as caught:
        client(Gateway([(200, body)])).query("T1")
    assert caught.value.errcode == "ACQ.TRADE_NOT_EXIST"


# --- close ----------------------------------------------------------------------------------------------


def test_close_of_a_trade_alipay_never_saw_is_nothing_to_do():
    body = answer_of(CLOSE, {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"})
    gateway = Gateway([(200, body)])
    assert client(gateway).close("T1") is None
    assert gateway.form(0)["method"] == CLOSE and gateway.biz(0) == {"out_trade_no": "T1"}


def test_close_raises_other_errors_and_returns_on_success():
    body = answer_of(CLOSE, {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR"})
    with pytest.raises(ProviderError, match="ACQ.TRADE_STATUS_ERROR"):
        client(Gateway([(200, body)])).close("T1")
    ok = answer_of(CLOSE, {"code": "10000", "msg": "Success", "out_trade_no": "T1", "trade_no": "2024"})
    assert client(Gateway([(200, ok)])).close("T1") is None


# --- refunds --------------------------------------------------------------------------------------------


def _refunded(**fields: str) -> dict[str, str]:
    answer = {
        "code": "10000",
        "msg": "Success",
        "buyer_logon_id": "abc***@example.com",
        "fund_change": "Y",
        "gmt_refund_pay": "2024-05-02 10:00:00",
        "out_trade_no": "T1",
        "refund_fee": "25.00",  # cumulative: an earlier refund of 20.00 and this one
        "trade_no": "2024050122001400000000000001",
    }
    answer.update(fields)
    return answer


def test_a_refund_that_moved_money_is_success_with_the_amount_asked_for():
    gateway = Gateway([(200, answer_of(REFUND, _refunded()))])
    state = client(gateway).refund(
        out_trade_no="T1", out_refund_no="R1", total=3000, amount=500, reason="broken cup", notify_url=""
    )
    assert (state.status, state.amount, state.total, state.out_refund_no) == ("SUCCESS", 500, 3000, "R1")
    assert state.refund_id == "2024050122001400000000000001"
    assert state.success_time == dt.datetime(2024, 5, 2, 10, 0, tzinfo=CHINA)
    assert gateway.biz(0) == {
        "out_trade_no": "T1",
        "refund_amount": "5.00",
        "out_request_no": "R1",
        "refund_reason": "broken cup",
    }
    assert "notify_url" not in gateway.form(0)


def test_fund_change_n_asks_the_refund_query_which_decides():
    done = {
        "code": "10000",
        "msg": "Success",
        "out_request_no": "R1",
        "out_trade_no": "T1",
        "refund_amount": "5.00",
        "refund_status": "REFUND_SUCCESS",
        "total_amount": "30.00",
        "trade_no": "2024050122001400000000000001",
        "gmt_refund_pay": "2024-05-02 10:00:01.123",
    }
    gateway = Gateway([(200, answer_of(REFUND, _refunded(fund_change="N"))), (200, answer_of(REFUND_QUERY, done))])
    state = client(gateway).refund(
        out_trade_no="T1", out_refund_no="R1", total=3000, amount=500, reason="", notify_url="https://shop/n"
    )
    assert (state.status, state.amount, state.total) == ("SUCCESS", 500, 3000)
    assert state.success_time == dt.datetime(2024, 5, 2, 10, 0, 1, 123000, tzinfo=CHINA)
    assert gateway.form(0)["notify_url"] == "https://shop/n" and "refund_reason" not in gateway.biz(0)
    assert gateway.form(1)["method"] == REFUND_QUERY
    assert gateway.biz(1) == {"out_trade_no": "T1", "out_request_no": "R1", "query_options": ["gmt_refund_pay"]}

    pending = {k: v for k, v in done.items() if k not in ("refund_status", "gmt_refund_pay")}
    gateway = Gateway([(200, answer_of(REFUND, _refunded(fund_change="N"))), (200, answer_of(REFUND_QUERY, pending))])
    state = client(gateway).refund(
        out_trade_no="T1", out_refund_no="R1", total=3000, amount=500, reason="", notify_url=""
    )
    assert state.status == "PROCESSING" and state.success_time is None


def test_a_refund_alipay_does_not_have_reads_as_not_found():
    body = answer_of(REFUND_QUERY, {"code": "10000", "msg": "Success"})
    with pytest.raises(ProviderError) as caught:
        client(Gateway([(200, body)])).query_refund("R1", "T1")
    assert caught.value.errcode == "ACQ.TRADE_NOT_EXIST"


def test_refund_query_of_another_request_is_refused():
    body = answer_of(
        REFUND_QUERY, {"code": "10000", "out_request_no": "R2", "out_trade_no": "T1", "refund_amount": "1.00"}
    )
    with pytest.raises(ProviderUnavailable):
        client(Gateway([(200, body)])).query_refund("R1", "T1")


# --- notifies -------------------------------------------------------------------------------------------


def test_a_pay_notify_becomes_a_trade():
    form = notify_form()
    notify = client().parse_notify(form)
    assert notify.event_id == form["notify_id"] and notify.refund is None and notify.trade is not None
    trade = notify.trade
    assert (trade.state, trade.amount, trade.appid, trade.mchid) == ("SUCCESS", 1800, APP_ID, SELLER_ID)
    assert trade.transaction_id == form["trade_no"] and trade.payer_openid == form["buyer_id"]
    assert trade.success_time == dt.datetime(2024, 5, 1, 20, 0, 5, tzinfo=CHINA)
    assert trade.raw == form


@pytest.mark.parametrize(("amount", "fen_"), [("18", 1800), ("18.00", 1800), ("18.5", 1850), ("0.01", 1)])
def test_notify_amounts_with_up_to_two_decimals(amount, fen_):
    notify = client().parse_notify(notify_form(total_amount=amount))
    assert notify.trade is not None and notify.trade.amount == fen_


@pytest.mark.parametrize("amount", ["18.001", "junk", "-18.00", "", "1e3", "18,00"])
def test_notify_amounts_alipay_never_writes_are_invalid(amount):
    with pytest.raises(InvalidNotify):
        client().parse_notify(notify_form(total_amount=amount))


@pytest.mark.parametrize(
    ("status", "state"), [("WAIT_BUYER_PAY", "NOTPAY"), ("TRADE_FINISHED", "SUCCESS"), ("TRADE_CLOSED", "CLOSED")]
)
def test_notify_states(status, state):
    notify = client().parse_notify(notify_form(trade_status=status))
    assert notify.trade is not None and notify.trade.state == state


def _forgeries() -> dict[str, dict[str, str]]:
    good = notify_form()
    unsigned = {k: v for k, v in good.items() if k != "sign"}
    return {
        "no sign": unsigned,
        "garbage sign": {**good, "sign": "bm90IGEgc2lnbmF0dXJl"},
        "not base64": {**good, "sign": "%%%"},
        "signed with the app's own key": sign_as_alipay(unsigned, key=APP_KEY),
        # Alipay's key, but over a string that includes sign_type (as a request is signed)
        "sign_type inside the signed string": {**unsigned, "sign": signing.sign(unsigned, ALIPAY_KEY)},
        "tampered amount": {**good, "total_amount": "0.01"},
        "an unsigned extra field": {**good, "refund_fee": "18.00", "out_biz_no": "R1"},
        "RSA (SHA1) sign_type": notify_form(sign_type="RSA"),
        "no notify_id": sign_as_alipay({k: v for k, v in unsigned.items() if k != "notify_id"}),
        "no out_trade_no": sign_as_alipay({k: v for k, v in unsigned.items() if k != "out_trade_no"}),
        "unknown trade_status": notify_form(trade_status="TRADE_PENDING"),
    }


@pytest.mark.parametrize("name", list(_forgeries()))
def test_forged_or_malformed_notifies_are_invalid(name):
    with pytest.raises(InvalidNotify):
        client().parse_notify(_forgeries()[name])


def test_unknown_fields_alipay_signed_are_fine_and_plus_signs_are_values():
    notify = client().parse_notify(notify_form(new_field_2030="x", subject="a+b=c&d"))
    assert notify.trade is not None and notify.trade.raw["subject"] == "a+b=c&d"


def test_a_partial_refund_notify_becomes_a_refund_state():
    form = notify_form(out_biz_no="R1", refund_fee="5.00", gmt_refund="2024-05-02 10:00:00.320", total_amount="30.00")
    notify = client().parse_notify(form)
    assert notify.trade is None and notify.refund is not None
    refund = notify.refund
    assert (refund.out_trade_no, refund.out_refund_no, refund.status) == ("T20240501000001", "R1", "SUCCESS")
    assert (refund.amount, refund.total, refund.refund_id) == (None, 3000, form["trade_no"])
    assert (refund.appid, refund.mchid) == (APP_ID, SELLER_ID)
    assert refund.success_time == dt.datetime(2024, 5, 2, 10, 0, 0, 320000, tzinfo=CHINA)


def test_a_full_refund_notify_trade_closed_is_a_refund_too():
    notify = client().parse_notify(notify_form(trade_status="TRADE_CLOSED", out_biz_no="R2", refund_fee="18.00"))
    assert notify.refund is not None and notify.refund.out_refund_no == "R2"


def test_a_refund_notify_for_another_app_or_seller_is_invalid():
    for fields in ({"app_id": "2021999999999999"}, {"seller_id": "2088999999999999"}):
        with pytest.raises(InvalidNotify, match="another app or seller"):
            client().parse_notify(notify_form(out_biz_no="R1", refund_fee="5.00", **fields))


def test_a_pay_notify_for_another_seller_is_left_to_the_payments_service_to_match():
    notify = client().parse_notify(notify_form(seller_id="2088999999999999"))
    assert notify.trade is not None and notify.trade.mchid == "2088999999999999"


# --- returns --------------------------------------------------------------------------------------------


def _return(**fields: str) -> dict[str, str]:
    params = {
        "charset": "utf-8",
        "out_trade_no": "T1",
        "method": "alipay.trade.page.pay.return",
        "total_amount": "18.00",
        "sign_type": "RSA2",
        "trade_no": "2024050122001400000000000001",
        "auth_app_id": APP_ID,
        "version": "1.0",
        "app_id": APP_ID,
        "seller_id": SELLER_ID,
        "timestamp": "2024-05-01 20:00:07",
    }
    params.update(fields)
    return sign_as_alipay(params)


def test_verify_return_gives_the_out_trade_no():
    assert client().verify_return(_return()) == "T1"


def test_a_tampered_or_foreign_return_is_invalid():
    for params in (
        {**_return(), "total_amount": "0.01"},
        _return(app_id="2021999999999999"),
        sign_as_alipay({k: v for k, v in _return().items() if k not in ("sign", "out_trade_no")}),
        {k: v for k, v in _return().items() if k != "sign"},
    ):
        with pytest.raises(InvalidNotify):
            client().verify_return(params)


def test_the_config_never_shows_its_keys():
    text = repr(client().config)
    assert "PRIVATE" not in text and "PUBLIC" not in text and APP_ID in text


def test_fund_change_n_with_a_query_that_lags_is_in_flight_never_no_such_refund():
    # Alipay asks for ~10 s before querying a refund: right after fund_change=N the query may not have it.
    empty = {"code": "10000", "msg": "Success"}
    gateway = Gateway([(200, answer_of(REFUND, _refunded(fund_change="N"))), (200, answer_of(REFUND_QUERY, empty))])
    state = client(gateway).refund(
        out_trade_no="T1", out_refund_no="R1", total=3000, amount=500, reason="", notify_url=""
    )
    assert (state.status, state.out_refund_no, state.amount) == ("PROCESSING", "R1", 500)


def test_a_return_must_be_a_pay_return():
    # A notify (or any other form Alipay signed) replayed at the return page is not a return.
    form = notify_form()
    with pytest.raises(InvalidNotify, match="not a pay return"):
        client().verify_return(form)
