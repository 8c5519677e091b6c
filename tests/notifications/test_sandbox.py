"""Pushes through the real PushClient to the sandbox's inbox (in-process, WeChat's answers)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import User
from config import providers
from notifications import selectors, services, tasks
from notifications.models import PushBatch, PushDelivery
from officialaccount import services as oa_services
from officialaccount.models import TemplateSendReport
from payments import services as payments
from providers.sandbox.wechat import openid_for
from providers.trades import Trade
from tests.factories import OrderFactory, ProductFactory, UserFactory, WechatIdentityFactory

DATA = {"thing1": "New arrivals", "time2": "2026-11-30 12:00"}


@pytest.fixture
def inbox(wechat_sandbox: Any) -> Any:
    return wechat_sandbox.inbox


def oa_follower(wechat_sandbox: Any, name: str) -> User:
    """A sandbox user following the official account, bound to a user of ours."""
    appid = settings.WECHAT_OA_APPID
    wechat_sandbox._register(appid, name)
    return WechatIdentityFactory(  # type: ignore[no-any-return]
        user=UserFactory(username=name), appid=appid, openid=openid_for(appid, name), kind="official_account"
    ).user


def mp_user(name: str) -> User:
    appid = providers.miniprogram_appid()
    return WechatIdentityFactory(user=UserFactory(username=name), appid=appid, openid=openid_for(appid, name)).user  # type: ignore[no-any-return]


def push(users: list[User], *, channel: str = "TEMPLATE", template_id: str = "tpl-news", data: Any = None) -> Any:
    return services.create_batch(
        created_by=None, channel=channel, template_id=template_id, data=data or DATA, user_ids=[u.pk for u in users]
    )


def sent_now(capture: Any, make: Any) -> PushBatch:
    with capture(execute=True):
        batch = make()
    batch.refresh_from_db()
    return batch  # type: ignore[no-any-return]


def test_three_followers_one_refuses_two_cards_arrive(db, wechat_sandbox, inbox, django_capture_on_commit_callbacks):
    users = [oa_follower(wechat_sandbox, name) for name in ("ann", "refuse-bo", "cat")]
    batch = sent_now(django_capture_on_commit_callbacks, lambda: push(users))
    assert (batch.status, batch.sent, batch.skipped) == ("DONE", 2, 1)
    cards = inbox.messages()
    assert sorted(card["user"] for card in cards) == ["ann", "cat"]
    assert {card["kind"] for card in cards} == {"template"}
    refused = PushDelivery.objects.get(batch=batch, status="SKIPPED")
    assert refused.errcode == 43101 and "refuse" in refused.errmsg
    assert selectors.outcomes(batch.pk)[0] == {"status": "SENT", "errcode": 0, "errmsg": "", "count": 2}


def test_a_template_message_whose_answer_was_lost_is_retried_and_arrives_once(
    db, wechat_sandbox, inbox, django_capture_on_commit_callbacks
):
    ann = oa_follower(wechat_sandbox, "ann")
    providers.push_client("official_account").prepare()  # the fault must hit the send, not the token fetch
    providers.sandbox().set_fault("wechat", "malformed", 1)  # delivered, its answer garbled
    batch = sent_now(django_capture_on_commit_callbacks, lambda: push([ann]))
    assert (batch.status, batch.sent, batch.unknown) == ("DONE", 1, 0)
    delivery = PushDelivery.objects.get(batch=batch)
    (card,) = inbox.messages()  # the retry carried the same client_msg_id: WeChat did not deliver it again
    assert (delivery.attempts, delivery.msgid) == (2, card["msgid"])
    assert card["client_msg_id"] == f"push-{delivery.pk}"


def test_a_customer_service_message_whose_answer_was_lost_is_unknown_never_resent(
    db, wechat_sandbox, inbox, django_capture_on_commit_callbacks
):
    ann = oa_follower(wechat_sandbox, "ann")
    providers.push_client("official_account").prepare()
    providers.sandbox().set_fault("wechat", "malformed", 1)
    batch = sent_now(
        django_capture_on_commit_callbacks,
        lambda: services.create_batch(
            created_by=None,
            channel="CUSTOM",
            message={"msgtype": "text", "text": {"content": "Your parcel left"}},
            user_ids=[ann.pk],
        ),
    )
    assert (batch.status, batch.sent, batch.unknown, batch.pending) == ("DONE", 0, 1, 0)
    delivery = PushDelivery.objects.get(batch=batch)
    assert (delivery.status, delivery.attempts) == ("UNKNOWN", 1)
    assert delivery.errmsg.startswith("maybe delivered, never resent: ")
    assert [card["text"] for card in inbox.messages()] == ["Your parcel left"]  # delivered once, not resent


def test_the_daily_quota_pauses_and_the_batch_resumes_after_the_reset(
    db, wechat_sandbox, inbox, settings, django_capture_on_commit_callbacks
):
    settings.PUSH_QUOTA_PAUSE_SECONDS = 60
    users = [oa_follower(wechat_sandbox, f"f{i}") for i in range(6)]
    inbox.set_quota(settings.WECHAT_OA_APPID, 2)
    batch = sent_now(django_capture_on_commit_callbacks, lambda: push(users))
    assert (batch.status, batch.sent, batch.pending) == ("PAUSED", 2, 4)
    assert len(inbox.messages()) == 2
    inbox.set_quota(settings.WECHAT_OA_APPID, None)  # midnight came
    PushBatch.objects.filter(pk=batch.pk).update(paused_until=timezone.now() - dt.timedelta(seconds=1))
    services.resume_due()
    batch.refresh_from_db()
    assert (batch.status, batch.sent, batch.pending) == ("DONE", 6, 0)
    assert sorted(card["user"] for card in inbox.messages()) == [f"f{i}" for i in range(6)]  # none twice


def test_one_subscription_two_subscribe_messages_one_arrives(
    db, wechat_sandbox, inbox, django_capture_on_commit_callbacks
):
    mia = mp_user("mia")
    inbox.grant_subscription(providers.miniprogram_appid(), "mia", "tpl-ship")
    services.record_subscription(user=mia, results={"tpl-ship": "accept"})
    batches = [
        sent_now(django_capture_on_commit_callbacks, lambda: push([mia], channel="SUBSCRIBE", template_id="tpl-ship"))
        for _ in range(2)
    ]
    assert [(b.sent, b.skipped) for b in batches] == [(1, 0), (0, 1)]
    assert [card["kind"] for card in inbox.messages(user="mia")] == ["subscribe"]


def test_a_subscribe_message_wechat_refuses_is_skipped(db, wechat_sandbox, inbox, django_capture_on_commit_callbacks):
    """Our record says accepted, WeChat has none (accepted on another device and used): 43101, skipped."""
    mia = mp_user("mia")
    services.record_subscription(user=mia, results={"tpl-ship": "accept"})
    batch = sent_now(
        django_capture_on_commit_callbacks, lambda: push([mia], channel="SUBSCRIBE", template_id="tpl-ship")
    )
    assert (batch.sent, batch.skipped) == (0, 1)
    assert PushDelivery.objects.get(batch=batch).errcode == 43101
    assert inbox.messages() == []


def test_bad_template_data_stops_the_batch_naming_the_field(
    db, wechat_sandbox, inbox, settings, django_capture_on_commit_callbacks
):
    settings.PUSH_STOP_AFTER = 3
    users = [oa_follower(wechat_sandbox, f"f{i}") for i in range(8)]
    batch = sent_now(django_capture_on_commit_callbacks, lambda: push(users, data={"thing1": "x" * 40}))
    assert (batch.status, batch.failed, batch.skipped, batch.sent) == ("STOPPED", 3, 5, 0)
    assert "thing1" in batch.stop_reason
    assert inbox.messages() == []


def test_a_template_report_updates_the_delivery_with_that_msgid(db, wechat_sandbox, django_capture_on_commit_callbacks):
    ann = oa_follower(wechat_sandbox, "ann")
    batch = sent_now(django_capture_on_commit_callbacks, lambda: push([ann]))
    delivery = PushDelivery.objects.get(batch=batch)
    assert delivery.msgid
    # The event as the server URL routes it (officialaccount.services): recorded, and the delivery told.
    event = {
        "ToUserName": "gh_0123456789ab",
        "FromUserName": delivery.openid,
        "CreateTime": str(int(time.time())),
        "MsgType": "event",
        "Event": "TEMPLATESENDJOBFINISH",
        "MsgID": delivery.msgid,
        "Status": "failed:user block",
    }
    assert oa_services.reply_to(appid=settings.WECHAT_OA_APPID, message=event) == "success"
    assert TemplateSendReport.objects.get(msg_id=delivery.msgid).status == "failed:user block"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.report) == ("SENT", "failed:user block")


def test_template_reports_stored_in_bulk_reach_their_deliveries_on_housekeeping(
    db, wechat_sandbox, django_capture_on_commit_callbacks
):
    """A report stored before its delivery had its msgid: the minute's housekeeping matches it."""
    users = [oa_follower(wechat_sandbox, name) for name in ("ann", "bob")]
    batch = sent_now(django_capture_on_commit_callbacks, lambda: push(users))
    ann, bob = PushDelivery.objects.filter(batch=batch).order_by("user__username")
    TemplateSendReport.objects.bulk_create(
        [
            TemplateSendReport(msg_id=ann.msgid, appid=settings.WECHAT_OA_APPID, openid=ann.openid, status="success"),
            TemplateSendReport(msg_id="other", appid=settings.WECHAT_OA_APPID, openid=bob.openid, status="success"),
        ]
    )
    tasks.housekeeping()
    assert PushDelivery.objects.get(pk=ann.pk).report == "success"
    assert PushDelivery.objects.get(pk=bob.pk).report == ""


