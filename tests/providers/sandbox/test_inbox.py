"""The sandbox's inbox through our real PushClient (the apps' own WechatClients, in-process and over real HTTP):
WeChat's answers to template, subscribe and customer-service messages, one-time subscriptions used up, the push
faults and the daily quota, the inbox JSON and the inbox page."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings

from config import providers
from providers.http import HttpConfig, make_session
from providers.sandbox.inbox import PER_USER
from providers.sandbox.wechat import openid_for
from providers.wechat.api import WechatAppConfig, WechatClient
from providers.wechat.push import PushClient, PushOutcome, SendResult
from providers.wechat.token import MemoryTokenStore

PAGE = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser's form post asks for
MESSAGE_KEYS = {
    "client_msg_id",
    "user",
    "openid",
    "appid",
    "kind",
    "template_id",
    "data",
    "url",
    "page",
    "miniprogram",
    "msgtype",
    "text",
    "message",
    "msgid",
    "at",
}


@pytest.fixture
def mp() -> PushClient:
    """Subscribe messages: the mini-program's own client."""
    providers.reset()
    return PushClient(providers.wechat_miniprogram())


@pytest.fixture
def oa() -> PushClient:
    """Template and customer-service messages: the official account's WechatClient."""
    providers.reset()
    return PushClient(providers.official_account()._api)


@pytest.fixture
def inbox(wechat_sandbox: Any) -> Any:
    return wechat_sandbox.inbox


def appid_of(push: PushClient) -> str:
    return push.api.config.appid


def follower(wechat_sandbox: Any, oa: PushClient, user: str) -> str:
    """`user`'s openid in the official account, after they opened its OAuth page (so the sandbox knows the name)."""
    wechat_sandbox.grant_oauth_code(appid_of(oa), user, "snsapi_base")
    return openid_for(appid_of(oa), user)


def subscriber(inbox: Any, mp: PushClient, user: str, template_id: str = "sub-paid", count: int = 1) -> str:
    inbox.grant_subscription(appid_of(mp), user, template_id, count)
    return openid_for(appid_of(mp), user)


def template(oa: PushClient, openid: str, **kwargs: Any) -> SendResult:
    args = {"template_id": "tmpl-paid", "data": {"thing1": "拿铁 Latte", "amount2": "¥18.00"}, **kwargs}
    return oa.send_template(openid=openid, **args)


def subscribe(mp: PushClient, openid: str, **kwargs: Any) -> SendResult:
    args = {"template_id": "sub-paid", "data": {"phrase1": "已支付", "character_string2": "WX20240501"}, **kwargs}
    return mp.send_subscribe(openid=openid, **args)


def text(oa: PushClient, openid: str, content: str = "您好 hello") -> SendResult:
    return oa.send_custom(openid=openid, message={"msgtype": "text", "text": {"content": content}})


# --- delivered -------------------------------------------------------------------------------------


def test_a_template_message_is_sent_and_in_the_inbox_as_json(client, wechat_sandbox, oa, inbox):
    openid = follower(wechat_sandbox, oa, "bob")
    result = template(oa, openid, url="https://shop.example.com/orders/1")
    assert result.outcome is PushOutcome.SENT and result.errcode == 0 and result.msgid.isdigit()
    (message,) = client.get("/sandbox/inbox.json").json()
    assert set(message) == MESSAGE_KEYS
    at = message.pop("at")
    assert at.endswith("+08:00") and at[:4].isdigit()
    assert message == {
        "user": "bob",
        "openid": openid,
        "appid": appid_of(oa),
        "kind": "template",
        "template_id": "tmpl-paid",
        "data": {"thing1": "拿铁 Latte", "amount2": "¥18.00"},
        "url": "https://shop.example.com/orders/1",
        "page": "",
        "miniprogram": None,
        "msgtype": "",
        "text": "",
        "message": None,
        "client_msg_id": "",
        "msgid": result.msgid,
    }
    assert inbox.messages(user="bob")[0]["msgid"] == result.msgid


