"""Pushes: create a batch, send one delivery (claim, call WeChat, mark), stop, pause, resume, cancel.

A delivery is claimed (PENDING -> SENDING in one conditional UPDATE) before WeChat is called and marked
after; one found SENDING past PUSH_CLAIM_TIMEOUT belonged to a worker that died and becomes UNKNOWN, never
resent (at most once). So is a send whose answer was lost (a read timeout, a garbled answer), but for a
template message: it is retried with its client_msg_id, of which WeChat delivers one per user within 10
minutes. The batch's counts are counted from its deliveries (refresh_counts) as workers go, and whenever a
batch changes state.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce, Substr
from django.utils import timezone

from accounts.models import User, WechatIdentity
from config import providers
from core.errors import AppError, ErrorCode
from notifications import tasks
from notifications.models import PushBatch, PushDelivery, Subscription
from officialaccount.models import TemplateSendReport
from payments.models import Order
from providers.wechat.push import PushClient, PushOutcome, SendResult

logger = logging.getLogger(__name__)

# Any: without Django stubs mypy reads a TextChoices member as its (value, label) tuple.
Channel: Any = PushBatch.Channel
BatchStatus: Any = PushBatch.Status
Status: Any = PushDelivery.Status
SubscriptionStatus: Any = Subscription.Status
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
# Recipients read per query when a batch is created: memory stays flat in the batch's size.
RECIPIENT_PAGE = 1000
MAX_USER_IDS = 10_000
MAX_FIELDS = 30
SUBSCRIBE_ANSWERS = set(SubscriptionStatus.values)
# The batch's counts are refreshed this often while a worker sends (and when its chunk ends).
PROGRESS_SECONDS = 1.0
# The shared rate's buckets (seconds): also how much the sends' start-to-arrival times may differ.
RATE_BUCKET = 0.05
RATE_LOOKBACK = round(1 / RATE_BUCKET) + 1  # earlier buckets counted with the current one: >= 1 + RATE_BUCKET s
RATE_KEY_TIMEOUT = 5


def channel_app(channel: str) -> tuple[str, str]:
    """(push client name, appid) of the app a channel sends from."""
    if channel == Channel.SUBSCRIBE:
        return "miniprogram", providers.miniprogram_appid()
    if not providers.official_account_ready():
        raise AppError(
            ErrorCode.BAD_USER_INPUT, "The official account is not configured (WECHAT_OA_APPID, WECHAT_OA_SECRET)."
        )
    return "official_account", str(settings.WECHAT_OA_APPID)


def _validate(
    *, channel: str, template_id: str, data: Mapping[str, str], page: str, url: str, message: Mapping[str, Any]
) -> None:
    if channel not in Channel.values:
        raise AppError(ErrorCode.BAD_USER_INPUT, f"channel: one of {', '.join(Channel.values)}.")
    if channel == Channel.CUSTOM:
        msgtype = message.get("msgtype")
        if not isinstance(msgtype, str) or not isinstance(message.get(msgtype), Mapping):
            raise AppError(ErrorCode.BAD_USER_INPUT, 'A customer-service message is {"msgtype": T, T: {...}}.')
    else:
        if not template_id or len(template_id) > 128:
            raise AppError(ErrorCode.BAD_USER_INPUT, "templateId: 1 to 128 characters.")
        if not data or len(data) > MAX_FIELDS:
            raise AppError(ErrorCode.BAD_USER_INPUT, f"data: 1 to {MAX_FIELDS} fields.")
        for key, value in data.items():
            if not key or len(key) > 64 or not isinstance(value, str) or len(value) > 200:
                raise AppError(ErrorCode.BAD_USER_INPUT, "data: keys of 1 to 64 characters, values of at most 200.")
    if len(page) > 256 or len(url) > 512:
        raise AppError(ErrorCode.BAD_USER_INPUT, "page: at most 256 characters; url: at most 512.")
    if url and not url.startswith(("https://", "http://")):
        raise AppError(ErrorCode.BAD_USER_INPUT, "url: an http(s) address.")


def create_batch(
    *,
    created_by: User | None,
    channel: str,
    template_id: str = "",
    data: Mapping[str, str] | None = None,
    page: str = "",
    url: str = "",
    message: Mapping[str, Any] | None = None,
    user_ids: Iterable[int] | None = None,
    all_users: bool = False,
    key: str | None = None,
) -> PushBatch:
    """A batch to the given users (or every user bound in the channel's app), sent by Celery after the
    commit. A user without an openid in that app gets a SKIPPED delivery saying so."""
    data, message = dict(data or {}), dict(message or {})
    _validate(channel=channel, template_id=template_id, data=data, page=page, url=url, message=message)
    ids = sorted(set(user_ids or ()))
    if all_users == bool(ids):
        raise AppError(ErrorCode.BAD_USER_INPUT, "Give either userIds or all: true.")
    if len(ids) > MAX_USER_IDS:
        raise AppError(ErrorCode.BAD_USER_INPUT, f"At most {MAX_USER_IDS} userIds; use all: true for more.")
    _, appid = channel_app(channel)
    users = User.objects.filter(is_active=True)
    users = users.filter(wechat_identities__appid=appid) if all_users else users.filter(pk__in=ids)
    openid = Subquery(WechatIdentity.objects.filter(user=OuterRef("pk"), appid=appid).values("openid")[:1])
    unbound = "no mini-program openid" if channel == Channel.SUBSCRIBE else "no official-account openid"
    now = timezone.now()
    with transaction.atomic():
        batch: PushBatch = PushBatch.objects.create(
            channel=channel,
            template_id=template_id,
            data=data,
            page=page,
            url=url,
            message=message,
            key=key,
            created_by=created_by,
            status=BatchStatus.RUNNING,
            started_at=now,
        )
        total = skipped = last = 0
        while True:
            page_rows = list(
                users.filter(pk__gt=last)
                .order_by("pk")
                .annotate(push_openid=openid)
                .values_list("pk", "push_openid")[:RECIPIENT_PAGE]
            )
            if not page_rows:
                break
            last = page_rows[-1][0]
            PushDelivery.objects.bulk_create(
                PushDelivery(
                    batch=batch,
                    user_id=user_id,
                    openid=user_openid or "",
                    status=Status.PENDING if user_openid else Status.SKIPPED,
                    errmsg="" if user_openid else unbound,
                )
                for user_id, user_openid in page_rows
            )
            total += len(page_rows)
            skipped += sum(1 for _, user_openid in page_rows if not user_openid)
        if ids and total != len(ids):
            raise AppError(ErrorCode.NOT_FOUND, "Some userIds are not active users.")
        batch = refresh_counts(batch.pk) or batch
        if batch.pending:
            tasks.fan_out.delay_on_commit(batch.pk)
    logger.info("push %s: %s to %d users (%d without an openid)", batch.pk, channel, total, skipped)
    return batch


def fan_out(batch_id: int) -> None:
    """The batch's PENDING deliveries, in keyset pages of ids, each page one Celery task."""
    if not PushBatch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING).exists():
        return
    pending = PushDelivery.objects.filter(batch_id=batch_id, status=Status.PENDING).order_by("pk")
    last = 0
    while True:
        ids = list(pending.filter(pk__gt=last).values_list("pk", flat=True)[: settings.PUSH_CHUNK_SIZE])
        if not ids:
            break
        last = ids[-1]
        tasks.send_chunk.delay(batch_id, ids)
    refresh_counts(batch_id)