def _pay(order: Any, transaction_id: str = "4200000001202611300000000777") -> payments.Outcome:
    config = providers.wechatpay_config()
    trade = Trade(
        out_trade_no=order.out_trade_no,
        state="SUCCESS",
        appid=config.appid,
        mchid=config.mchid,
        amount=order.amount,
        transaction_id=transaction_id,
        payer_openid=order.user.wechat_identities.get().openid,
        success_time=dt.datetime(2026, 11, 30, 4, 5, tzinfo=dt.UTC),
        raw={"out_trade_no": order.out_trade_no},
    )
    return payments.apply_trade(trade, source="NOTIFY")


@pytest.mark.django_db(transaction=True)  # the push starts after the payment's real commit
def test_a_paid_order_pushes_one_subscribe_message_to_the_payer(wechat_sandbox, inbox, settings):
    settings.PUSH_ON_PAID_CHANNEL, settings.PUSH_ON_PAID_TEMPLATE = "SUBSCRIBE", "tpl-paid"
    mia = mp_user("mia")
    inbox.grant_subscription(providers.miniprogram_appid(), "mia", "tpl-paid", count=5)
    services.record_subscription(user=mia, results={"tpl-paid": "accept"})
    order = OrderFactory(user=mia, product=ProductFactory(sku="coffee", title="Coffee", price=1800))
    assert _pay(order) == payments.Outcome.APPLIED
    assert _pay(order) == payments.Outcome.NO_CHANGE  # a duplicate notify: no second push
    services.push_paid_order(order.pk)  # a re-run of the task: the same batch
    cards = inbox.messages(user="mia")
    assert len(cards) == 1
    assert cards[0]["data"] == {
        "amount1": "18.00元",
        "thing2": "Coffee",
        "character_string3": order.out_trade_no,
        "time4": "2026-11-30 12:05",
    }
    assert PushBatch.objects.get().key == f"order-paid:{order.out_trade_no}"


