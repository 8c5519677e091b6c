"""providers/wechat/push.py against a fake WeChat behind the session: the exact request bodies, every errcode's
outcome, the one retry after a rejected access token, and transport failures as RETRY (never an exception)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter

from providers.http import HttpConfig, make_session
from providers.wechat.api import WechatAppConfig, WechatClient
from providers.wechat.push import PushClient, PushOutcome, SendResult
from providers.wechat.token import MemoryTokenStore

APPID = "wxpush000000000001"
SECRET = "push-secret-never-logged"
OPENID = "oPushUser0000000000000000001"

Answer = dict[str, Any] | Callable[[requests.PreparedRequest], Any]


class FakeWechat(BaseAdapter):
    """Answers by path (a dict, or a callable returning a dict, a Response or raising), records every request."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, Answer] = {"/cgi-bin/stable_token": self._token}
        self.requests: list[requests.PreparedRequest] = []
        self.token_count = 0

    def _token(self, request: requests.PreparedRequest) -> dict[str, Any]:
        self.token_count += 1
        return {"access_token": f"app-token-{self.token_count}", "expires_in": 7200}

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.requests.append(request)
        answer = self.routes.get(urlsplit(request.url).path, {"errcode": 404, "errmsg": "no such fake route"})
        body = answer(request) if callable(answer) else answer
        if isinstance(body, requests.Response):
            body.request = request
            return body
        return response(200, json.dumps(body, ensure_ascii=False).encode("utf-8"), request)

    def close(self) -> None:
        pass

    def calls(self, path: str) -> list[requests.PreparedRequest]:
        return [r for r in self.requests if urlsplit(r.url).path == path]


def response(status: int, content: bytes, request: requests.PreparedRequest | None = None) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = content
    answer.headers["Content-Type"] = "application/json; charset=utf-8"
    answer.request = request  # type: ignore[assignment]
    return answer


def sent_json(request: requests.PreparedRequest) -> Any:
    assert isinstance(request.body, bytes)
    return json.loads(request.body.decode("utf-8"))


def access_token_of(request: requests.PreparedRequest) -> str:
    return parse_qs(urlsplit(request.url).query)["access_token"][0]


@pytest.fixture
def fake() -> FakeWechat:
    return FakeWechat()


@pytest.fixture
def push(fake) -> PushClient:
    session = make_session(HttpConfig(), mounts={"https://": fake})
    api = WechatClient(WechatAppConfig(appid=APPID, secret=SECRET), session, HttpConfig(), MemoryTokenStore())
    return PushClient(api)


TEMPLATE = "/cgi-bin/message/template/send"
SUBSCRIBE = "/cgi-bin/message/subscribe/send"
CUSTOM = "/cgi-bin/message/custom/send"


# --- the requests ----------------------------------------------------------------------------------


def test_template_message_body_in_plain_utf8_with_the_documented_fields(fake, push):
    fake.routes[TEMPLATE] = {"errcode": 0, "errmsg": "ok", "msgid": 200228332}
    result = push.send_template(
        openid=OPENID,
        template_id="tmpl-order-paid",
        data={"thing1": "咖啡 Coffee", "amount2": "¥18.00"},
        url="https://shop.example.com/orders/1",
    )
    assert result == SendResult(PushOutcome.SENT, errcode=0, errmsg="ok", msgid="200228332")
    (request,) = fake.calls(TEMPLATE)
    assert request.method == "POST"
    assert access_token_of(request) == "app-token-1"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "咖啡".encode() in request.body  # not \u5496\u5561
    assert sent_json(request) == {
        "touser": OPENID,
        "template_id": "tmpl-order-paid",
        "url": "https://shop.example.com/orders/1",
        "data": {"thing1": {"value": "咖啡 Coffee"}, "amount2": {"value": "¥18.00"}},
    }
    assert list(sent_json(request)) == ["touser", "template_id", "url", "data"]


def test_template_message_to_a_mini_program_page_and_without_a_link(fake, push):
    fake.routes[TEMPLATE] = {"errcode": 0, "errmsg": "ok", "msgid": 1}
    push.send_template(
        openid=OPENID, template_id="t", data={"keyword1": "x"}, miniprogram=("wxmini0001", "pages/order?id=1")
    )
    push.send_template(openid=OPENID, template_id="t", data={})
    linked, plain = fake.calls(TEMPLATE)
    assert sent_json(linked) == {
        "touser": OPENID,
        "template_id": "t",
        "miniprogram": {"appid": "wxmini0001", "pagepath": "pages/order?id=1"},
        "data": {"keyword1": {"value": "x"}},
    }
    assert sent_json(plain) == {"touser": OPENID, "template_id": "t", "data": {}}