def send_chunk(batch_id: int, delivery_ids: Iterable[int]) -> None:
    """Sends these deliveries one by one while the batch runs; harmless to run twice, or beside another
    run of the same chunk (each delivery is claimed before its send). The batch's counts are refreshed at
    most every PROGRESS_SECONDS and at the end."""
    batch: PushBatch | None = PushBatch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING).first()
    if batch is None:
        return
    deliveries = (
        PushDelivery.objects.filter(batch_id=batch_id, pk__in=list(delivery_ids), status=Status.PENDING)
        .only("pk", "batch_id", "user_id", "openid", "attempts", "answer_lost_at")
        .order_by("pk")
    )
    app, _ = channel_app(batch.channel)
    client = providers.push_client(app)
    client.prepare()
    progress_at = time.monotonic()
    for delivery in deliveries:
        if not _send_delivery(batch, delivery, client):
            break
        if time.monotonic() - progress_at >= PROGRESS_SECONDS:
            refresh_counts(batch_id)
            progress_at = time.monotonic()
    refresh_counts(batch_id)


def claim(delivery_id: int) -> bool:
    """PENDING -> SENDING while its batch runs; False when another worker has it, it is settled, or the
    batch was paused, stopped or cancelled. (Exists, not a join: Django turns an UPDATE's join into
    `id IN (subquery)`, and PostgreSQL would not recheck the status of a row another claim just took.)"""
    running = PushBatch.objects.filter(pk=OuterRef("batch_id"), status=BatchStatus.RUNNING)
    claimed: int = (
        PushDelivery.objects.filter(pk=delivery_id, status=Status.PENDING)
        .filter(Exists(running))
        .update(status=Status.SENDING, claimed_at=timezone.now(), attempts=F("attempts") + 1)
    )
    return claimed == 1


