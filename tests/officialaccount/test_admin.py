"""The admin: every model of the app is in it, keyword replies are edited there (validated), and what WeChat's
events recorded (followers, template deliveries) is read-only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from accounts.models import WechatIdentity
from officialaccount.models import Follower, KeywordReply, TemplateSendReport
from tests.factories import UserFactory, WechatIdentityFactory

pytestmark = pytest.mark.django_db

APPID = "wxoatest0000000001"


def test_every_model_is_in_the_admin():
    models = apps.get_app_config("officialaccount").get_models()
    assert [m.__name__ for m in models if m not in admin.site._registry] == []


@pytest.fixture
def rows():
    user = UserFactory(username="bound_person")
    WechatIdentityFactory(user=user, appid=APPID, openid="o-bound", kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT)
    now = timezone.now()
    return {
        "follower": Follower.objects.create(appid=APPID, openid="o-bound", subscribed=True, subscribed_at=now),
        "loner": Follower.objects.create(appid=APPID, openid="o-loner", subscribed=False, unsubscribed_at=now),
        "keywordreply": KeywordReply.objects.create(keyword="hours", content="9-18"),
        "templatesendreport": TemplateSendReport.objects.create(
            msg_id="200163836", appid=APPID, openid="o-bound", status="success", sent_at=now - dt.timedelta(seconds=3)
        ),
    }


@pytest.mark.parametrize("name", ["follower", "keywordreply", "templatesendreport"])
def test_list_and_change_pages_render(admin_client, rows, name):
    row = rows[name]
    listing = admin_client.get(reverse(f"admin:officialaccount_{name}_changelist"))
    assert listing.status_code == 200
    page = admin_client.get(reverse(f"admin:officialaccount_{name}_change", args=[row.pk]))
    assert page.status_code == 200
    assert str(getattr(row, "openid", None) or getattr(row, "keyword", "")) in page.content.decode()


def test_the_follower_list_shows_the_bound_user_in_one_query_for_the_page(
    admin_client, rows, django_assert_max_num_queries
):
    url = reverse("admin:officialaccount_follower_changelist")
    with django_assert_max_num_queries(8):  # session, user, counts and the page: not one per follower
        page = admin_client.get(url).content.decode()
    assert "bound_person" in page and "o-loner" in page
    assert admin_client.get(url, {"q": "o-loner"}).content.decode().count("o-bound") == 0


@pytest.mark.parametrize("name", ["follower", "templatesendreport"])
def test_what_events_recorded_is_read_only(admin_client, rows, name):
    row = rows[name]
    assert admin_client.get(reverse(f"admin:officialaccount_{name}_add")).status_code == 403
    assert (
        admin_client.post(reverse(f"admin:officialaccount_{name}_delete", args=[row.pk]), {"post": "yes"}).status_code
        == 403
    )
    before = list(type(row).objects.values())
    admin_client.post(reverse(f"admin:officialaccount_{name}_change", args=[row.pk]), {"openid": "changed"})
    assert list(type(row).objects.values()) == before


def test_a_keyword_reply_is_added_in_the_admin_and_validated(admin_client):
    url = reverse("admin:officialaccount_keywordreply_add")
    assert admin_client.get(url).status_code == 200
    base = {"match": "exact", "active": "on", "priority": "0", "media_id": "", "articles": "[]"}
    refused = admin_client.post(url, {**base, "keyword": "logo", "reply_type": "image", "content": ""})
    assert refused.status_code == 200 and "An image reply needs the media_id" in refused.content.decode()
    assert not KeywordReply.objects.filter(keyword="logo").exists()
    added = admin_client.post(url, {**base, "keyword": " Opening hours ", "reply_type": "text", "content": "9-18"})
    assert added.status_code == 302
    reply = KeywordReply.objects.get(keyword="Opening hours")
    assert (reply.match, reply.reply_type, reply.content) == ("exact", "text", "9-18")