def test_subscribe_message_body_with_its_defaults(fake, push):
    fake.routes[SUBSCRIBE] = {"errcode": 0, "errmsg": "ok", "msgid": 2845287834338525184}
    result = push.send_subscribe(
        openid=OPENID, template_id="sub-1", data={"phrase1": "已支付", "time2": "2024年5月1日 15:01"}, page="pages/a"
    )
    assert result.outcome is PushOutcome.SENT and result.msgid == "2845287834338525184"
    push.send_subscribe(
        openid=OPENID, template_id="sub-1", data={"thing1": "x"}, miniprogram_state="developer", lang="en_US"
    )
    first, second = fake.calls(SUBSCRIBE)
    assert sent_json(first) == {
        "touser": OPENID,
        "template_id": "sub-1",
        "page": "pages/a",
        "data": {"phrase1": {"value": "已支付"}, "time2": {"value": "2024年5月1日 15:01"}},
        "miniprogram_state": "formal",
        "lang": "zh_CN",
    }
    assert "已支付".encode() in first.body
    assert sent_json(second) == {
        "touser": OPENID,
        "template_id": "sub-1",
        "data": {"thing1": {"value": "x"}},
        "miniprogram_state": "developer",
        "lang": "en_US",
    }


@pytest.mark.parametrize(
    "message",
    [
        {"msgtype": "text", "text": {"content": "您好 hello"}},
        {"msgtype": "image", "image": {"media_id": "MEDIA_ID"}},
        {
            "msgtype": "news",
            "news": {"articles": [{"title": "T", "description": "D", "url": "https://e.com", "picurl": "https://p"}]},
        },
        {
            "msgtype": "miniprogrampage",
            "miniprogrampage": {"title": "T", "appid": "wxmini", "pagepath": "pages/i", "thumb_media_id": "M"},
        },
    ],
    ids=lambda message: message["msgtype"],
)
def test_customer_service_message_body(fake, push, message):
    fake.routes[CUSTOM] = {"errcode": 0, "errmsg": "ok"}
    assert push.send_custom(openid=OPENID, message=message) == SendResult(PushOutcome.SENT, errmsg="ok")
    (request,) = fake.calls(CUSTOM)
    assert sent_json(request) == {"touser": OPENID, **message}
    assert list(sent_json(request))[:2] == ["touser", "msgtype"]


@pytest.mark.parametrize("message", [{}, {"msgtype": "text"}, {"msgtype": "text", "text": "hello"}])
def test_a_malformed_customer_service_message_is_the_callers_error(fake, push, message):
    with pytest.raises(ValueError, match="msgtype"):
        push.send_custom(openid=OPENID, message=message)
    assert fake.calls(CUSTOM) == []


# --- the answers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errcode", "outcome"),
    [
        (43101, PushOutcome.SKIPPED),
        (43004, PushOutcome.SKIPPED),
        (45015, PushOutcome.SKIPPED),
        (47003, PushOutcome.STOP),
        (40037, PushOutcome.STOP),
        (45009, PushOutcome.QUOTA),
        (-1, PushOutcome.RETRY),
        (45011, PushOutcome.RETRY),
        (40003, PushOutcome.FAILED),
        (41030, PushOutcome.FAILED),
        (45047, PushOutcome.FAILED),
        (48001, PushOutcome.FAILED),
    ],
)
@pytest.mark.parametrize("channel", ["template", "subscribe", "custom"])
def test_each_errcode_becomes_its_outcome(fake, push, errcode, outcome, channel):
    for path in (TEMPLATE, SUBSCRIBE, CUSTOM):
        fake.routes[path] = {"errcode": errcode, "errmsg": f"message of {errcode}"}
    send = {
        "template": lambda: push.send_template(openid=OPENID, template_id="t", data={"thing1": "x"}),
        "subscribe": lambda: push.send_subscribe(openid=OPENID, template_id="t", data={"thing1": "x"}),
        "custom": lambda: push.send_custom(openid=OPENID, message={"msgtype": "text", "text": {"content": "x"}}),
    }[channel]
    result = send()
    assert result == SendResult(outcome, errcode=errcode, errmsg=f"message of {errcode}")
    assert len(fake.requests) == 2  # the token, then one send: no retry of an answered call