def _send_delivery(batch: PushBatch, delivery: PushDelivery, client: PushClient) -> bool:
    """Claims, sends and marks one delivery. False when the chunk stops (its batch is not running)."""
    if not claim(delivery.pk):
        running: bool = PushBatch.objects.filter(pk=batch.pk, status=BatchStatus.RUNNING).exists()
        return running
    delivery.attempts += 1
    lost_at = delivery.answer_lost_at
    if lost_at and timezone.now() - lost_at > dt.timedelta(seconds=settings.PUSH_RESEND_WITHIN):
        mark(delivery, Status.UNKNOWN, errmsg=f"maybe delivered at {lost_at:%Y-%m-%d %H:%M:%S} UTC, too late to resend")
        return True
    subscription_used = False
    try:
        if batch.channel == Channel.SUBSCRIBE:
            if not use_subscription(delivery.user_id, batch.template_id):
                mark(delivery, Status.SKIPPED, errcode=43101, errmsg="no subscription left for this template")
                return True
            subscription_used = True
        wait_for_send_slot()
    except Exception:  # nothing was sent: the delivery is free for the chunk's retry
        release(delivery, batch, attempt_made=False, subscription_used=subscription_used)
        raise
    return _settle(delivery, batch, _send(batch, client, delivery))


def _send(batch: PushBatch, client: PushClient, delivery: PushDelivery) -> SendResult:
    openid = delivery.openid
    if batch.channel == Channel.TEMPLATE:
        miniprogram = (providers.miniprogram_appid(), batch.page) if batch.page else None
        return client.send_template(
            openid=openid,
            template_id=batch.template_id,
            data=batch.data,
            url=batch.url,
            miniprogram=miniprogram,
            client_msg_id=f"push-{delivery.pk}",  # a retry within 10 minutes is not delivered twice
        )
    if batch.channel == Channel.SUBSCRIBE:
        return client.send_subscribe(openid=openid, template_id=batch.template_id, data=batch.data, page=batch.page)
    return client.send_custom(openid=openid, message=batch.message)


def _settle(delivery: PushDelivery, batch: PushBatch, result: SendResult) -> bool:
    outcome = result.outcome
    answer: dict[str, Any] = {"errcode": result.errcode, "errmsg": result.errmsg}
    if outcome == PushOutcome.SENT:
        mark(delivery, Status.SENT, msgid=result.msgid)
    elif outcome == PushOutcome.SKIPPED:
        mark(delivery, Status.SKIPPED, **answer)
    elif outcome == PushOutcome.STOP:
        mark(delivery, Status.FAILED, **answer)
        return not _stop_if_repeated(batch.pk, result)
    elif outcome == PushOutcome.QUOTA:
        release(delivery, batch, attempt_made=False)
        pause(batch.pk)
        return False
    elif outcome == PushOutcome.RETRY and delivery.attempts < settings.PUSH_MAX_ATTEMPTS:
        release(delivery, batch, attempt_made=True, answer_lost=result.maybe_received)
        backoff = settings.PUSH_RETRY_BACKOFF * 2 ** (delivery.attempts - 1)
        logger.info("push %s delivery %s: %s, retried in %ss", batch.pk, delivery.pk, result.errcode, backoff)
        tasks.send_chunk.apply_async((batch.pk, [delivery.pk]), countdown=backoff)
    elif outcome == PushOutcome.UNKNOWN or result.maybe_received or delivery.answer_lost_at:
        # maybe delivered: this send, or an earlier one of this delivery, lost its answer
        mark(delivery, Status.UNKNOWN, errmsg=f"maybe delivered, never resent: {result.errmsg}")
    else:  # FAILED, or RETRY out of attempts
        mark(delivery, Status.FAILED, **answer)
    return True