def test_a_template_message_to_a_mini_program_page(wechat_sandbox, oa, mp, inbox):
    openid = follower(wechat_sandbox, oa, "bob")
    assert template(oa, openid, miniprogram=(appid_of(mp), "pages/order?id=1")).outcome is PushOutcome.SENT
    assert inbox.messages()[0]["miniprogram"] == {"appid": appid_of(mp), "pagepath": "pages/order?id=1"}


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ({"msgtype": "text", "text": {"content": "您好"}}, "您好"),
        ({"msgtype": "image", "image": {"media_id": "MEDIA"}}, ""),
        ({"msgtype": "news", "news": {"articles": [{"title": "新品", "url": "https://e.com"}]}}, "新品"),
        (
            {
                "msgtype": "miniprogrampage",
                "miniprogrampage": {"title": "订单", "appid": "wxmini", "pagepath": "pages/i", "thumb_media_id": "M"},
            },
            "订单",
        ),
    ],
    ids=lambda value: value["msgtype"] if isinstance(value, dict) else value,
)
def test_customer_service_messages_are_in_the_inbox(wechat_sandbox, oa, inbox, message, shown):
    openid = follower(wechat_sandbox, oa, "bob")
    result = oa.send_custom(openid=openid, message=message)
    assert result == SendResult(PushOutcome.SENT, errmsg="ok")  # custom/send answers no msgid
    (recorded,) = inbox.messages(user="bob")
    kind = message["msgtype"]
    assert (recorded["kind"], recorded["msgtype"], recorded["text"], recorded["msgid"]) == ("custom", kind, shown, "")
    assert recorded["message"] == message[kind]


def test_an_openid_the_sandbox_cannot_name_is_delivered_with_no_user(client, oa):
    openid = openid_for(appid_of(oa), "never-seen")
    assert text(oa, openid).outcome is PushOutcome.SENT
    (message,) = client.get("/sandbox/inbox.json", {"user": openid}).json()
    assert (message["user"], message["openid"]) == ("", openid)


# --- refused ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["template", "subscribe", "custom"])
def test_a_user_named_refuse_refuses_every_kind(wechat_sandbox, oa, mp, inbox, channel):
    if channel == "subscribe":
        result = subscribe(mp, subscriber(inbox, mp, "refuse-all"))
    else:
        openid = follower(wechat_sandbox, oa, "refuse-all")
        result = template(oa, openid) if channel == "template" else text(oa, openid)
    assert (result.outcome, result.errcode) == (PushOutcome.SKIPPED, 43101)
    assert result.errmsg.startswith("user refuse to accept the msg rid: ")
    assert inbox.messages() == []


def test_a_user_named_unfollowed_does_not_follow_the_account(wechat_sandbox, oa, mp, inbox):
    openid = follower(wechat_sandbox, oa, "unfollowed-dan")
    assert (template(oa, openid).outcome, template(oa, openid).errcode) == (PushOutcome.SKIPPED, 43004)
    assert text(oa, openid).errcode == 43004
    # A subscribe message needs no following, only the subscription.
    assert subscribe(mp, subscriber(inbox, mp, "unfollowed-dan")).outcome is PushOutcome.SENT
    assert [m["kind"] for m in inbox.messages()] == ["subscribe"]


def test_customer_service_messages_only_within_48_hours(wechat_sandbox, oa, inbox):
    openid = follower(wechat_sandbox, oa, "inactive-eve")
    result = text(oa, openid)
    assert (result.outcome, result.errcode) == (PushOutcome.SKIPPED, 45015)
    assert template(oa, openid).outcome is PushOutcome.SENT  # template messages have no such window


def test_a_subscribe_message_without_a_subscription_is_43101(mp, inbox):
    result = subscribe(mp, openid_for(appid_of(mp), "alice"))
    assert (result.outcome, result.errcode) == (PushOutcome.SKIPPED, 43101)
    # A subscription of another template does not count.
    result = subscribe(mp, subscriber(inbox, mp, "alice", "sub-other"))
    assert result.errcode == 43101


@pytest.mark.parametrize(
    ("data", "field", "says"),
    [
        ({"thing1": "x" * 21}, "thing1", "invalid"),
        ({"thing1": "x" * 20, "phrase2": "paid"}, "phrase2", "invalid"),
        ({"phrase1": "已支付成功了啊"}, "phrase1", "invalid"),
        ({"number1": "12a"}, "number1", "invalid"),
        ({"character_string1": "x" * 33}, "character_string1", "invalid"),
        ({"amount1": "十八元"}, "amount1", "invalid"),
        ({"time1": "tomorrow"}, "time1", "invalid"),
        ({"thing1": ""}, "thing1", "is empty"),
    ],
)
def test_bad_data_stops_naming_the_field(mp, inbox, data, field, says):
    openid = subscriber(inbox, mp, "alice")
    result = subscribe(mp, openid, data=data)
    assert (result.outcome, result.errcode, result.field) == (PushOutcome.STOP, 47003, field)
    assert result.errmsg.startswith(f"argument invalid! data.{field}.value {says} rid: ")
    assert inbox.subscriptions(appid_of(mp), "alice") == {"sub-paid": 1}  # nothing used up


