"""The keyword replies cached on the shared cache: the same reply as the database query they replaced, an
admin edit taking effect on the next message, and no SQL for a text message once they are cached."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.db import transaction
from django.db.models import Case, F, IntegerField, Q, Value, When
from django.db.models.functions import Upper
from django.urls import reverse

from officialaccount import services
from officialaccount.models import KeywordReply, forget_cached_replies
from tests.officialaccount.conftest import BOTH_MODES, event_message, text_message

pytestmark = pytest.mark.django_db

OPENID = "o-follower-reply-cache-00001"


def reply_to_text(text: str) -> str:
    message = {"MsgType": "text", "FromUserName": OPENID, "ToUserName": "gh", "Content": text, "MsgId": "1"}
    return content_of(services.route(appid="wx", message=message))


def content_of(xml: str) -> str:
    return xml.split("<Content><![CDATA[", 1)[1].split("]]></Content>", 1)[0] if "<Content>" in xml else xml


def queried_reply(text: str) -> str:
    """What the database query the cache replaced answered (kept here as the oracle): its reply's content."""
    text = text.strip()
    is_keyword = Q(match="exact", upper_keyword=Upper(Value(text))) | Q(
        match="contains", message__icontains=F("keyword")
    )
    reply = (
        KeywordReply.objects.filter(active=True)
        .alias(upper_keyword=Upper("keyword"), message=Value(text))
        .filter(is_keyword | Q(match="default"))
        .annotate(
            rank=Case(
                When(match="exact", then=0), When(match="contains", then=1), default=2, output_field=IntegerField()
            )
        )
        .order_by("rank", "-priority", "pk")
        .first()
    )
    return reply.content if reply else services.DEFAULT_REPLY


REPLIES: list[dict[str, Any]] = [
    {"keyword": "price", "match": "contains", "content": "contains price", "priority": 100},
    {"keyword": "Price list", "content": "exact low", "priority": 0},
    {"keyword": "price list", "content": "exact high", "priority": 5},
    {"keyword": "PRICE LIST", "content": "exact high later", "priority": 5},
    {"keyword": "list", "match": "contains", "content": "contains list", "priority": 100},
    {"keyword": "refund", "match": "contains", "content": "refund early", "priority": 1},
    {"keyword": "REFUND", "match": "contains", "content": "refund later", "priority": 1},
    {"keyword": "50%_off", "match": "contains", "content": "sale", "priority": 0},
    {"keyword": "你好", "content": "你好！", "priority": 0},
    {"keyword": "hello", "content": "inactive", "active": False, "priority": 99},
    {"keyword": "hello", "match": "click", "content": "a menu key", "priority": 99},
    {"keyword": "hello", "match": "subscribe", "content": "a welcome", "priority": 99},
    {"match": "default", "content": "default low", "priority": 0},
    {"match": "default", "content": "default high", "priority": 3},
]
TEXTS = [
    " price LIST ",
    "price list",
    "what is the price list?",
    "what is the price?",
    "a LIST",
    "I want a Refund",
    "is it 50%_off today",
    "is it 50 percent off",
    "50%xoff",
    "你好",
    "  你好 ",
    "hello",
    "",
    "something else",
]


@pytest.mark.parametrize("text", TEXTS)
def test_every_match_kind_and_priority_answers_as_the_query_did(oa, text):
    for fields in REPLIES:
        KeywordReply.objects.create(**fields)
    assert reply_to_text(text) == queried_reply(text)


def test_the_expected_winners(oa):
    for fields in REPLIES:
        KeywordReply.objects.create(**fields)
    assert reply_to_text(" price LIST ") == "exact high"  # exact first, then priority, then the oldest
    assert reply_to_text("what is the price list?") == "contains price"  # contained: priority, then the oldest
    assert reply_to_text("I want a Refund") == "refund early"
    assert reply_to_text("50%xoff") == "default high"  # LIKE wildcards are literal; the default by priority
    assert reply_to_text("hello") == "default high"  # inactive, click and subscribe replies never answer a text


def test_without_any_reply_the_built_in_default(oa):
    assert reply_to_text("anything") == services.DEFAULT_REPLY