def mark(delivery: PushDelivery, status: Any, *, errcode: int = 0, errmsg: str = "", msgid: str = "") -> bool:
    """SENDING -> a final status; False if the claim was lost (found UNKNOWN by the timeout sweep)."""
    marked = PushDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(
        status=status,
        errcode=errcode,
        errmsg=errmsg[:255],
        msgid=msgid[:64],
        sent_at=timezone.now() if status == Status.SENT else None,
    )
    if not marked:
        logger.warning("push %s delivery %s was %s after its claim timed out", delivery.batch_id, delivery.pk, status)
    return bool(marked)


def release(
    delivery: PushDelivery,
    batch: PushBatch,
    *,
    attempt_made: bool,
    answer_lost: bool = False,
    subscription_used: bool = True,
) -> None:
    """SENDING -> PENDING (busy, quota, or a template message whose answer was lost: resent with its
    client_msg_id), with the subscription it used given back."""
    attempts = F("attempts") if attempt_made else F("attempts") - 1
    lost_at = Coalesce(F("answer_lost_at"), Value(timezone.now())) if answer_lost else F("answer_lost_at")
    released = PushDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(
        status=Status.PENDING, attempts=attempts, claimed_at=None, answer_lost_at=lost_at
    )
    if released and subscription_used and batch.channel == Channel.SUBSCRIBE:
        Subscription.objects.filter(user_id=delivery.user_id, template_id=batch.template_id).update(
            remaining=F("remaining") + 1
        )


def refresh_counts(batch_id: int) -> PushBatch | None:
    """The batch's counts from its deliveries, under the batch's row lock (so a slower refresh never writes
    older counts over a newer one); a RUNNING batch with nothing left to send is DONE. Counted, not moved
    with each delivery: one row updated by every worker for every message was the senders' bottleneck."""
    with transaction.atomic():
        batch: PushBatch | None = PushBatch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None:
            return None
        counts = dict(
            PushDelivery.objects.filter(batch_id=batch_id)
            .values("status")
            .annotate(count=Count("pk"))
            .order_by()
            .values_list("status", "count")
        )
        batch.total = sum(counts.values())
        batch.sent, batch.skipped = counts.get(Status.SENT, 0), counts.get(Status.SKIPPED, 0)
        batch.failed, batch.unknown = counts.get(Status.FAILED, 0), counts.get(Status.UNKNOWN, 0)
        batch.pending = counts.get(Status.PENDING, 0) + counts.get(Status.SENDING, 0)
        batch.counted_at = timezone.now()
        fields = ["total", "sent", "skipped", "failed", "unknown", "pending", "counted_at"]
        if batch.status == BatchStatus.RUNNING and not batch.pending:
            batch.status, batch.finished_at = BatchStatus.DONE, batch.counted_at
            fields += ["status", "finished_at"]
        batch.save(update_fields=fields)
    return batch


def use_subscription(user_id: int, template_id: str) -> bool:
    """Takes one of the user's one-time subscriptions to the template; False when none is left."""
    used: int = Subscription.objects.filter(user_id=user_id, template_id=template_id, remaining__gt=0).update(
        remaining=F("remaining") - 1
    )
    return used == 1


def _rate_key(bucket: int) -> str:
    return f"push:rate:{bucket}"