def test_values_within_their_types_limits_are_sent(mp, inbox):
    data = {
        "thing1": "一二三四五六七八九十一二三四五六七八九十",
        "phrase2": "配送中",
        "number3": "-12.5",
        "character_string4": "WX2024-05_01#A",
        "amount5": "¥18.00",
        "time6": "2019年10月1日 15:01",
        "date7": "2019-10-01",
        "name8": "张三",
        "phone_number9": "+86-0766-66888866",
        "car_number10": "粤A8Z888挂",
        "letter11": "abc",
        "symbol12": "%",
    }
    result = subscribe(mp, subscriber(inbox, mp, "alice"), data=data)
    assert result.outcome is PushOutcome.SENT, result
    assert inbox.messages()[0]["data"] == data


@pytest.mark.parametrize("channel", ["template", "subscribe"])
def test_a_bad_template_id_stops(wechat_sandbox, oa, mp, inbox, channel):
    if channel == "template":
        result = template(oa, follower(wechat_sandbox, oa, "bob"), template_id="bad-template")
    else:
        result = subscribe(mp, subscriber(inbox, mp, "alice", "bad-template"), template_id="bad-template")
    assert (result.outcome, result.errcode, result.field) == (PushOutcome.STOP, 40037, "")


@pytest.mark.parametrize(
    ("message", "errcode"),
    [
        ({"msgtype": "video", "video": {"media_id": "M"}}, 40008),
        ({"msgtype": "text", "text": {"content": ""}}, 47003),
        ({"msgtype": "text", "text": {"content": "长" * 700}}, 45002),
        ({"msgtype": "news", "news": {"articles": [{"title": "a"}, {"title": "b"}]}}, 45008),
    ],
    ids=["unknown-type", "empty-text", "text-too-long", "two-articles"],
)
def test_customer_service_messages_wechat_refuses(wechat_sandbox, oa, inbox, message, errcode):
    result = oa.send_custom(openid=follower(wechat_sandbox, oa, "bob"), message=message)
    assert result.errcode == errcode and result.outcome is not PushOutcome.SENT
    assert inbox.messages() == []


def test_a_bad_openid_fails(oa):
    result = template(oa, "not an openid!")
    assert (result.outcome, result.errcode) == (PushOutcome.FAILED, 40003)


# --- one-time subscriptions ------------------------------------------------------------------------


def test_each_subscribe_message_uses_up_one_subscription(mp, inbox):
    openid = subscriber(inbox, mp, "alice", count=2)
    assert inbox.subscriptions(appid_of(mp), "alice") == {"sub-paid": 2}
    outcomes = [subscribe(mp, openid).outcome for _ in range(3)]
    assert outcomes == [PushOutcome.SENT, PushOutcome.SENT, PushOutcome.SKIPPED]
    assert inbox.subscriptions(appid_of(mp), "alice") == {"sub-paid": 0}
    assert inbox.grant_subscription(appid_of(mp), "alice", "sub-paid") == 1
    assert subscribe(mp, openid).outcome is PushOutcome.SENT
    assert [m["user"] for m in inbox.messages(user="alice")] == ["alice"] * 3


def test_one_subscription_sent_at_once_from_many_threads_is_sent_once(mp, inbox, run_together):
    openid = subscriber(inbox, mp, "alice")
    results = run_together(lambda: subscribe(mp, openid), 8)
    assert sorted(r.outcome.value for r in results) == ["SENT"] + ["SKIPPED"] * 7
    assert len(inbox.messages(user="alice")) == 1


@pytest.mark.parametrize(
    ("user", "template_id", "count", "match"),
    [
        ("not a name", "t", 1, "sandbox user"),
        ("alice", "", 1, "template id"),
        ("alice", "t", 0, "count"),
        ("alice", "t", 1001, "count"),
    ],
)
def test_grant_subscription_refuses_bad_input(mp, inbox, user, template_id, count, match):
    with pytest.raises(ValueError, match=match):
        inbox.grant_subscription(appid_of(mp), user, template_id, count)


