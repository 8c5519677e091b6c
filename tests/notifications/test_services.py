"""Sending pushes: claim before the call, at most once, stops, pauses, retries, subscriptions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from config import celery_app
from notifications import services
from notifications.models import PushBatch, PushDelivery, Subscription
from providers.wechat.push import PushOutcome, SendResult
from tests.factories import UserFactory
from tests.notifications.conftest import mp_user, oa_user

DATA = {"thing1": "New arrivals", "time2": "2026-11-30 12:00"}


def template_push(users: list[Any], **extra: Any) -> PushBatch:
    return services.create_batch(
        created_by=None,
        channel="TEMPLATE",
        template_id="tpl-news",
        data=DATA,
        user_ids=[user.pk for user in users],
        **extra,
    )


def sent_now(django_capture_on_commit_callbacks: Any, make: Any) -> PushBatch:
    """Creates a batch and runs what its commit starts (the fan-out, inline)."""
    with django_capture_on_commit_callbacks(execute=True):
        batch = make()
    batch.refresh_from_db()
    return batch  # type: ignore[no-any-return]


def test_a_template_push_sends_to_bound_users_and_skips_the_unbound(db, wechat, django_capture_on_commit_callbacks):
    users = [oa_user("ann"), oa_user("bob"), UserFactory(username="carl")]
    batch = sent_now(django_capture_on_commit_callbacks, lambda: template_push(users))
    assert (batch.status, batch.total, batch.sent, batch.skipped, batch.pending) == ("DONE", 3, 2, 1, 0)
    assert sorted(wechat.openids()) == ["ann-oa", "bob-oa"]
    carl = PushDelivery.objects.get(batch=batch, user=users[2])
    assert (carl.status, carl.errmsg) == ("SKIPPED", "no official-account openid")
    ann = PushDelivery.objects.get(batch=batch, user=users[0])
    assert wechat.calls[0][2] == {
        "template_id": "tpl-news",
        "data": DATA,
        "url": "",
        "miniprogram": None,
        "client_msg_id": f"push-{ann.pk}",  # the same for each retry of this delivery
    }
    assert ann.status == "SENT" and ann.msgid and ann.sent_at and ann.attempts == 1


def test_refusals_are_skipped_with_wechats_answer(db, wechat, django_capture_on_commit_callbacks):
    wechat.answer = lambda openid, n: (
        SendResult(PushOutcome.SKIPPED, errcode=43101, errmsg="user refuse to accept the msg")
        if openid.startswith("refuse")
        else SendResult(PushOutcome.SENT, msgid=str(n))
    )
    users = [oa_user("ann"), oa_user("refuse1"), oa_user("bob")]
    batch = sent_now(django_capture_on_commit_callbacks, lambda: template_push(users))
    assert (batch.status, batch.sent, batch.skipped) == ("DONE", 2, 1)
    refused = PushDelivery.objects.get(batch=batch, status="SKIPPED")
    assert (refused.errcode, refused.attempts) == (43101, 1)


def test_bad_template_data_stops_the_batch_early_naming_the_field(
    db, wechat, settings, django_capture_on_commit_callbacks
):
    settings.PUSH_STOP_AFTER = 3
    wechat.answer = lambda openid, n: SendResult(
        PushOutcome.STOP, errcode=47003, errmsg="argument invalid! data.thing1.value exceeds limit", field="thing1"
    )
    users = [oa_user(f"u{i}") for i in range(10)]
    batch = sent_now(django_capture_on_commit_callbacks, lambda: template_push(users))
    assert len(wechat.calls) == 3
    assert (batch.status, batch.failed, batch.skipped, batch.sent, batch.pending) == ("STOPPED", 3, 7, 0, 0)
    assert "thing1" in batch.stop_reason and "47003" in batch.stop_reason
    assert PushDelivery.objects.filter(batch=batch, status="PENDING").count() == 0


def test_the_daily_quota_pauses_the_batch_until_the_reset_then_it_resumes(
    db, wechat, settings, django_capture_on_commit_callbacks
):
    settings.PUSH_QUOTA_PAUSE_SECONDS = 600
    wechat.answer = lambda openid, n: (
        SendResult(PushOutcome.QUOTA, errcode=45009, errmsg="reach max api daily quota limit")
        if n == 3
        else SendResult(PushOutcome.SENT, msgid=str(n))
    )
    users = [oa_user(f"u{i}") for i in range(6)]
    batch = sent_now(django_capture_on_commit_callbacks, lambda: template_push(users))
    assert (batch.status, batch.sent, batch.pending) == ("PAUSED", 2, 4)
    assert batch.paused_until > timezone.now() + dt.timedelta(seconds=590)
    assert services.resume_due() == 0  # not yet
    PushBatch.objects.filter(pk=batch.pk).update(paused_until=timezone.now() - dt.timedelta(seconds=1))
    assert services.resume_due() == 1
    batch.refresh_from_db()
    assert (batch.status, batch.sent, batch.pending) == ("DONE", 6, 0)
    sent_to = [openid for openid in wechat.openids()]
    assert sorted(set(sent_to)) == sorted(f"u{i}-oa" for i in range(6))
    assert len(sent_to) == 7  # the one refused by the quota went again, nothing else twice
    assert PushDelivery.objects.filter(batch=batch, status="SENT").count() == 6


def test_the_quota_resets_at_midnight_in_shanghai(settings):
    settings.PUSH_QUOTA_PAUSE_SECONDS = 0
    # 17:00 UTC is 01:00 the next day in Shanghai: the reset is the midnight after that.
    now = dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC)
    assert services.quota_resets_at(now) == dt.datetime(2026, 12, 1, 16, 1, tzinfo=dt.UTC)


def test_busy_answers_are_retried_with_backoff_then_failed(db, wechat, settings, django_capture_on_commit_callbacks):
    settings.PUSH_MAX_ATTEMPTS = 3
    wechat.answer = lambda openid, n: (
        SendResult(PushOutcome.RETRY, errcode=-1, errmsg="system error")
        if openid == "never-oa" or n == 1
        else SendResult(PushOutcome.SENT, msgid=str(n))
    )
    users = [oa_user("ann"), oa_user("never")]
    batch = sent_now(django_capture_on_commit_callbacks, lambda: template_push(users))
    assert (batch.status, batch.sent, batch.failed) == ("DONE", 1, 1)
    ann, never = PushDelivery.objects.filter(batch=batch).order_by("user__username")
    assert (ann.status, ann.attempts) == ("SENT", 2)
    assert (never.status, never.attempts, never.errcode) == ("FAILED", 3, -1)


def test_a_worker_dying_after_the_claim_leaves_its_delivery_unknown_never_resent(
    db, wechat, settings, django_capture_on_commit_callbacks
):
    users = [oa_user(f"u{i}") for i in range(5)]
    batch = template_push(users)  # not committed yet: nothing sent
    dead = PushDelivery.objects.filter(batch=batch).order_by("pk")[1]
    assert services.claim(dead.pk)  # the dead worker's claim, never marked
    services.fan_out(batch.pk)
    batch.refresh_from_db()
    assert (batch.sent, batch.pending, batch.status) == (4, 1, "RUNNING")
    assert services.mark_stale_unknown() == 0  # within the timeout it may still be sending
    settings.PUSH_CLAIM_TIMEOUT = 0
    assert services.mark_stale_unknown() == 1
    services.fan_out(batch.pk)  # a restarted worker resends nothing
    batch.refresh_from_db()
    assert (batch.status, batch.sent, batch.unknown, batch.pending) == ("DONE", 4, 1, 0)
    assert "u1-oa" not in wechat.openids() and len(wechat.calls) == 4
    assert PushDelivery.objects.get(pk=dead.pk).status == "UNKNOWN"


def test_a_rerun_of_a_chunk_sends_nothing_twice(db, wechat):
    batch = template_push([oa_user("ann"), oa_user("bob")])
    ids = list(PushDelivery.objects.filter(batch=batch).values_list("pk", flat=True))
    services.send_chunk(batch.pk, ids)
    services.send_chunk(batch.pk, ids)
    assert len(wechat.calls) == 2


def subscribe_push(user: Any) -> PushBatch:
    return services.create_batch(
        created_by=None, channel="SUBSCRIBE", template_id="tpl-ship", data={"thing1": "Shipped"}, user_ids=[user.pk]
    )


def test_one_subscription_sends_one_subscribe_message(db, wechat, django_capture_on_commit_callbacks):
    user = mp_user("mia")
    services.record_subscription(user=user, results={"tpl-ship": "accept"})
    first = sent_now(django_capture_on_commit_callbacks, lambda: subscribe_push(user))
    second = sent_now(django_capture_on_commit_callbacks, lambda: subscribe_push(user))
    assert (first.sent, first.skipped) == (1, 0)
    assert (second.sent, second.skipped) == (0, 1)
    assert wechat.openids() == ["mia-mp"]
    assert PushDelivery.objects.get(batch=second).errcode == 43101
    assert Subscription.objects.get(user=user).remaining == 0


def test_subscriptions_count_accepts_and_keep_the_last_answer(db):
    user = mp_user("mia")
    services.record_subscription(user=user, results={"a": "accept", "b": "reject"})
    services.record_subscription(user=user, results={"a": "accept", "b": "ban"})
    rows = {s.template_id: (s.status, s.remaining) for s in Subscription.objects.filter(user=user)}
    assert rows == {"a": ("accept", 2), "b": ("ban", 0)}


@pytest.mark.parametrize(
    "text",
    ['{"a": "maybe"}', "[1]", "not json", '{"errMsg": "requestSubscribeMessage:ok"}', '{"": "accept"}'],
)
def test_bad_subscription_results_are_refused(text):
    with pytest.raises(services.AppError) as refused:
        services.parse_subscription_results(text)
    assert refused.value.code == "BAD_USER_INPUT"


def test_cancel_skips_what_is_not_sent(db, wechat):
    batch = template_push([oa_user("ann"), oa_user("bob")])
    cancelled = services.cancel_batch(batch_id=batch.pk)
    assert (cancelled.status, cancelled.skipped, cancelled.pending) == ("CANCELLED", 2, 0)
    services.fan_out(batch.pk)
    assert wechat.calls == []
    with pytest.raises(services.AppError):
        services.cancel_batch(batch_id=batch.pk)


def test_retrying_failed_deliveries_never_resends_unknown_ones(db, wechat, settings):
    batch = template_push([oa_user("ann"), oa_user("bob")])
    failed, unknown = PushDelivery.objects.filter(batch=batch).order_by("pk")
    PushDelivery.objects.filter(pk=failed.pk).update(status="FAILED", errcode=-1)
    PushDelivery.objects.filter(pk=unknown.pk).update(status="UNKNOWN")
    PushBatch.objects.filter(pk=batch.pk).update(status="DONE", failed=1, unknown=1, pending=0)
    assert services.retry_failed([failed.pk, unknown.pk]) == 1
    services.fan_out(batch.pk)
    batch.refresh_from_db()
    assert wechat.openids() == ["ann-oa"]
    assert (batch.status, batch.sent, batch.failed, batch.unknown) == ("DONE", 1, 0, 1)


def test_a_chunk_is_two_reads_two_statements_a_delivery_and_one_count(db, wechat, django_assert_num_queries):
    batch = template_push([oa_user("ann"), oa_user("bob"), oa_user("cat")])
    ids = list(PushDelivery.objects.filter(batch=batch).values_list("pk", flat=True))
    # the batch and the chunk's deliveries read once; each delivery claimed (UPDATE) and marked (UPDATE);
    # then the batch's counts, counted under its row lock
    with django_assert_num_queries(13) as captured:
        services.send_chunk(batch.pk, ids)
    verbs = [query["sql"].split()[0] for query in captured.captured_queries]
    counted = ["SAVEPOINT", "SELECT", "SELECT", "UPDATE", "RELEASE"]
    assert verbs == ["SELECT", "SELECT"] + ["UPDATE", "UPDATE"] * 3 + counted
    assert len(wechat.calls) == 3
    batch.refresh_from_db()
    assert (batch.status, batch.sent, batch.pending) == ("DONE", 3, 0)
    # the chunk again, as a redelivered Celery message: its batch is done, one read
    with django_assert_num_queries(1):
        services.send_chunk(batch.pk, ids)
    assert len(wechat.calls) == 3


def test_a_delivery_another_worker_claimed_is_left_to_it_and_the_chunk_goes_on(db, wechat):
    batch = template_push([oa_user("ann"), oa_user("bob")])
    taken, free = PushDelivery.objects.filter(batch=batch).order_by("pk")
    assert services.claim(taken.pk)
    assert not services.claim(taken.pk)
    services.send_chunk(batch.pk, [taken.pk, free.pk])
    assert wechat.openids() == ["bob-oa"]


def test_a_paused_batch_claims_nothing(db, wechat):
    batch = template_push([oa_user("ann")])
    delivery = PushDelivery.objects.get(batch=batch)
    PushBatch.objects.filter(pk=batch.pk).update(status="PAUSED")
    assert not services.claim(delivery.pk)
    assert PushDelivery.objects.get(pk=delivery.pk).status == "PENDING"


@pytest.fixture
def fake_clock(monkeypatch: Any) -> list[float]:
    """time.time() that moves only when the code sleeps; the sleeps are recorded after the start time."""
    clock = [1000.25]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr(services.time, "time", lambda: clock[0])
    monkeypatch.setattr(services.time, "sleep", sleep)
    return clock


def test_the_send_rate_holds_in_every_window_of_a_second(settings, fake_clock):
    settings.PUSH_RATE_PER_SECOND = 3
    starts = []
    for _ in range(7):
        services.wait_for_send_slot()
        starts.append(round(fake_clock[0], 2))
    # three at once; the next once those three are more than 1 + RATE_BUCKET seconds back, in whole buckets
    assert starts == [1000.25] * 3 + [1001.35] * 3 + [1002.45]
    assert all(sum(start <= other < start + 1.05 for other in starts) <= 3 for start in starts)


LOST = SendResult(PushOutcome.RETRY, errmsg="api.weixin.qq.com did not answer within 5 s", maybe_received=True)


def test_a_template_message_whose_answers_keep_getting_lost_ends_unknown_never_failed(
    db, wechat, settings, django_capture_on_commit_callbacks
):
    settings.PUSH_MAX_ATTEMPTS = 3
    wechat.answer = lambda openid, n: LOST
    batch = sent_now(django_capture_on_commit_callbacks, lambda: template_push([oa_user("ann")]))
    assert (batch.status, batch.failed, batch.unknown) == ("DONE", 0, 1)
    delivery = PushDelivery.objects.get(batch=batch)
    assert (delivery.status, delivery.attempts) == ("UNKNOWN", 3) and delivery.answer_lost_at is not None
    assert delivery.errmsg.startswith("maybe delivered, never resent: ")
    assert services.retry_failed([delivery.pk]) == 0  # an operator's retry cannot resend it later
    assert len(wechat.calls) == 3  # each with the same client_msg_id
    assert {body["client_msg_id"] for _, _, body in wechat.calls} == {f"push-{delivery.pk}"}


def test_a_busy_answer_after_a_lost_one_ends_unknown_too(db, wechat, settings, django_capture_on_commit_callbacks):
    settings.PUSH_MAX_ATTEMPTS = 2
    busy = SendResult(PushOutcome.RETRY, errcode=-1, errmsg="system error")
    wechat.answer = lambda openid, n: LOST if n == 1 else busy
    batch = sent_now(django_capture_on_commit_callbacks, lambda: template_push([oa_user("ann")]))
    assert (batch.failed, batch.unknown) == (0, 1)


def test_a_lost_answer_is_not_resent_once_wechat_forgot_its_client_msg_id(db, wechat, settings):
    batch = template_push([oa_user("ann")])
    delivery = PushDelivery.objects.get(batch=batch)
    lost_at = timezone.now() - dt.timedelta(seconds=settings.PUSH_RESEND_WITHIN + 1)
    PushDelivery.objects.filter(pk=delivery.pk).update(attempts=1, answer_lost_at=lost_at)  # then paused, resumed
    services.send_chunk(batch.pk, [delivery.pk])
    delivery.refresh_from_db()
    assert wechat.calls == []
    assert delivery.status == "UNKNOWN" and "too late to resend" in delivery.errmsg


def test_a_stopped_batch_leaves_a_lost_answer_unknown_not_skipped(db, wechat):
    batch = template_push([oa_user("ann"), oa_user("bob")])
    lost, never = PushDelivery.objects.filter(batch=batch).order_by("pk")
    PushDelivery.objects.filter(pk=lost.pk).update(attempts=1, answer_lost_at=timezone.now())
    cancelled = services.cancel_batch(batch_id=batch.pk)
    assert (cancelled.skipped, cancelled.unknown, cancelled.pending) == (1, 1, 0)
    assert PushDelivery.objects.get(pk=lost.pk).status == "UNKNOWN"
    assert PushDelivery.objects.get(pk=never.pk).status == "SKIPPED"


def test_a_failure_before_the_send_frees_the_delivery_and_the_chunk_runs_again(
    db, wechat, monkeypatch, django_capture_on_commit_callbacks
):
    real = services.wait_for_send_slot
    failures = iter([ConnectionError("Redis went away")])

    def flaky() -> None:
        for failure in failures:
            raise failure
        real()

    monkeypatch.setattr(services, "wait_for_send_slot", flaky)
    # Eager Celery retries a task inline only when its errors do not propagate (a worker always retries).
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", False)
    batch = sent_now(django_capture_on_commit_callbacks, lambda: template_push([oa_user("ann"), oa_user("bob")]))
    assert (batch.status, batch.sent, batch.unknown) == ("DONE", 2, 0)
    assert sorted(wechat.openids()) == ["ann-oa", "bob-oa"]  # each once
    assert set(PushDelivery.objects.filter(batch=batch).values_list("attempts", flat=True)) == {1}


def test_housekeeping_fans_out_a_running_batch_that_stopped_moving(db, wechat, settings, monkeypatch):
    monkeypatch.setattr(services.tasks.fan_out, "delay_on_commit", lambda *args: None)  # its chunks were lost
    batch = template_push([oa_user("ann"), oa_user("bob")])
    assert services.fan_out_stalled() == 0  # counted just now
    PushBatch.objects.filter(pk=batch.pk).update(
        counted_at=timezone.now() - dt.timedelta(seconds=settings.PUSH_CLAIM_TIMEOUT + 1)
    )
    assert services.fan_out_stalled() == 1
    batch.refresh_from_db()
    assert (batch.status, batch.sent) == ("DONE", 2)
    assert sorted(wechat.openids()) == ["ann-oa", "bob-oa"]
    assert services.fan_out_stalled() == 0


@pytest.mark.parametrize("fails", ["use_subscription", "wait_for_send_slot"])
def test_a_failure_before_a_subscribe_send_gives_back_only_the_subscription_it_used(
    db, wechat, monkeypatch, fails, django_capture_on_commit_callbacks
):
    real = getattr(services, fails)
    failures = iter([ConnectionError("the database or Redis went away")])

    def flaky(*args: Any) -> Any:
        for failure in failures:
            raise failure
        return real(*args)

    monkeypatch.setattr(services, fails, flaky)
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", False)
    user = mp_user("mia")
    services.record_subscription(user=user, results={"tpl-ship": "accept"})
    batch = sent_now(django_capture_on_commit_callbacks, lambda: subscribe_push(user))
    assert (batch.status, batch.sent) == ("DONE", 1)
    assert wechat.openids() == ["mia-mp"]
    assert Subscription.objects.get(user=user).remaining == 0  # one accept, one message: none given back twice
