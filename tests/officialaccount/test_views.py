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
from django.test import Client

from accounts.models import WechatIdentity
from accounts.services import BIND_SCENE_PREFIX, bind_scene_key, wechat_login
from config import providers
from officialaccount import services, tasks
from officialaccount.models import Follower, KeywordReply, TemplateSendReport
from providers.sandbox.wechat import unionid_for
from providers.wechat.messages import parse_message
from tests.factories import UserFactory, WechatIdentityFactory
from tests.helpers import run_together
from tests.officialaccount.conftest import (
    ACCOUNT,
    AES_KEY,
    APPID,
    BOTH_MODES,
    SAFE_MODE,
    TOKEN,
    URL,
    Wechat,
    event_message,
    sandbox_openid,
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


@BOTH_MODES
def test_text_gets_the_keyword_reply(oa):
    KeywordReply.objects.create(keyword="hours", content="We are open 9:00-18:00.")
    answer = oa.post(text_message(OPENID, "  HOURS "))
    assert answer.status == 200 and answer.content_type == "text/xml; charset=utf-8"
    reply = answer.reply
    assert reply["MsgType"] == "text" and reply["Content"] == "We are open 9:00-18:00."
    assert reply["ToUserName"] == OPENID and reply["FromUserName"] == ACCOUNT
    assert abs(int(reply["CreateTime"]) - time.time()) < 5
    if oa.safe:  # the reply is encrypted: nothing of it in clear
        assert b"We are open" not in answer.body and b"<Encrypt>" in answer.body


@BOTH_MODES
def test_text_without_a_keyword_gets_the_default_reply(oa):
    answer = oa.post(text_message(OPENID, "anything at all"))
    assert answer.reply["Content"] == services.DEFAULT_REPLY


def test_image_and_news_replies(oa):
    KeywordReply.objects.create(keyword="logo", reply_type="image", media_id="MEDIA_123")
    KeywordReply.objects.create(
        keyword="news",
        reply_type="news",
        articles=[
            {"title": "Hello", "description": "d", "pic_url": "https://e.com/p.png", "url": "https://e.com"},
            {"title": "Second", "url": "https://e.com/2"},
        ],
    )
    image = oa.post(text_message(OPENID, "logo")).reply
    assert image["MsgType"] == "image" and image["Image"] == {"MediaId": "MEDIA_123"}
    # A passive reply carries one article (WeChat drops the rest): the first.
    news = oa.post(text_message(OPENID, "news"))
    assert news.reply["MsgType"] == "news" and news.reply["ArticleCount"] == "1"
    item = news.reply["Articles"]["item"]
    assert item["Title"] == "Hello" and item["Url"] == "https://e.com"
    assert "Second" not in news.reply_xml


@BOTH_MODES
def test_a_cdata_terminator_in_a_reply_survives(oa):
    tricky = "a]]>b<xml>&amp;</xml>]]>"
    KeywordReply.objects.create(keyword="tricky", content=tricky)
    answer = oa.post(text_message(OPENID, "tricky"))
    assert answer.reply["Content"] == tricky
    assert "]]]]><![CDATA[>" in answer.reply_xml


@BOTH_MODES
def test_subscribe_welcomes_and_records_the_follower(oa, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        answer = oa.post(event_message(OPENID, "subscribe", "", create_time=1700000000))
    assert answer.reply["Content"] == services.WELCOME
    follower = Follower.objects.get()
    assert (follower.appid, follower.openid, follower.subscribed) == (APPID, OPENID, True)
    assert follower.subscribed_at.timestamp() == 1700000000 and follower.unsubscribed_at is None
    # The unionid comes from cgi-bin/user/info, in Celery after the commit, not in the request.
    assert enqueued == [(APPID, OPENID)]


def test_subscribe_welcome_from_the_admin(oa):
    KeywordReply.objects.create(match="subscribe", content="Welcome aboard!")
    assert oa.post(event_message(OPENID, "subscribe")).reply["Content"] == "Welcome aboard!"


# --- binding by a bind QR code's scene --------------------------------------------------------------

CONFLICT = "This WeChat account belongs to someone else: bind your own."


def bind_code(user_id: object, name: str) -> str:
    """A bind QR code's scene, its user in the cache as officialAccountBindQrCode leaves them."""
    scene = BIND_SCENE_PREFIX + name
    cache.set(bind_scene_key(scene), user_id, 600)
    return scene


def follows(openid: str) -> None:
    """`openid` follows the account already (their unionid not fetched yet)."""
    Follower.objects.create(appid=APPID, openid=openid, subscribed=True)


@BOTH_MODES
def test_subscribe_with_a_scene_binds_the_user_who_asked(oa):
    user = wechat_login(code="pia").user  # their mini-program identity: sandbox user pia's unionid
    scene = bind_code(user.pk, "scene01")
    openid = sandbox_openid("pia")  # pia scans the code on their own phone
    answer = oa.post(event_message(openid, "subscribe", f"qrscene_{scene}", Ticket="TICKET"))
    assert answer.reply["Content"] == f"{services.WELCOME}\n\n{services.BOUND}"
    identity = WechatIdentity.objects.get(appid=APPID, openid=openid)
    assert identity.user == user and identity.kind == WechatIdentity.Kind.OFFICIAL_ACCOUNT
    assert identity.unionid == unionid_for("pia")  # asked of WeChat before binding
    assert Follower.objects.get().subscribed


def test_scan_by_a_follower_binds(oa):
    user = UserFactory()
    openid = sandbox_openid("pia")
    oa.post(event_message(openid, "subscribe", "", create_time=1700000000))
    scene = bind_code(str(user.pk), "scene02")  # as a string too
    answer = oa.post(event_message(openid, "SCAN", scene, Ticket="TICKET"))
    assert answer.reply["Content"] == services.BOUND
    identity = WechatIdentity.objects.get(appid=APPID, openid=openid)
    assert (identity.user, identity.unionid) == (user, unionid_for("pia"))
    # The same follower scanning again (a new event) is told the same.
    assert oa.post(event_message(openid, "SCAN", scene, create_time=1)).reply["Content"] == services.BOUND
    assert WechatIdentity.objects.filter(appid=APPID).count() == 1


def test_scan_of_an_unknown_or_expired_scene(oa):
    answer = oa.post(event_message(OPENID, "SCAN", BIND_SCENE_PREFIX + "gone"))
    assert answer.reply["Content"] == services.SCENE_EXPIRED
    assert not WechatIdentity.objects.exists()
    # A subscribe through it is only welcomed.
    answer = oa.post(event_message("o-other", "subscribe", f"qrscene_{BIND_SCENE_PREFIX}gone"))
    assert answer.reply["Content"] == services.WELCOME


@BOTH_MODES
@pytest.mark.parametrize("scene", ["campaign42", "42", "xbind0123"])
def test_a_scene_that_is_not_a_bind_is_not_answered_as_one(oa, scene):
    # Even with a user under its key: only a scene with the bind prefix is a bind QR code's.
    cache.set(bind_scene_key(scene), UserFactory().pk, 600)
    openid = sandbox_openid("pia")
    follows(openid)
    before = everything()
    answer = oa.post(event_message(openid, "SCAN", scene, Ticket="TICKET"))
    assert (answer.status, answer.body) == (200, b"success")  # a campaign's code: not ours to answer
    assert everything() == before
    # Following through it: the plain welcome, the follower recorded, nothing bound.
    answer = oa.post(event_message("o-newcomer", "subscribe", f"qrscene_{scene}", Ticket="TICKET"))
    assert answer.reply["Content"] == services.WELCOME
    assert Follower.objects.get(openid="o-newcomer").subscribed
    assert not WechatIdentity.objects.filter(appid=APPID).exists()


def test_scene_of_a_user_when_the_openid_is_bound_to_someone_else(oa):
    owner, asker = UserFactory(), UserFactory()
    openid = sandbox_openid("pia")
    WechatIdentityFactory(user=owner, appid=APPID, openid=openid, kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT)
    scene = bind_code(asker.pk, "scene03")
    before = list(WechatIdentity.objects.values())
    answer = oa.post(event_message(openid, "subscribe", f"qrscene_{scene}"))
    assert answer.reply["Content"] == f"{services.WELCOME}\n\nThis WeChat account is already bound to another user."
    assert list(WechatIdentity.objects.values()) == before


@BOTH_MODES
def test_someone_else_scanning_a_users_code_is_refused_and_the_code_stays_theirs(oa):
    user = wechat_login(code="pia").user  # pia logged in to the mini-program
    scene = bind_code(user.pk, "scene04")
    onlooker = sandbox_openid("mallory")  # mallory, who follows, scans the code on pia's screen
    follows(onlooker)
    before = everything()
    answer = oa.post(event_message(onlooker, "SCAN", scene, Ticket="TICKET"))
    assert answer.reply["Content"] == CONFLICT
    assert everything() == before
    # pia scans it: bound, to pia's WeChat.
    openid = sandbox_openid("pia")
    answer = oa.post(event_message(openid, "subscribe", f"qrscene_{scene}", Ticket="TICKET"))
    assert answer.reply["Content"] == f"{services.WELCOME}\n\n{services.BOUND}"
    (identity,) = WechatIdentity.objects.filter(appid=APPID)
    assert (identity.user, identity.openid, identity.unionid) == (user, openid, unionid_for("pia"))


@BOTH_MODES
@pytest.mark.parametrize("fault", ["http_500", "malformed"])
def test_wechat_failing_to_say_who_scanned_binds_nothing_and_the_code_stays_usable(oa, fault):
    user = wechat_login(code="pia").user
    scene = bind_code(user.pk, "scene05")
    openid = sandbox_openid("pia")
    follows(openid)
    before = everything()
    sandbox = providers.sandbox()
    sandbox.set_fault("wechat", fault, 1)
    answer = oa.post(event_message(openid, "SCAN", scene, create_time=1700000000))
    assert answer.reply["Content"] == services.BIND_RETRY
    assert sandbox.faults() == {}  # the failure was WeChat's answer to that scan
    assert everything() == before
    # Scanned again in a moment (a new event): bound.
    answer = oa.post(event_message(openid, "SCAN", scene, create_time=1700000001))
    assert answer.reply["Content"] == services.BOUND
    assert WechatIdentity.objects.get(appid=APPID, openid=openid).user == user


@BOTH_MODES
def test_unsubscribe_marks_the_follower_unfollowed(oa):
    oa.post(event_message(OPENID, "subscribe", "", create_time=1700000000))
    answer = oa.post(event_message(OPENID, "unsubscribe", "", create_time=1700000100))
    assert (answer.status, answer.body) == (200, b"success")
    follower = Follower.objects.get()
    assert follower.subscribed is False and follower.unsubscribed_at.timestamp() == 1700000100
    assert follower.subscribed_at.timestamp() == 1700000000


@BOTH_MODES
def test_click_answers_the_menu_keys_reply(oa):
    # MENU_HELP's reply is seeded with the example menu.json (migration 0002).
    seeded = KeywordReply.objects.get(match="click", keyword="MENU_HELP")
    answer = oa.post(event_message(OPENID, "CLICK", "MENU_HELP"))
    assert answer.reply["Content"] == seeded.content
    # A key nobody wrote a reply for: nothing to say.
    assert oa.post(event_message(OPENID, "CLICK", "MENU_NOBODY")).body == b"success"


def test_view_is_success(oa):
    before = everything()
    answer = oa.post(event_message(OPENID, "VIEW", "https://example.com/shop", MenuId="1"))
    assert (answer.status, answer.body, answer.content_type) == (200, b"success", "text/plain; charset=utf-8")
    assert everything() == before


@BOTH_MODES
def test_template_send_job_finish_is_recorded_once(oa):
    event = event_message(
        OPENID, "TEMPLATESENDJOBFINISH", None, create_time=1700000000, MsgID="200163836", Status="failed:user block"
    )
    assert oa.post(event).body == b"success"
    # WeChat's retry of the same event, and the same MsgID in another event: one row.
    assert oa.post(event).body == b"success"
    other = event_message(
        OPENID, "TEMPLATESENDJOBFINISH", None, create_time=1700000005, MsgID="200163836", Status="success"
    )
    assert oa.post(other).body == b"success"
    report = TemplateSendReport.objects.get()
    assert (report.msg_id, report.openid, report.status) == ("200163836", OPENID, "failed:user block")
    assert report.sent_at.timestamp() == 1700000000


@BOTH_MODES
def test_template_reports_of_one_second_with_other_msgids_are_each_recorded(oa, handled):
    # Two template messages to one follower finished in the same second: the MsgID tells them apart.
    reports = [
        event_message(OPENID, "TEMPLATESENDJOBFINISH", None, create_time=1700000000, MsgID=msg_id, Status=status)
        for msg_id, status in (("200163836", "success"), ("200163837", "failed:user block"))
    ]
    answers = [oa.post(report) for report in reports]
    assert [(a.status, a.body) for a in answers] == [(200, b"success")] * 2
    assert handled == ["TEMPLATESENDJOBFINISH"] * 2
    assert sorted(TemplateSendReport.objects.values_list("msg_id", "openid", "status")) == [
        ("200163836", OPENID, "success"),
        ("200163837", OPENID, "failed:user block"),
    ]
    # Each one's retry is still the one report.
    assert oa.post(reports[1]).body == b"success"
    assert handled == ["TEMPLATESENDJOBFINISH"] * 2 and TemplateSendReport.objects.count() == 2


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
@BOTH_MODES
def test_signed_events_with_nested_elements_are_success_not_an_error(oa, event):
    # WeChat retries anything but an answer: these must not be refused as malformed.
    xml = event_message(OPENID, event, "KEY").replace("</xml>", NESTED_EVENTS[event] + "</xml>")
    before = everything()
    answer = oa.post(xml)
    assert (answer.status, answer.body) == (200, b"success")
    assert everything() == before


@SAFE_MODE
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


def signed(oa: Wechat, xml: str, timestamp: str | None = None) -> tuple[dict[str, str], str]:
    """(the query, the body) of `xml` as WeChat posts it to the account (encrypted in safe mode), its URL signed
    at `timestamp` (now by default)."""
    query = oa.query(timestamp=timestamp)
    return oa.encrypted(xml, query=query) if oa.safe else (query, xml)


@BOTH_MODES
@pytest.mark.parametrize("change", [{"signature": "0" * 40}, {"signature": None}, {"timestamp": "2"}])
def test_post_with_a_bad_plain_signature_is_403(oa, change):
    query, body = signed(oa, SUBSCRIBE)
    query = {k: v for k, v in {**query, **change}.items() if v is not None}
    before = everything()
    response = oa.raw_post(query, body)
    assert (response.status_code, response.content) == (403, b"signature does not verify")
    assert everything() == before


@BOTH_MODES
@pytest.mark.parametrize("age", [310, 3600, 400 * 86400, -310, -86400], ids=["old", "hour", "year", "future", "day"])
def test_a_post_signed_more_than_5_minutes_from_now_is_403(oa, age):
    # The plain signature covers the URL's timestamp only: an old one, replayed, is refused.
    query, body = signed(oa, SUBSCRIBE, str(int(time.time()) - age))
    before = everything()
    response = oa.raw_post(query, body)
    assert (response.status_code, response.content) == (403, b"timestamp is not within 5 minutes of now")
    assert everything() == before


@BOTH_MODES
@pytest.mark.parametrize(
    "timestamp",
    [
        "",
        "soon",
        "1.7e9",
        "0x6553f100",
        "1700000000 OR 1",
        "9" * 400,  # too large for a float
    ],
    ids=["empty", "word", "float", "hex", "trailing", "huge"],
)
def test_a_post_whose_timestamp_is_no_number_is_403(oa, timestamp):
    query, body = signed(oa, SUBSCRIBE, timestamp)
    before = everything()
    response = oa.raw_post(query, body)
    assert (response.status_code, response.content) == (403, b"timestamp is not within 5 minutes of now")
    assert everything() == before


@BOTH_MODES
@pytest.mark.parametrize("age", [290, -290], ids=["before", "after"])
def test_a_post_signed_within_5_minutes_of_now_is_taken(oa, age):
    query, body = signed(oa, SUBSCRIBE, str(int(time.time()) - age))
    answer = oa.read(oa.raw_post(query, body))
    assert answer.reply["Content"] == services.WELCOME
    assert Follower.objects.get().subscribed


@SAFE_MODE
@pytest.mark.parametrize("encrypt_type", [None, "raw", "RAW", "none"])
@pytest.mark.parametrize(
    ("xml", "reply"),
    [(SUBSCRIBE, services.WELCOME), (text_message(OPENID, "hours"), "We are open 9:00-18:00.")],
    ids=["subscribe", "text"],
)
def test_a_plaintext_post_to_a_safe_mode_account_is_403(oa, encrypt_type, xml, reply):
    # WeChat encrypts everything to an account with an EncodingAESKey: a plaintext body, whose signature
    # covers none of it, is not WeChat's.
    KeywordReply.objects.create(keyword="hours", content="We are open 9:00-18:00.")
    query = oa.query(**({"encrypt_type": encrypt_type} if encrypt_type else {}))
    before = everything()
    response = oa.raw_post(query, xml)
    assert (response.status_code, response.content) == (403, b"this account takes safe-mode messages only")
    assert everything() == before
    # The same message as WeChat sends it, encrypted: answered.
    assert oa.post(xml).reply["Content"] == reply


@SAFE_MODE
def test_safe_mode_never_takes_the_plain_signature_for_the_ciphertext(oa):
    query, body = oa.encrypted(SUBSCRIBE)
    before = everything()
    for msg_signature in ("0" * 40, query["signature"], ""):
        response = oa.raw_post({**query, "msg_signature": msg_signature}, body)
        assert (response.status_code, response.content) == (403, b"msg_signature does not verify")
    without = {k: v for k, v in query.items() if k != "msg_signature"}
    assert oa.raw_post(without, body).status_code == 403
    assert everything() == before


@SAFE_MODE
def test_safe_mode_with_a_tampered_ciphertext_is_403(oa):
    query, body = oa.encrypted(SUBSCRIBE)
    start = body.index("<![CDATA[", body.index("<Encrypt>")) + 9
    tampered = body[:start] + ("A" if body[start] != "A" else "B") + body[start + 1 :]
    before = everything()
    assert oa.raw_post(query, tampered).status_code == 403  # msg_signature covers the Encrypt element
    assert everything() == before


@SAFE_MODE
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


@SAFE_MODE
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


def test_safe_mode_without_an_aes_key_is_403(oa):
    query, body = oa.encrypted(SUBSCRIBE)  # to the plain-mode account: it has no key to decrypt with
    before = everything()
    response = oa.raw_post(query, body)
    assert (response.status_code, response.content) == (403, b"safe mode is not configured here")
    assert everything() == before


@SAFE_MODE
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
@BOTH_MODES
def test_xml_with_a_doctype_is_400(oa, xml):
    before = everything()
    query, body = signed(oa, xml)  # in safe mode inside the (correctly encrypted and signed) ciphertext
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


@BOTH_MODES
def test_a_retried_message_gets_the_same_reply_and_runs_once(oa, handled, enqueued, django_capture_on_commit_callbacks):
    user = UserFactory()
    scene = bind_code(user.pk, "retry")
    openid = sandbox_openid("pia")
    event = event_message(openid, "subscribe", f"qrscene_{scene}", create_time=1700000000)
    query = oa.query()
    with django_capture_on_commit_callbacks(execute=True):
        first = oa.post(event, query=query)
        time.sleep(1.1)  # a later reply would carry another CreateTime
        # WeChat's 3 retries: the same message, each with a fresh timestamp and nonce in the URL.
        retries = [oa.post(event) for _ in range(3)]
    assert first.reply["Content"].endswith(services.BOUND)
    assert [r.reply_xml for r in retries] == [first.reply_xml] * 3
    if oa.safe:  # encrypted afresh each time: other bytes, the same reply inside
        assert len({first.body, *(r.body for r in retries)}) == 4
    assert handled == ["subscribe"]
    assert enqueued == [(APPID, openid)]
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
@BOTH_MODES
def test_identical_copies_at_once_run_once_and_get_one_reply(oa, monkeypatch):
    user = UserFactory()
    scene = bind_code(user.pk, "race")
    openid = sandbox_openid("pia")
    calls: list[int] = []
    real = services.route

    def slow(*, appid: str, message: Any) -> str:
        calls.append(threading.get_ident())
        time.sleep(0.3)  # the other copies arrive while this one works
        return real(appid=appid, message=message)

    monkeypatch.setattr(services, "route", slow)
    sent: list[Any] = []
    monkeypatch.setattr(tasks.fetch_follower_info, "delay", lambda *args: sent.append(args))
    event = event_message(openid, "subscribe", f"qrscene_{scene}", create_time=1700000000)
    n = 6
    answers = run_together(lambda: Wechat(client=Client(), safe=oa.safe).post(event), n, timeout=30)
    assert not [a for a in answers if isinstance(a, BaseException)], answers
    assert len(calls) == 1
    assert len(answers) == n and {a.status for a in answers} == {200}
    assert {a.reply_xml for a in answers} == {answers[0].reply_xml}
    assert answers[0].reply["Content"] == f"{services.WELCOME}\n\n{services.BOUND}"
    assert Follower.objects.count() == 1
    assert list(WechatIdentity.objects.filter(appid=APPID).values_list("user_id", "openid")) == [(user.pk, openid)]
    assert sent == [(APPID, openid)]


# --- what one message costs -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # as in production: no test transaction around the view
@BOTH_MODES
def test_one_text_message_is_one_query(oa, django_assert_num_queries):
    KeywordReply.objects.create(keyword="hours", content="9-18")
    KeywordReply.objects.create(keyword="our", match="contains", content="contains")
    query, body = signed(oa, text_message(OPENID, "hours"))
    with django_assert_num_queries(1):
        response = oa.raw_post(query, body)
    assert oa.read(response).reply["Content"] == "9-18"