def wait_for_send_slot() -> None:
    """PUSH_RATE_PER_SECOND across every worker, as WeChat would count arrivals: a send starts only while
    fewer than the rate started in the last 1 + RATE_BUCKET seconds (counters per RATE_BUCKET of the clock
    in the shared cache). So no 1-second window, sliding or on the clock, receives more than the rate, as
    long as the sends' start-to-arrival times, and the workers' clocks, differ by less than RATE_BUCKET; a
    batch the rate binds runs at about 90 % of it (bench/README.md). (The resend after a rejected access
    token takes no slot of its own.)"""
    rate = settings.PUSH_RATE_PER_SECOND
    if rate <= 0:
        return
    while True:
        now = time.time()
        bucket = int(now / RATE_BUCKET)
        key = _rate_key(bucket)
        try:
            mine = cache.incr(key)  # this bucket's sends so far, this one and everyone's before it included
        except ValueError:  # the bucket's first send
            cache.add(key, 0, timeout=RATE_KEY_TIMEOUT)
            continue
        # The next bucket too: a sender whose clock already reads it may have counted itself there after we
        # incremented ours, and one of the two then sees the other either way.
        around = [_rate_key(b) for b in range(bucket - RATE_LOOKBACK, bucket + 2) if b != bucket]
        if mine + sum(cache.get_many(around).values()) <= rate:
            return
        cache.decr(key)  # not sending now: the slot goes back
        time.sleep(max((bucket + 1) * RATE_BUCKET - now, 0.001))


def _stop_if_repeated(batch_id: int, result: SendResult) -> bool:
    """Stops the batch after PUSH_STOP_AFTER identical bad-data / bad-template answers; True if stopped."""
    identical = PushDelivery.objects.filter(batch_id=batch_id, status=Status.FAILED, errcode=result.errcode).count()
    if identical < settings.PUSH_STOP_AFTER:
        return False
    field = f"; field {result.field!r}" if result.field else ""
    reason = f"WeChat refused {identical} messages with {result.errcode}{field}: {result.errmsg}"[:255]
    end_batch(batch_id, BatchStatus.STOPPED, reason)
    logger.warning("push %s stopped: %s", batch_id, reason)
    return True


def end_batch(batch_id: int, status: Any, reason: str) -> bool:
    """STOPPED or CANCELLED: what is not sent yet becomes SKIPPED, or UNKNOWN when an earlier send of it lost
    its answer (in-flight sends settle themselves)."""
    with transaction.atomic():
        ended = PushBatch.objects.filter(
            pk=batch_id, status__in=[BatchStatus.DRAFT, BatchStatus.RUNNING, BatchStatus.PAUSED]
        ).update(status=status, stop_reason=reason[:255], finished_at=timezone.now(), paused_until=None)
        if not ended:
            return False
        pending = PushDelivery.objects.filter(batch_id=batch_id, status=Status.PENDING)
        pending.filter(answer_lost_at__isnull=False).update(
            status=Status.UNKNOWN, errmsg=f"maybe delivered before the push was {status.lower()}: never resent"
        )
        pending.update(status=Status.SKIPPED, errmsg=reason[:255])
        refresh_counts(batch_id)
    return True


def cancel_batch(*, batch_id: int) -> PushBatch:
    batch: PushBatch | None = PushBatch.objects.filter(pk=batch_id).first()
    if batch is None:
        raise AppError(ErrorCode.NOT_FOUND, "No such push.")
    if not end_batch(batch_id, BatchStatus.CANCELLED, "cancelled"):
        raise AppError(ErrorCode.CONFLICT, f"The push is already {batch.status}.")
    batch.refresh_from_db()
    logger.info("push %s cancelled", batch_id)
    return batch


def quota_resets_at(now: dt.datetime | None = None) -> dt.datetime:
    """When WeChat's daily quota comes back: the next midnight in Asia/Shanghai (or a setting's pause)."""
    now = now or timezone.now()
    if settings.PUSH_QUOTA_PAUSE_SECONDS > 0:
        return now + dt.timedelta(seconds=settings.PUSH_QUOTA_PAUSE_SECONDS)
    tomorrow = now.astimezone(SHANGHAI).date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0, 1), tzinfo=SHANGHAI)


def pause(batch_id: int) -> None:
    until = quota_resets_at()
    paused = PushBatch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING).update(
        status=BatchStatus.PAUSED, paused_until=until, stop_reason="daily quota reached (45009)"
    )
    if paused:  # resumed by housekeeping's resume_due, within a minute of `until`
        logger.warning("push %s paused until %s: daily quota", batch_id, until.isoformat())