def test_click_by_its_exact_key_and_subscribe_by_priority(oa):
    KeywordReply.objects.create(keyword="MENU_A", match="click", content="low", priority=0)
    KeywordReply.objects.create(keyword="MENU_A", match="click", content="high", priority=2)
    KeywordReply.objects.create(keyword="MENU_B", match="click", content="off", active=False)
    KeywordReply.objects.create(match="subscribe", content="welcome old", priority=1)
    KeywordReply.objects.create(match="subscribe", content="welcome new", priority=1)
    assert content_of(oa.post(event_message(OPENID, "CLICK", "MENU_A")).reply_xml) == "high"
    assert oa.post(event_message(OPENID, "CLICK", "menu_a")).body == b"success"  # the key's case counts
    assert oa.post(event_message(OPENID, "CLICK", "MENU_B")).body == b"success"
    assert oa.post(event_message(OPENID, "subscribe")).reply["Content"] == "welcome old"


def test_the_replies_are_cached_as_plain_data_under_one_key(oa):
    KeywordReply.objects.create(keyword="hours", content="9-18")
    assert cache.get(services.REPLIES_KEY) is None
    reply_to_text("hours")
    cached = cache.get(services.REPLIES_KEY)  # with the menu's replies the migration seeds
    assert all(type(reply) is dict for reply in cached)
    assert [reply["content"] for reply in cached if reply["keyword"] == "hours"] == ["9-18"]
    assert len(cached) == KeywordReply.objects.filter(active=True).count()


def test_an_admin_edit_and_delete_answer_the_next_message(oa, admin_client, django_capture_on_commit_callbacks):
    reply = KeywordReply.objects.create(keyword="hours", content="9-18")
    assert oa.post(text_message(OPENID, "hours")).reply["Content"] == "9-18"  # now cached
    url = reverse("admin:officialaccount_keywordreply_change", args=[reply.pk])
    form = {"match": "exact", "keyword": "hours", "active": "on", "priority": "0", "reply_type": "text"}
    form |= {"content": "10-19", "media_id": "", "articles": "[]"}
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(url, form).status_code == 302
    assert oa.post(text_message(OPENID, "hours")).reply["Content"] == "10-19"
    delete = reverse("admin:officialaccount_keywordreply_delete", args=[reply.pk])
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert oa.post(text_message(OPENID, "hours")).reply["Content"] == services.DEFAULT_REPLY


def test_the_cache_is_emptied_after_the_commit_not_before(oa, django_capture_on_commit_callbacks):
    reply = KeywordReply.objects.create(keyword="hours", content="9-18")
    reply_to_text("hours")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        reply.content = "10-19"
        reply.save()
        assert cache.get(services.REPLIES_KEY) is not None  # not yet committed: still the old rows
    assert callbacks == [forget_cached_replies]
    callbacks[0]()
    assert cache.get(services.REPLIES_KEY) is None
    assert reply_to_text("hours") == "10-19"


def test_a_rolled_back_save_leaves_the_cache_alone(oa, django_capture_on_commit_callbacks):
    reply = KeywordReply.objects.create(keyword="hours", content="9-18")
    reply_to_text("hours")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            reply.content = "never"
            reply.save()
            raise RuntimeError
    assert callbacks == []
    assert cache.get(services.REPLIES_KEY) is not None
    assert reply_to_text("hours") == "9-18"


@pytest.mark.django_db(transaction=True)  # as in production: no test transaction around the view
@BOTH_MODES
def test_a_text_message_makes_no_query_once_the_replies_are_cached(oa, django_assert_num_queries):
    KeywordReply.objects.create(keyword="hours", content="9-18")
    KeywordReply.objects.create(keyword="our", match="contains", content="contains")
    assert oa.post(text_message(OPENID, "hello")).reply["Content"] == services.DEFAULT_REPLY  # fills the cache
    with django_assert_num_queries(0):
        answer = oa.post(text_message(OPENID, "hours"))
    assert answer.reply["Content"] == "9-18"


def test_a_bulk_delete_in_the_admin_empties_the_cache(oa, admin_client, django_capture_on_commit_callbacks):
    reply = KeywordReply.objects.create(keyword="hours", content="9-18")
    assert reply_to_text("hours") == "9-18"
    changelist = reverse("admin:officialaccount_keywordreply_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_client.post(
            changelist, {"action": "delete_selected", "_selected_action": [reply.pk], "post": "yes"}
        )
    assert answer.status_code == 302 and not KeywordReply.objects.filter(pk=reply.pk).exists()
    assert reply_to_text("hours") == services.DEFAULT_REPLY
