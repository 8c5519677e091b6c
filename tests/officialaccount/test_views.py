"""The server URL, /wechat/official-account/, as WeChat uses it: the GET check, messages and events in plain and
safe mode, retries and copies answered with the first reply, and every bad input refused with nothing changed."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from typing import Any

import pytest
import wechatpy
import xmltodict
from Crypto.Cipher import AES
from django.core.cache import cache
from django.db import connection
from django.test import Client

from accounts.models import WechatIdentity
from config import providers
from officialaccount import services, tasks
from officialaccount.models import Follower, KeywordReply, TemplateSendReport
from providers.wechat.messages import parse_message
from tests.factories import UserFactory, WechatIdentityFactory
from tests.officialaccount.conftest import (
    ACCOUNT,
    AES_KEY,
    APPID,
    TOKEN,
    URL,
    Wechat,
    event_message,
    signature,
    text_message,
)

pytestmark = pytest.mark.django_db

OPENID = "o-follower-0000000000000001"


def everything() -> tuple[Any, ...]:
    """What a message can change."""
    return (
        list(Follower.objects.order_by("pk").values()),
        list(TemplateSendReport.objects.order_by("pk").values()),
        list(WechatIdentity.objects.order_by("pk").values()),
        list(KeywordReply.objects.order_by("pk").values()),
    )


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The follower-info tasks sent, instead of running them."""
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.fetch_follower_info, "delay", lambda *args: sent.append(args))
    return sent


# --- GET: the URL check ---------------------------------------------------------------------------


def test_get_with_a_good_signature_answers_echostr(oa):
    response = Client().get(URL, oa.query(echostr="5837397520165843423"))
    assert response.status_code == 200
    assert response.content == b"5837397520165843423"
    assert response["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    "change",
    [
        {"signature": "0" * 40},
        {"signature": ""},
        {"timestamp": "1"},  # signed over another timestamp
        {"nonce": "other"},
    ],
    ids=["wrong", "empty", "timestamp", "nonce"],
)
def test_get_with_a_bad_signature_is_403(oa, change):
    query = {**oa.query(echostr="hello"), **change}
    response = Client().get(URL, query)
    assert response.status_code == 403
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert b"hello" not in response.content


def test_get_without_parameters_is_403(oa):
    assert Client().get(URL).status_code == 403