def resume(batch_id: int) -> bool:
    """PAUSED past its paused_until -> RUNNING, fanned out again; False when it is not due."""
    resumed = PushBatch.objects.filter(pk=batch_id, status=BatchStatus.PAUSED, paused_until__lte=timezone.now()).update(
        status=BatchStatus.RUNNING, paused_until=None, stop_reason=""
    )
    if resumed:
        logger.info("push %s resumed", batch_id)
        tasks.fan_out.delay(batch_id)
    return bool(resumed)


def resume_due() -> int:
    due = PushBatch.objects.filter(status=BatchStatus.PAUSED, paused_until__lte=timezone.now())
    return sum(resume(batch_id) for batch_id in list(due.values_list("pk", flat=True)[:100]))


def fan_out_stalled() -> int:
    """Running batches whose counts have stood still for PUSH_CLAIM_TIMEOUT (their chunks failed for good,
    or wait behind other batches) are fanned out again: what is PENDING gets sent, nothing twice (claims)."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.PUSH_CLAIM_TIMEOUT)
    stalled = list(
        PushBatch.objects.filter(status=BatchStatus.RUNNING, counted_at__lt=cutoff).values_list("pk", flat=True)[:100]
    )
    for batch_id in stalled:
        refresh_counts(batch_id)  # counted now: fanned out again at most once per PUSH_CLAIM_TIMEOUT
        logger.warning("push %s: no progress for %ss, fanned out again", batch_id, settings.PUSH_CLAIM_TIMEOUT)
        tasks.fan_out.delay(batch_id)
    return len(stalled)


def mark_stale_unknown() -> int:
    """Deliveries SENDING longer than PUSH_CLAIM_TIMEOUT (their worker died): UNKNOWN, never resent."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.PUSH_CLAIM_TIMEOUT)
    stale = PushDelivery.objects.filter(status=Status.SENDING, claimed_at__lt=cutoff)
    total = 0
    for batch_id in list(stale.values_list("batch_id", flat=True).distinct().order_by("batch_id")):
        with transaction.atomic():
            count = stale.filter(batch_id=batch_id).update(
                status=Status.UNKNOWN, errmsg="its worker stopped after the claim: maybe sent, never resent"
            )
            refresh_counts(batch_id)
        logger.warning("push %s: %d deliveries UNKNOWN (claimed by a worker that stopped)", batch_id, count)
        total += count
    return total


def retry_failed(delivery_ids: Iterable[int]) -> int:
    """FAILED (never UNKNOWN) deliveries back to PENDING, their batches running again; the number retried."""
    failed = PushDelivery.objects.filter(pk__in=list(delivery_ids), status=Status.FAILED)
    retried = 0
    for batch_id in list(failed.values_list("batch_id", flat=True).distinct().order_by("batch_id")):
        with transaction.atomic():
            count = failed.filter(batch_id=batch_id).update(
                status=Status.PENDING, attempts=0, errcode=0, errmsg="", claimed_at=None
            )
            PushBatch.objects.filter(pk=batch_id).update(status=BatchStatus.RUNNING, finished_at=None, stop_reason="")
            refresh_counts(batch_id)
            tasks.fan_out.delay_on_commit(batch_id)
        retried += count
    return retried


# --- subscriptions ------------------------------------------------------------------------------------


def parse_subscription_results(text: str) -> dict[str, str]:
    """wx.requestSubscribeMessage's answer ({templateId: accept|reject|ban|filter, errMsg}) as JSON text."""
    try:
        results = json.loads(text)
    except ValueError as exc:
        raise AppError(ErrorCode.BAD_USER_INPUT, "results: the JSON of wx.requestSubscribeMessage's answer.") from exc
    if not isinstance(results, dict):
        raise AppError(ErrorCode.BAD_USER_INPUT, "results: a JSON object.")
    answers = {key: value for key, value in results.items() if key != "errMsg"}
    if not answers or len(answers) > 20:
        raise AppError(ErrorCode.BAD_USER_INPUT, "results: 1 to 20 templates.")
    for template_id, answer in answers.items():
        if not template_id or len(template_id) > 128 or answer not in SUBSCRIBE_ANSWERS:
            raise AppError(ErrorCode.BAD_USER_INPUT, "results: {templateId: 'accept' | 'reject' | 'ban' | 'filter'}.")
    return answers