@pytest.mark.parametrize(
    ("errmsg", "field"),
    [
        ("argument invalid! data.thing1.value is empty rid: 64e41852-5c2e1227-2885cbfa", "thing1"),
        ("argument invalid! data.phrase16.value invalid rid: 676d614b-19a23fcf-18023ffa", "phrase16"),
        ("argument invalid! data.character_string3.value invalid", "character_string3"),
        ("argument invalid!", ""),
    ],
)
def test_stop_names_the_field_wechat_named(fake, push, errmsg, field):
    fake.routes[SUBSCRIBE] = {"errcode": 47003, "errmsg": errmsg}
    result = push.send_subscribe(openid=OPENID, template_id="t", data={"thing1": ""})
    assert result == SendResult(PushOutcome.STOP, errcode=47003, errmsg=errmsg, field=field)


def test_a_bad_template_stops_without_a_field(fake, push):
    fake.routes[TEMPLATE] = {"errcode": 40037, "errmsg": "invalid template_id rid: 1"}
    result = push.send_template(openid=OPENID, template_id="nope", data={"data1": "x"})
    assert (result.outcome, result.field) == (PushOutcome.STOP, "")


def test_other_outcomes_name_no_field(fake, push):
    fake.routes[SUBSCRIBE] = {"errcode": 43101, "errmsg": "user refuse to accept the msg data.thing1"}
    assert push.send_subscribe(openid=OPENID, template_id="t", data={}).field == ""


# --- the access token ------------------------------------------------------------------------------


@pytest.mark.parametrize("errcode", [40001, 42001])
def test_a_rejected_token_is_expired_and_the_send_retried_once(fake, push, errcode):
    tokens_seen: list[str] = []

    def rejects_the_first_token(request):
        tokens_seen.append(access_token_of(request))
        if access_token_of(request) == "app-token-1":
            return {"errcode": errcode, "errmsg": "access_token expired"}
        return {"errcode": 0, "errmsg": "ok", "msgid": 7}

    fake.routes[TEMPLATE] = rejects_the_first_token
    result = push.send_template(openid=OPENID, template_id="t", data={"thing1": "x"})
    assert result == SendResult(PushOutcome.SENT, errmsg="ok", msgid="7")
    assert tokens_seen == ["app-token-1", "app-token-2"]
    assert fake.token_count == 2
    assert push.api.access_token() == "app-token-2"  # the fresh token is the cached one now
    # The next send uses it without another fetch.
    push.send_template(openid=OPENID, template_id="t", data={"thing1": "x"})
    assert tokens_seen[-1] == "app-token-2" and fake.token_count == 2


def test_a_token_rejected_again_is_retried_later_never_looped(fake, push):
    fake.routes[SUBSCRIBE] = {"errcode": 40001, "errmsg": "invalid credential"}
    result = push.send_subscribe(openid=OPENID, template_id="t", data={"thing1": "x"})
    assert (result.outcome, result.errcode) == (PushOutcome.RETRY, 40001)
    assert len(fake.calls(SUBSCRIBE)) == 2 and fake.token_count == 2


def test_a_failing_token_fetch_is_an_outcome_too(fake, push):
    fake.routes["/cgi-bin/stable_token"] = {"errcode": 40125, "errmsg": "invalid appsecret"}
    result = push.send_template(openid=OPENID, template_id="t", data={})
    assert (result.outcome, result.errcode) == (PushOutcome.FAILED, 40125)
    assert fake.calls(TEMPLATE) == []


# --- transport failures ----------------------------------------------------------------------------


def _raise(exc: Exception) -> Callable[[requests.PreparedRequest], Any]:
    def answer(request: requests.PreparedRequest) -> Any:
        raise exc

    return answer