def test_get_signed_with_another_token_is_403(oa):
    timestamp, nonce = "1410685589", "test"
    query = {"signature": signature("not-our-token", timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    assert Client().get(URL, {**query, "echostr": "x"}).status_code == 403


def test_no_token_configured_refuses_everything(oa, settings):
    settings.WECHAT_OA_TOKEN = ""
    timestamp, nonce = "1410685589", "test"
    # sha1 of ["", timestamp, nonce] is anyone's to compute: never accepted.
    query = {"signature": signature("", timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "echostr": "x"}
    assert Client().get(URL, query).status_code == 403


def test_other_methods_are_405(oa):
    assert Client().put(URL, b"", content_type="text/xml").status_code == 405


# --- POST: messages and events, plain and safe mode -----------------------------------------------


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_text_gets_the_keyword_reply(oa, safe):
    KeywordReply.objects.create(keyword="hours", content="We are open 9:00-18:00.")
    answer = oa.post(text_message(OPENID, "  HOURS "), safe=safe)
    assert answer.status == 200 and answer.content_type == "text/xml; charset=utf-8"
    reply = answer.reply
    assert reply["MsgType"] == "text" and reply["Content"] == "We are open 9:00-18:00."
    assert reply["ToUserName"] == OPENID and reply["FromUserName"] == ACCOUNT
    assert abs(int(reply["CreateTime"]) - time.time()) < 5
    if safe:  # the reply is encrypted: nothing of it in clear
        assert b"We are open" not in answer.body and b"<Encrypt>" in answer.body


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_text_without_a_keyword_gets_the_default_reply(oa, safe):
    answer = oa.post(text_message(OPENID, "anything at all"), safe=safe)
    assert answer.reply["Content"] == services.DEFAULT_REPLY


def test_image_and_news_replies(oa):
    KeywordReply.objects.create(keyword="logo", reply_type="image", media_id="MEDIA_123")
    KeywordReply.objects.create(
        keyword="news",
        reply_type="news",
        articles=[{"title": "Hello", "description": "d", "pic_url": "https://e.com/p.png", "url": "https://e.com"}],
    )
    image = oa.post(text_message(OPENID, "logo")).reply
    assert image["MsgType"] == "image" and image["Image"] == {"MediaId": "MEDIA_123"}
    news = oa.post(text_message(OPENID, "news")).reply
    assert news["MsgType"] == "news" and news["ArticleCount"] == "1"
    assert news["Articles"]["item"]["Title"] == "Hello" and news["Articles"]["item"]["Url"] == "https://e.com"


def test_a_cdata_terminator_in_a_reply_survives(oa):
    tricky = "a]]>b<xml>&amp;</xml>]]>"
    KeywordReply.objects.create(keyword="tricky", content=tricky)
    for safe in (False, True):
        answer = oa.post(text_message(OPENID, "tricky"), safe=safe)
        assert answer.reply["Content"] == tricky
        assert "]]]]><![CDATA[>" in answer.reply_xml


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_subscribe_welcomes_and_records_the_follower(oa, enqueued, safe, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        answer = oa.post(event_message(OPENID, "subscribe", "", create_time=1700000000), safe=safe)
    assert answer.reply["Content"] == services.WELCOME
    follower = Follower.objects.get()
    assert (follower.appid, follower.openid, follower.subscribed) == (APPID, OPENID, True)
    assert follower.subscribed_at.timestamp() == 1700000000 and follower.unsubscribed_at is None
    # The unionid comes from cgi-bin/user/info, in Celery after the commit, not in the request.
    assert enqueued == [(APPID, OPENID)]


def test_subscribe_welcome_from_the_admin(oa):
    KeywordReply.objects.create(match="subscribe", content="Welcome aboard!")
    assert oa.post(event_message(OPENID, "subscribe")).reply["Content"] == "Welcome aboard!"


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_subscribe_with_a_scene_binds_the_user_who_asked(oa, safe):
    user = UserFactory()
    WechatIdentityFactory(user=user)  # their mini-program identity
    cache.set("oa:bind:bind_scene01", user.pk, 600)
    answer = oa.post(event_message(OPENID, "subscribe", "qrscene_bind_scene01", Ticket="TICKET"), safe=safe)
    assert answer.reply["Content"] == f"{services.WELCOME}\n\n{services.BOUND}"
    identity = WechatIdentity.objects.get(appid=APPID, openid=OPENID)
    assert identity.user == user and identity.kind == WechatIdentity.Kind.OFFICIAL_ACCOUNT
    assert Follower.objects.get().subscribed


def test_scan_by_a_follower_binds(oa):
    user = UserFactory()
    oa.post(event_message(OPENID, "subscribe", "", create_time=1700000000))
    cache.set("oa:bind:bind_scene02", str(user.pk), 600)
    answer = oa.post(event_message(OPENID, "SCAN", "bind_scene02", Ticket="TICKET"))
    assert answer.reply["Content"] == services.BOUND
    assert WechatIdentity.objects.get(appid=APPID, openid=OPENID).user == user
    # The same follower scanning again (a new event) is told the same.
    assert oa.post(event_message(OPENID, "SCAN", "bind_scene02", create_time=1)).reply["Content"] == services.BOUND
    assert WechatIdentity.objects.filter(appid=APPID).count() == 1


def test_scan_of_an_unknown_or_expired_scene(oa):
    answer = oa.post(event_message(OPENID, "SCAN", "bind_gone"))
    assert answer.reply["Content"] == services.SCENE_EXPIRED
    assert not WechatIdentity.objects.exists()
    # A subscribe through it is only welcomed.
    answer = oa.post(event_message("o-other", "subscribe", "qrscene_bind_gone"))
    assert answer.reply["Content"] == services.WELCOME


def test_scene_of_a_user_when_the_openid_is_bound_to_someone_else(oa):
    owner, asker = UserFactory(), UserFactory()
    WechatIdentityFactory(user=owner, appid=APPID, openid=OPENID, kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT)
    cache.set("oa:bind:bind_scene03", asker.pk, 600)
    before = list(WechatIdentity.objects.values())
    answer = oa.post(event_message(OPENID, "subscribe", "qrscene_bind_scene03"))
    assert answer.reply["Content"] == f"{services.WELCOME}\n\nThis WeChat account is already bound to another user."
    assert list(WechatIdentity.objects.values()) == before


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_unsubscribe_marks_the_follower_unfollowed(oa, safe):
    oa.post(event_message(OPENID, "subscribe", "", create_time=1700000000))
    answer = oa.post(event_message(OPENID, "unsubscribe", "", create_time=1700000100), safe=safe)
    assert (answer.status, answer.body) == (200, b"success")
    follower = Follower.objects.get()
    assert follower.subscribed is False and follower.unsubscribed_at.timestamp() == 1700000100
    assert follower.subscribed_at.timestamp() == 1700000000


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_click_answers_the_menu_keys_reply(oa, safe):
    # MENU_HELP's reply is seeded with the example menu.json (migration 0002).
    seeded = KeywordReply.objects.get(match="click", keyword="MENU_HELP")
    answer = oa.post(event_message(OPENID, "CLICK", "MENU_HELP"), safe=safe)
    assert answer.reply["Content"] == seeded.content
    # A key nobody wrote a reply for: nothing to say.
    assert oa.post(event_message(OPENID, "CLICK", "MENU_NOBODY"), safe=safe).body == b"success"


def test_view_is_success(oa):
    before = everything()
    answer = oa.post(event_message(OPENID, "VIEW", "https://example.com/shop", MenuId="1"))
    assert (answer.status, answer.body, answer.content_type) == (200, b"success", "text/plain; charset=utf-8")
    assert everything() == before


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_template_send_job_finish_is_recorded_once(oa, safe):
    event = event_message(
        OPENID, "TEMPLATESENDJOBFINISH", None, create_time=1700000000, MsgID="200163836", Status="failed:user block"
    )
    assert oa.post(event, safe=safe).body == b"success"
    # WeChat's retry of the same event, and the same MsgID in another event: one row.
    assert oa.post(event, safe=safe).body == b"success"
    other = event_message(
        OPENID, "TEMPLATESENDJOBFINISH", None, create_time=1700000005, MsgID="200163836", Status="success"
    )
    assert oa.post(other, safe=safe).body == b"success"
    report = TemplateSendReport.objects.get()
    assert (report.msg_id, report.openid, report.status) == ("200163836", OPENID, "failed:user block")
    assert report.sent_at.timestamp() == 1700000000


@pytest.mark.parametrize(
    "xml",
    [
        event_message(OPENID, "LOCATION", None, Latitude="23.1", Longitude="113.3", Precision="119.3"),
        event_message(OPENID, "MASSSENDJOBFINISH", None),
        text_message(OPENID, "x").replace("[text]", "[voice]"),
        "<xml><ToUserName>gh</ToUserName></xml>",
    ],
    ids=["location", "mass-send", "voice", "no-type"],
)
def test_anything_else_is_success(oa, xml):
    before = everything()
    answer = oa.post(xml)
    assert (answer.status, answer.body) == (200, b"success")
    assert everything() == before


NESTED_EVENTS = {
    "scancode_waitmsg": (
        "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType><ScanResult><![CDATA[1]]></ScanResult></ScanCodeInfo>"
    ),
    "pic_sysphoto": (
        "<SendPicsInfo><Count>1</Count><PicList><item><PicMd5Sum><![CDATA[1b5f7c23b5bf75682a53e7b6d163e185]]>"
        "</PicMd5Sum></item></PicList></SendPicsInfo>"
    ),
    "subscribe_msg_popup_event": (
        "<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[T1]]></TemplateId><SubscribeStatusString>"
        "<![CDATA[accept]]></SubscribeStatusString><PopupScene>0</PopupScene></List></SubscribeMsgPopupEvent>"
    ),
}


@pytest.mark.parametrize("event", sorted(NESTED_EVENTS))
@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_signed_events_with_nested_elements_are_success_not_an_error(oa, event, safe):
    # WeChat retries anything but an answer: these must not be refused as malformed.
    xml = event_message(OPENID, event, "KEY").replace("</xml>", NESTED_EVENTS[event] + "</xml>")
    before = everything()
    answer = oa.post(xml, safe=safe)
    assert (answer.status, answer.body) == (200, b"success")
    assert everything() == before


def test_wechatpy_as_wechat_encrypts_and_reads_our_reply(oa):
    """wechatpy plays WeChat end to end: its ciphertext accepted, our encrypted reply decrypted and parsed."""
    KeywordReply.objects.create(keyword="你好", content="你好！Welcome.")
    crypto = oa.crypto()
    timestamp, nonce = str(int(time.time())), "wechatpy-nonce"
    envelope = crypto.encrypt_message(text_message(OPENID, "你好"), nonce, timestamp)
    fields = xmltodict.parse(envelope)["xml"]
    query = {
        "signature": signature(TOKEN, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": OPENID,
        "encrypt_type": "aes",
        "msg_signature": fields["MsgSignature"],
    }
    response = oa.raw_post(query, envelope)  # wechatpy's whole envelope as the body
    assert response.status_code == 200
    answer = xmltodict.parse(response.content)["xml"]
    plain = crypto.decrypt_message(
        response.content.decode(), answer["MsgSignature"], answer["TimeStamp"], answer["Nonce"]
    )
    reply = wechatpy.parse_message(plain)
    assert reply.type == "text" and reply.content == "你好！Welcome."
    assert reply.source == ACCOUNT and reply.target == OPENID


# --- bad input: the exact answer, and nothing changed ----------------------------------------------


SUBSCRIBE = event_message(OPENID, "subscribe", "", create_time=1700000000)


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
@pytest.mark.parametrize("change", [{"signature": "0" * 40}, {"signature": None}, {"timestamp": "2"}])
def test_post_with_a_bad_plain_signature_is_403(oa, safe, change):
    query, body = oa.encrypted(SUBSCRIBE) if safe else (oa.query(), SUBSCRIBE)
    query = {k: v for k, v in {**query, **change}.items() if v is not None}
    before = everything()
    response = oa.raw_post(query, body)
    assert (response.status_code, response.content) == (403, b"signature does not verify")
    assert everything() == before


def test_safe_mode_never_takes_the_plain_signature_for_the_ciphertext(oa):
    query, body = oa.encrypted(SUBSCRIBE)
    before = everything()
    for msg_signature in ("0" * 40, query["signature"], ""):
        response = oa.raw_post({**query, "msg_signature": msg_signature}, body)
        assert (response.status_code, response.content) == (403, b"msg_signature does not verify")
    without = {k: v for k, v in query.items() if k != "msg_signature"}
    assert oa.raw_post(without, body).status_code == 403
    assert everything() == before


def test_safe_mode_with_a_tampered_ciphertext_is_403(oa):
    query, body = oa.encrypted(SUBSCRIBE)
    start = body.index("<![CDATA[", body.index("<Encrypt>")) + 9
    tampered = body[:start] + ("A" if body[start] != "A" else "B") + body[start + 1 :]
    before = everything()
    assert oa.raw_post(query, tampered).status_code == 403  # msg_signature covers the Encrypt element
    assert everything() == before


def test_another_appid_inside_the_ciphertext_is_400(oa):
    query, body = oa.encrypted(SUBSCRIBE, appid="wxsomeoneelse00001")
    before = everything()
    response = oa.raw_post(query, body)
    assert (response.status_code, response.content) == (400, b"cannot decrypt")
    assert everything() == before


def _signed_ciphertext(query: dict[str, str], plain: bytes) -> tuple[dict[str, str], str]:
    key = base64.b64decode(AES_KEY + "=")
    encrypted = base64.b64encode(AES.new(key, AES.MODE_CBC, key[:16]).encrypt(plain)).decode()
    msg_signature = hashlib.sha1(
        "".join(sorted([TOKEN, query["timestamp"], query["nonce"], encrypted])).encode()
    ).hexdigest()
    body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return {**query, "encrypt_type": "aes", "msg_signature": msg_signature}, body


@pytest.mark.parametrize("last_byte", [0, 33, 255])
def test_bad_padding_is_400(oa, last_byte):
    # Signed correctly (whoever holds the token), but its padding is no PKCS#7 to 32 bytes.
    plain = os.urandom(16) + len(SUBSCRIBE).to_bytes(4, "big") + SUBSCRIBE.encode() + APPID.encode()
    plain += b"\x00" * (-(len(plain) + 1) % 32) + bytes([last_byte])
    query, body = _signed_ciphertext(oa.query(), plain)
    before = everything()
    response = oa.raw_post(query, body)
    assert (response.status_code, response.content) == (400, b"cannot decrypt")
    assert everything() == before


def test_safe_mode_without_an_aes_key_is_403(oa, settings):
    query, body = oa.encrypted(SUBSCRIBE)
    settings.WECHAT_OA_AES_KEY = ""
    providers.reset()
    before = everything()
    response = oa.raw_post(query, body)
    assert (response.status_code, response.content) == (403, b"safe mode is not configured here")
    assert everything() == before


def test_safe_mode_envelope_without_encrypt_is_400(oa):
    query, _ = oa.encrypted(SUBSCRIBE)
    assert oa.raw_post(query, SUBSCRIBE).content == b"Encrypt missing"
    assert not Follower.objects.exists()


XXE = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    f"<xml><ToUserName>{ACCOUNT}</ToUserName><FromUserName>&xxe;</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>event</MsgType><Event>subscribe</Event></xml>"
)
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>'
    "<xml><MsgType>text</MsgType><FromUserName>o</FromUserName><Content>&lol2;</Content></xml>"
)


@pytest.mark.parametrize(
    "xml", [XXE, LAUGHS, "<!DOCTYPE xml><xml><MsgType>text</MsgType></xml>"], ids=["xxe", "laughs", "bare"]
)
@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_xml_with_a_doctype_is_400(oa, xml, safe):
    before = everything()
    if safe:  # inside the (correctly encrypted and signed) ciphertext
        query, body = oa.encrypted(xml)
    else:
        query, body = oa.query(), xml
    response = oa.raw_post(query, body)
    assert (response.status_code, response.content) == (400, b"not a WeChat message")
    assert b"root:" not in response.content
    assert everything() == before


@pytest.mark.parametrize(
    "body", [b"", b"not xml", b"\xff\xfe<xml/>", b"<a>1</a>"], ids=["empty", "text", "utf16", "root"]
)
def test_garbage_bodies_are_400(oa, body):
    response = oa.raw_post(oa.query(), body)
    assert (response.status_code, response.content) == (400, b"not a WeChat message")


def test_a_10_mb_body_is_413_unread(oa):
    body = SUBSCRIBE.replace("</xml>", "<Pad>" + "A" * (10 * 1024 * 1024) + "</Pad></xml>")
    before = everything()
    started = time.monotonic()
    response = oa.raw_post(oa.query(), body)
    assert (response.status_code, response.content) == (413, b"body too large")
    assert time.monotonic() - started < 2
    assert everything() == before


# --- retries and copies -------------------------------------------------------------------------


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each time a message is worked out (its side effects run), its type."""
    calls: list[str] = []
    real = services.route

    def counting(*, appid: str, message: Any) -> str:
        calls.append(message.get("Event") or message.get("MsgType"))
        return real(appid=appid, message=message)

    monkeypatch.setattr(services, "route", counting)
    return calls


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_a_retried_message_gets_the_same_reply_and_runs_once(
    oa, handled, enqueued, safe, django_capture_on_commit_callbacks
):
    user = UserFactory()
    cache.set("oa:bind:bind_retry", user.pk, 600)
    event = event_message(OPENID, "subscribe", "qrscene_bind_retry", create_time=1700000000)
    query = oa.query()
    with django_capture_on_commit_callbacks(execute=True):
        first = oa.post(event, safe=safe, query=query)
        time.sleep(1.1)  # a later reply would carry another CreateTime
        # WeChat's 3 retries: the same message, each with a fresh timestamp and nonce in the URL.
        retries = [oa.post(event, safe=safe) for _ in range(3)]
    assert first.reply["Content"].endswith(services.BOUND)
    assert [r.reply_xml for r in retries] == [first.reply_xml] * 3
    if safe:  # encrypted afresh each time: other bytes, the same reply inside
        assert len({first.body, *(r.body for r in retries)}) == 4
    assert handled == ["subscribe"]
    assert enqueued == [(APPID, OPENID)]
    assert Follower.objects.count() == 1 and WechatIdentity.objects.filter(user=user).count() == 1


def test_a_retried_text_message_is_deduplicated_by_msgid_sender_and_time(oa, handled):
    message = text_message(OPENID, "hello", msg_id="1234567890123456", create_time=1700000000)
    assert oa.post(message).reply_xml == oa.post(message).reply_xml
    assert handled == ["text"]
    # The same MsgId from another follower, or at another time, is another message.
    oa.post(text_message("o-another", "hello", msg_id="1234567890123456", create_time=1700000000))
    oa.post(text_message(OPENID, "hello", msg_id="1234567890123456", create_time=1700000001))
    assert handled == ["text"] * 3


def test_events_are_deduplicated_by_sender_time_event_and_key(oa, handled):
    oa.post(event_message(OPENID, "CLICK", "MENU_HELP", create_time=1700000000))
    oa.post(event_message(OPENID, "CLICK", "MENU_HELP", create_time=1700000000))
    oa.post(event_message(OPENID, "CLICK", "MENU_BIND", create_time=1700000000))
    oa.post(event_message(OPENID, "VIEW", "MENU_HELP", create_time=1700000000))
    assert handled == ["CLICK", "CLICK", "VIEW"]


def test_a_copy_while_the_first_is_still_working_answers_success_after_waiting(oa, handled, monkeypatch):
    monkeypatch.setattr(services, "WAIT_SECONDS", 0.3)
    message = text_message(OPENID, "hello", create_time=1700000000)
    # The first copy has claimed the message and not answered yet.
    cache.add(services.dedup_key(APPID, parse_message(message.encode())), "pending", 30)
    started = time.monotonic()
    answer = oa.post(message)
    assert (answer.status, answer.body) == (200, b"success")
    assert 0.3 <= time.monotonic() - started < 2
    assert handled == []


def test_an_unexpected_error_is_503_and_the_retry_handles_the_message(oa, monkeypatch, caplog):
    real = services._subscribe
    failures = iter([RuntimeError("boom")])

    def flaky(appid: str, message: Any) -> str:
        error = next(failures, None)
        if error:
            raise error
        return real(appid, message)

    monkeypatch.setitem(services.EVENTS, "subscribe", flaky)
    first = oa.post(SUBSCRIBE)
    assert (first.status, first.body, first.content_type) == (503, b"try again later", "text/plain; charset=utf-8")
    assert "official account: a message failed" in caplog.text
    # WeChat's retry: the claim was released, so it is handled now.
    assert oa.post(SUBSCRIBE).reply["Content"] == services.WELCOME
    assert Follower.objects.get().subscribed


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_identical_copies_at_once_run_once_and_get_one_reply(oa, monkeypatch, safe):
    user = UserFactory()
    cache.set("oa:bind:bind_race", user.pk, 600)
    calls: list[int] = []
    real = services.route

    def slow(*, appid: str, message: Any) -> str:
        calls.append(threading.get_ident())
        time.sleep(0.3)  # the other copies arrive while this one works
        return real(appid=appid, message=message)

    monkeypatch.setattr(services, "route", slow)
    sent: list[Any] = []
    monkeypatch.setattr(tasks.fetch_follower_info, "delay", lambda *args: sent.append(args))
    event = event_message(OPENID, "subscribe", "qrscene_bind_race", create_time=1700000000)
    n = 6
    barrier = threading.Barrier(n)
    answers: list[Any] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            wechat = Wechat(client=Client())
            barrier.wait(timeout=10)
            answers.append(wechat.post(event, safe=safe))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(calls) == 1
    assert len(answers) == n and {a.status for a in answers} == {200}
    assert {a.reply_xml for a in answers} == {answers[0].reply_xml}
    assert answers[0].reply["Content"] == f"{services.WELCOME}\n\n{services.BOUND}"
    assert Follower.objects.count() == 1
    assert list(WechatIdentity.objects.filter(appid=APPID).values_list("user_id", "openid")) == [(user.pk, OPENID)]
    assert sent == [(APPID, OPENID)]


# --- what one message costs -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # as in production: no test transaction around the view
@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_one_text_message_is_one_query(oa, django_assert_num_queries, safe):
    KeywordReply.objects.create(keyword="hours", content="9-18")
    KeywordReply.objects.create(keyword="our", match="contains", content="contains")
    query, body = oa.encrypted(text_message(OPENID, "hours")) if safe else (oa.query(), text_message(OPENID, "hours"))
    with django_assert_num_queries(1):
        response = oa.raw_post(query, body)
    assert oa.read(response, safe=safe).reply["Content"] == "9-18"