@pytest.mark.django_db(transaction=True)
def test_a_paid_order_without_a_subscription_or_binding_is_skipped_cleanly(wechat_sandbox, inbox, settings):
    settings.PUSH_ON_PAID_CHANNEL, settings.PUSH_ON_PAID_TEMPLATE = "SUBSCRIBE", "tpl-paid"
    mia = mp_user("mia")
    unbound = UserFactory(username="nobody")
    WechatIdentityFactory(user=unbound, appid=settings.WECHAT_OA_APPID, openid="o-oa-only", kind="official_account")
    for number, user in enumerate((mia, unbound)):
        order = OrderFactory(user=user, product=ProductFactory(sku="coffee", price=1800))
        assert _pay(order, f"420000000120261130000000077{number}") == payments.Outcome.APPLIED
    assert inbox.messages() == []
    reasons = sorted(PushDelivery.objects.values_list("status", "errmsg"))
    assert reasons == [("SKIPPED", "no mini-program openid"), ("SKIPPED", "no subscription left for this template")]


@pytest.mark.django_db(transaction=True)
def test_no_paid_order_push_when_it_is_off(wechat_sandbox, inbox, settings):
    settings.PUSH_ON_PAID_CHANNEL = ""
    order = OrderFactory(user=mp_user("mia"), product=ProductFactory(sku="coffee", price=1800))
    assert _pay(order) == payments.Outcome.APPLIED
    assert PushBatch.objects.count() == 0