# --- faults and the daily quota --------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "errcode", "outcome"), [("quota", 45009, "QUOTA"), ("busy", -1, "RETRY")])
def test_push_faults_answer_the_next_sends(wechat_sandbox, oa, mp, inbox, fault, errcode, outcome):
    openid = follower(wechat_sandbox, oa, "bob")
    alice = subscriber(inbox, mp, "alice")
    inbox.set_fault(fault, 2)
    assert inbox.fault() == {"fault": fault, "count": 2}
    first, second = template(oa, openid), subscribe(mp, alice)
    assert [(r.outcome.value, r.errcode) for r in (first, second)] == [(outcome, errcode)] * 2
    assert inbox.fault() is None
    # Taken: the next sends go through, the subscription was not used by the refused one.
    assert template(oa, openid).outcome is PushOutcome.SENT
    assert subscribe(mp, alice).outcome is PushOutcome.SENT


def test_push_faults_leave_other_wechat_calls_alone(wechat_sandbox, mp, inbox):
    inbox.set_fault("busy", 1)
    assert mp.api.code2session("alice").openid  # logins, tokens and the rest answer as usual
    assert inbox.fault() == {"fault": "busy", "count": 1}


def test_the_daily_quota_pauses_an_app_until_the_reset(wechat_sandbox, oa, mp, inbox):
    openid = follower(wechat_sandbox, oa, "bob")
    inbox.set_quota(appid_of(oa), 2)
    outcomes = [template(oa, openid).outcome for _ in range(3)]
    assert outcomes == [PushOutcome.SENT, PushOutcome.SENT, PushOutcome.QUOTA]
    assert inbox.quota(appid_of(oa)) == 0
    # Another app has a quota of its own; a refused subscribe message keeps its subscription.
    assert subscribe(mp, subscriber(inbox, mp, "alice")).outcome is PushOutcome.SENT
    inbox.set_quota(appid_of(mp), 0)
    assert subscribe(mp, openid_for(appid_of(mp), "alice")).outcome is PushOutcome.SKIPPED  # none left
    inbox.grant_subscription(appid_of(mp), "alice", "sub-paid")
    assert subscribe(mp, openid_for(appid_of(mp), "alice")).outcome is PushOutcome.QUOTA
    assert inbox.subscriptions(appid_of(mp), "alice") == {"sub-paid": 1}
    # The reset.
    inbox.set_quota(appid_of(oa), None)
    assert inbox.quota(appid_of(oa)) is None
    assert template(oa, openid).outcome is PushOutcome.SENT


@pytest.mark.parametrize(("fault", "delivered"), [("http_500", 0), ("malformed", 1)])
def test_sandbox_faults_of_wechat(wechat_sandbox, oa, inbox, fault, delivered):
    """A 500 replaces the answer before anything happens: RETRY. A malformed answer spoils the answer to a
    message already delivered: without a client_msg_id nothing says whether it arrived (UNKNOWN)."""
    openid = follower(wechat_sandbox, oa, "bob")
    oa.api.access_token()  # the fault must hit the send, not the token fetch
    providers.sandbox().set_fault("wechat", fault, 1)
    result = template(oa, openid)
    assert result.outcome is (PushOutcome.UNKNOWN if delivered else PushOutcome.RETRY) and result.errcode == 0
    assert len(inbox.messages()) == delivered
    assert template(oa, openid).outcome is PushOutcome.SENT


def test_a_template_message_whose_answer_was_lost_is_resent_with_its_client_msg_id_and_arrives_once(
    wechat_sandbox, oa, inbox
):
    openid = follower(wechat_sandbox, oa, "bob")
    oa.api.access_token()
    providers.sandbox().set_fault("wechat", "malformed", 1)
    lost = template(oa, openid, client_msg_id="push-41")
    assert lost.outcome is PushOutcome.RETRY and "unparsable body" in lost.errmsg
    again = template(oa, openid, client_msg_id="push-41")
    (message,) = inbox.messages()
    assert again.outcome is PushOutcome.SENT and again.msgid == message["msgid"]
    assert message["client_msg_id"] == "push-41"
    # another id, or another user with the same id, is another message
    assert template(oa, openid, client_msg_id="push-42").outcome is PushOutcome.SENT
    assert template(oa, follower(wechat_sandbox, oa, "cat"), client_msg_id="push-41").outcome is PushOutcome.SENT
    assert len(inbox.messages()) == 3