def record_subscription(*, user: User, results: Mapping[str, str]) -> list[Subscription]:
    """Each accept is one more send of that template to the user; other answers are kept as the status."""
    with transaction.atomic():
        for template_id, answer in results.items():
            subscription, _ = Subscription.objects.get_or_create(
                user=user, template_id=template_id, defaults={"status": answer}
            )
            added = 1 if answer == SubscriptionStatus.ACCEPTED else 0
            Subscription.objects.filter(pk=subscription.pk).update(status=answer, remaining=F("remaining") + added)
    return list(Subscription.objects.filter(user=user, template_id__in=list(results)).order_by("template_id"))


# --- the paid-order push --------------------------------------------------------------------------------


def paid_order_values(order: Order) -> dict[str, str]:
    """What a template field may be filled with, from the order."""
    paid_at = (order.paid_at or timezone.now()).astimezone(SHANGHAI)
    return {
        "amount": f"{order.amount // 100}.{order.amount % 100:02d}元",  # fen, exact
        "product": order.product.title[:20],
        "out_trade_no": order.out_trade_no,
        "paid_at": paid_at.strftime("%Y-%m-%d %H:%M"),
    }


def push_paid_order(order_id: int) -> PushBatch | None:
    """PUSH_ON_PAID_CHANNEL's message to the payer: one batch per order (its key), whoever runs this and
    however often; a payer without a binding or a subscription gets a SKIPPED delivery, nothing sent."""
    channel, template_id = settings.PUSH_ON_PAID_CHANNEL, settings.PUSH_ON_PAID_TEMPLATE
    if not channel or not template_id:
        return None
    order = Order.objects.select_related("product").filter(pk=order_id, paid_at__isnull=False).first()
    if order is None:
        return None
    key = f"order-paid:{order.out_trade_no}"
    existing: PushBatch | None = PushBatch.objects.filter(key=key).first()
    if existing is not None:
        return existing
    values = paid_order_values(order)
    fields: Mapping[str, str] = settings.PUSH_ON_PAID_FIELDS
    data = {field: values[source] for field, source in fields.items() if source in values}
    try:
        return create_batch(
            created_by=None,
            channel=channel,
            template_id=template_id,
            data=data,
            page=settings.PUSH_ON_PAID_PAGE,
            user_ids=[order.user_id],
            key=key,
        )
    except IntegrityError:  # another run created it first
        created: PushBatch = PushBatch.objects.get(key=key)
        return created
    except AppError as exc:
        logger.warning("paid-order push for order %s not sent: %s", order.out_trade_no, exc.message)
        return None


def order_paid(order_id: int) -> None:
    """Called by payments once an order's payment is committed: the configured paid-order push, in Celery."""
    if settings.PUSH_ON_PAID_CHANNEL and settings.PUSH_ON_PAID_TEMPLATE:
        tasks.push_paid_order.delay(order_id)


def apply_template_reports(*, since: dt.timedelta = dt.timedelta(days=1)) -> int:
    """Housekeeping's catch-up: a report that arrived before its delivery had its msgid saved (WeChat can
    be that quick) reaches the delivery here: one UPDATE over the reports of the last day."""
    reports = TemplateSendReport.objects.filter(received_at__gte=timezone.now() - since)
    status = Subquery(reports.filter(msg_id=OuterRef("msgid"), openid=OuterRef("openid")).values("status")[:1])
    updated: int = (
        PushDelivery.objects.filter(report="", msgid__in=reports.values("msg_id"))
        .exclude(msgid="")
        .update(report=Substr(status, 1, 64))
    )
    return updated


def record_template_report(*, openid: str, msg_id: str, status: str) -> int:
    """TEMPLATESENDJOBFINISH: the delivery that got this msgid keeps WeChat's status text."""
    updated: int = PushDelivery.objects.filter(msgid=msg_id, openid=openid).update(report=status[:64])
    return updated