@pytest.mark.parametrize(
    ("answer", "says", "maybe_received"),
    [
        (_raise(requests.ReadTimeout("read timed out")), "did not answer within 5 s", True),
        (_raise(requests.ConnectTimeout("connect timed out")), "no connection to api.weixin.qq.com within 3 s", False),
        (_raise(requests.ConnectionError("reset")), "connection to api.weixin.qq.com failed", True),
        (lambda request: response(502, b"<html>bad gateway</html>"), "HTTP 502", True),
        (lambda request: response(503, b"<html>unavailable</html>"), "HTTP 503", False),
        (lambda request: response(200, b"<html>\x00not json"), "unparsable body", True),
        (lambda request: response(200, b"[1, 2]"), "unexpected body shape", True),
    ],
    ids=["read-timeout", "connect-timeout", "connection-error", "http-502", "http-503", "not-json", "not-an-object"],
)
def test_no_usable_answer_is_retry_or_unknown_never_an_exception(fake, push, answer, says, maybe_received):
    """RETRY when WeChat cannot have acted on the message (no connection, a 5xx) or when a resend is safe (a
    template message's client_msg_id); UNKNOWN when it may have been delivered and nothing makes a resend safe."""
    fake.routes[TEMPLATE] = fake.routes[CUSTOM] = answer
    maybe = PushOutcome.UNKNOWN if maybe_received else PushOutcome.RETRY
    keyed = push.send_template(openid=OPENID, template_id="t", data={"thing1": "x"}, client_msg_id="push-1")
    unkeyed = push.send_template(openid=OPENID, template_id="t", data={"thing1": "x"})
    custom = push.send_custom(openid=OPENID, message={"msgtype": "text", "text": {"content": "x"}})
    assert (keyed.outcome, unkeyed.outcome, custom.outcome) == (PushOutcome.RETRY, maybe, maybe)
    for result in (keyed, unkeyed, custom):
        assert says in result.errmsg and result.maybe_received is maybe_received
        assert (result.errcode, result.msgid, result.field) == (0, "", "")
    assert len(fake.calls(TEMPLATE)) == 2 and len(fake.calls(CUSTOM)) == 1  # never resent here


def test_an_unusable_errcode_is_retry(fake, push):
    fake.routes[TEMPLATE] = {"errcode": "busy", "errmsg": "?"}
    result = push.send_template(openid=OPENID, template_id="t", data={"thing1": "x"})
    assert result.outcome is PushOutcome.RETRY and "unusable errcode 'busy'" in result.errmsg


def test_the_documented_template_example_with_its_client_msg_id(fake, push):
    """The request example of cgi-bin/message/template/send in WeChat's documentation, key for key."""
    documented = (
        '{"touser":"OPENID","template_id":"ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY",'
        '"url":"http://weixin.qq.com/download","miniprogram":{"appid":"xiaochengxuappid12345",'
        '"pagepath":"index?foo=bar"},"client_msg_id":"MSG_000001","data":{"keyword1":{"value":"巧克力"},'
        '"keyword2":{"value":"39.8元"},"keyword3":{"value":"2014年9月22日"}}}'
    )
    fake.routes[TEMPLATE] = {"errcode": 0, "errmsg": "ok", "msgid": 200228332}
    push.send_template(
        openid="OPENID",
        template_id="ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY",
        data={"keyword1": "巧克力", "keyword2": "39.8元", "keyword3": "2014年9月22日"},
        url="http://weixin.qq.com/download",
        miniprogram=("xiaochengxuappid12345", "index?foo=bar"),
        client_msg_id="MSG_000001",
    )
    (request,) = fake.calls(TEMPLATE)
    assert request.body == documented.encode("utf-8")


def test_a_token_fetch_timeout_is_retry(fake, push):
    fake.routes["/cgi-bin/stable_token"] = _raise(requests.ReadTimeout("read timed out"))
    result = push.send_custom(openid=OPENID, message={"msgtype": "text", "text": {"content": "x"}})
    assert result.outcome is PushOutcome.RETRY and fake.calls(CUSTOM) == []


def test_logs_say_what_happened_without_secrets(fake, push, caplog):
    fake.routes[TEMPLATE] = {"errcode": 43004, "errmsg": "require subscribe"}
    with caplog.at_level(logging.DEBUG, logger="providers.wechat.push"):
        push.send_template(openid=OPENID, template_id="t", data={"thing1": "x"})
    text = caplog.text
    assert "SKIPPED" in text and OPENID in text and APPID in text and "43004" in text
    assert "app-token" not in text and SECRET not in text