def test_a_client_msg_id_over_64_bytes_is_refused(wechat_sandbox, oa, inbox):
    result = template(oa, follower(wechat_sandbox, oa, "bob"), client_msg_id="x" * 65)
    assert (result.outcome, result.errcode, result.field) == (PushOutcome.STOP, 47003, "")
    assert "client_msg_id" in result.errmsg and inbox.messages() == []


def test_a_client_msg_id_refused_for_the_quota_may_come_again(wechat_sandbox, oa, inbox):
    openid = follower(wechat_sandbox, oa, "bob")
    inbox.set_quota(appid_of(oa), 0)
    assert template(oa, openid, client_msg_id="push-7").outcome is PushOutcome.QUOTA
    inbox.set_quota(appid_of(oa), None)
    assert template(oa, openid, client_msg_id="push-7").outcome is PushOutcome.SENT
    assert len(inbox.messages()) == 1


def test_a_timed_out_subscribe_message_is_unknown_never_resent_by_the_client(settings, wechat_sandbox, inbox):
    settings.PROVIDER_READ_TIMEOUT = 0.3
    providers.reset()
    mp = PushClient(providers.wechat_miniprogram())
    openid = subscriber(providers.sandbox().providers["wechat"].inbox, mp, "alice")
    mp.api.access_token()
    providers.sandbox().set_fault("wechat", "timeout", 1)
    start = time.monotonic()
    result = subscribe(mp, openid)
    # The sandbox timed out before delivering; a client cannot tell that from a lost answer.
    assert result.outcome is PushOutcome.UNKNOWN and "did not answer within 0.3 s" in result.errmsg
    assert time.monotonic() - start < 2
    assert inbox.messages() == []


def test_an_expired_token_is_fetched_again_once(wechat_sandbox, oa):
    openid = follower(wechat_sandbox, oa, "bob")
    old = oa.api.access_token()
    fetches = wechat_sandbox.token_fetches(appid_of(oa))
    wechat_sandbox.expire_access_token(appid_of(oa))
    assert template(oa, openid).outcome is PushOutcome.SENT
    assert wechat_sandbox.token_fetches(appid_of(oa)) == fetches + 1
    assert oa.api.access_token() != old


def test_the_send_paths_check_the_access_token(client):
    answer = client.post(
        "/sandbox/wechat/cgi-bin/message/template/send?access_token=forged", {}, content_type="application/json"
    )
    assert answer.json()["errcode"] == 40001


# --- the inbox: newest first, per user, capped -----------------------------------------------------


def test_newest_first_per_user_and_capped(client, wechat_sandbox, oa, inbox):
    bob, carol = follower(wechat_sandbox, oa, "bob"), follower(wechat_sandbox, oa, "carol")
    for number in range(PER_USER + 3):
        text(oa, bob, f"bob {number}")
    text(oa, carol, "carol 0")
    everyone = client.get("/sandbox/inbox.json").json()
    assert [m["text"] for m in everyone[:3]] == ["carol 0", f"bob {PER_USER + 2}", f"bob {PER_USER + 1}"]
    of_bob = client.get("/sandbox/inbox.json", {"user": "bob"}).json()
    assert len(of_bob) == PER_USER
    assert [m["text"] for m in of_bob] == [f"bob {n}" for n in range(PER_USER + 2, 2, -1)]
    assert [m["text"] for m in client.get("/sandbox/inbox.json", {"user": "carol"}).json()] == ["carol 0"]
    assert client.get("/sandbox/inbox.json", {"user": "nobody"}).json() == []
    assert client.get("/sandbox/inbox.json", {"user": "../*"}).json() == []


# --- the HTTP surface ------------------------------------------------------------------------------


def test_subscriptions_over_http_as_json_and_from_the_page(client, mp, inbox):
    answer = client.post(
        "/sandbox/inbox/subscriptions", {"user": "alice", "template_id": "sub-paid"}, content_type="application/json"
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "appid": appid_of(mp),
        "user": "alice",
        "openid": openid_for(appid_of(mp), "alice"),
        "template_id": "sub-paid",
        "remaining": 1,
    }
    page = client.post(
        "/sandbox/inbox/subscriptions", {"user": "alice", "template_id": "sub-paid", "count": "2"}, **PAGE
    )
    assert (page.status_code, page["Location"]) == (303, "/sandbox/inbox?user=alice")
    left = client.get("/sandbox/inbox/subscriptions", {"user": "alice"}).json()
    assert left == {"appid": appid_of(mp), "user": "alice", "subscriptions": {"sub-paid": 3}}
    assert "<code>sub-paid</code> ×3" in client.get("/sandbox/inbox", {"user": "alice"}).content.decode()
    refused = client.post(
        "/sandbox/inbox/subscriptions",
        {"user": "alice", "template_id": "t", "appid": "wx-nobody"},
        content_type="application/json",
    )
    assert refused.status_code == 400 and "Unknown appid" in refused.json()["error"]
    bad = client.post("/sandbox/inbox/subscriptions", {"user": "alice", "template_id": "t", "count": "many"}, **PAGE)
    assert bad.status_code == 400 and "count must be" in bad.content.decode()


def test_push_faults_and_quota_over_http(client, wechat_sandbox, oa, inbox):
    answer = client.post("/sandbox/inbox/faults", {"fault": "busy", "count": 1}, content_type="application/json")
    assert answer.json() == {"pending": {"fault": "busy", "count": 1}}
    assert client.get("/sandbox/inbox/faults").json() == {"pending": {"fault": "busy", "count": 1}}
    wrong = client.post("/sandbox/inbox/faults", {"fault": "timeout", "count": 1}, content_type="application/json")
    assert wrong.status_code == 400 and "quota" in wrong.json()["error"]
    quota = client.post(
        "/sandbox/inbox/quota", {"appid": appid_of(oa), "left": 1}, content_type="application/json"
    ).json()
    assert quota == {"appid": appid_of(oa), "left": 1}
    openid = follower(wechat_sandbox, oa, "bob")
    outcomes = [template(oa, openid).outcome for _ in range(3)]
    assert outcomes == [PushOutcome.RETRY, PushOutcome.SENT, PushOutcome.QUOTA]
    reset = client.post("/sandbox/inbox/quota", {"appid": appid_of(oa), "left": None}, content_type="application/json")
    assert reset.json() == {"appid": appid_of(oa), "left": None}
    assert client.post("/sandbox/inbox/quota", {"left": -1}, content_type="application/json").status_code == 400
    assert client.post("/sandbox/inbox/quota", {}, content_type="application/json").status_code == 400


def test_the_inbox_page_shows_cards_and_bubbles_escaped(client, wechat_sandbox, oa, mp, inbox):
    bob = follower(wechat_sandbox, oa, "bob")
    template(oa, bob, data={"keyword1": "<script>alert(1)</script>"}, url="javascript:alert(1)")
    subscribe(mp, subscriber(inbox, mp, "alice"), page="pages/order?id=1")
    text(oa, bob, "你好")
    page = client.get("/sandbox/inbox")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    body = page.content.decode()
    assert body.count('<article class="push template">') == 1 and body.count('<article class="push subscribe">') == 1
    assert '<div class="row custom" data-msgtype="text">' in body and "你好" in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert" not in body
    assert "javascript:" not in body  # a link only where a browser may go
    assert body.index('id="inbox-bob"') < body.index('id="inbox-alice"')  # the latest message's user first
    assert "pages/order?id=1" in body
    only_alice = client.get("/sandbox/inbox", {"user": "alice"}).content.decode()
    assert 'id="inbox-alice"' in only_alice and 'id="inbox-bob"' not in only_alice
    assert "No messages for nobody." in client.get("/sandbox/inbox", {"user": "nobody"}).content.decode()


# --- over real HTTP --------------------------------------------------------------------------------


def test_over_real_http_the_sandbox_answers_and_the_inbox_shows_it(live_server, transactional_db):
    config = WechatAppConfig(
        appid=django_settings.WECHAT_MINIPROGRAM_APPID,
        secret=django_settings.WECHAT_MINIPROGRAM_SECRET,
        base_url=live_server.url + "/sandbox/wechat",
    )
    http = HttpConfig()
    push = PushClient(WechatClient(config, make_session(http), http, MemoryTokenStore()))
    granted = requests.post(
        live_server.url + "/sandbox/inbox/subscriptions",
        json={"user": "http-alice", "template_id": "sub-paid"},
        timeout=10,
    ).json()
    result = subscribe(push, granted["openid"])
    assert result.outcome is PushOutcome.SENT
    assert subscribe(push, granted["openid"]).outcome is PushOutcome.SKIPPED
    seen = requests.get(live_server.url + "/sandbox/inbox.json", params={"user": "http-alice"}, timeout=10).json()
    assert [(m["kind"], m["msgid"], m["data"]["phrase1"]) for m in seen] == [("subscribe", result.msgid, "已支付")]
