"""Workers racing on one batch, on PostgreSQL: real threads, each with its own connection."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import connection

from notifications import services, tasks
from notifications.models import PushDelivery
from providers.wechat.push import PushOutcome, SendResult
from tests.notifications.conftest import oa_user


def _worker(batch_id: int, ids: list[int], errors: list[BaseException]) -> None:
    try:
        services.send_chunk(batch_id, ids)
    except BaseException as exc:  # reported by the test
        errors.append(exc)
    finally:
        connection.close()


@pytest.fixture
def no_fan_out(monkeypatch):
    """The commit starts no fan-out: the test's threads are the workers."""
    monkeypatch.setattr(tasks.fan_out, "delay_on_commit", lambda *args: None)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_batch_claim_each_delivery_once(wechat, no_fan_out):
    def slow_send(openid: str, number: int) -> SendResult:
        time.sleep(0.002)  # the other worker reaches the same rows meanwhile
        return SendResult(PushOutcome.SENT, msgid=str(number))

    wechat.answer = slow_send
    users = [oa_user(f"u{i}") for i in range(40)]
    batch = services.create_batch(
        created_by=None, channel="TEMPLATE", template_id="t", data={"thing1": "x"}, user_ids=[u.pk for u in users]
    )
    ids = list(PushDelivery.objects.filter(batch=batch).order_by("pk").values_list("pk", flat=True))
    errors: list[BaseException] = []
    # Both get the same chunk, as two workers would from a redelivered Celery message; each sends in id
    # order, so they race for the same rows all along.
    threads = [threading.Thread(target=_worker, args=(batch.pk, ids, errors)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(wechat.openids()) == sorted(f"u{i}-oa" for i in range(40))  # each once
    batch.refresh_from_db()
    assert (batch.status, batch.sent, batch.pending) == ("DONE", 40, 0)
    assert set(PushDelivery.objects.filter(batch=batch).values_list("attempts", flat=True)) == {1}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_and_restarted_sends_nothing_twice(wechat, settings, no_fan_out):
    """The first worker claims its third delivery and dies there; the restarted one sends the rest, and the
    timeout sweep marks the dead one's delivery UNKNOWN."""
    settings.PUSH_CHUNK_SIZE = 100

    class Killed(BaseException):
        pass

    def dies_on_third(openid: str, number: int) -> SendResult:
        if number == 3:
            raise Killed  # after the claim, before any mark: as a SIGKILL would leave it
        return SendResult(PushOutcome.SENT, msgid=str(number))

    users = [oa_user(f"u{i}") for i in range(8)]
    batch = services.create_batch(
        created_by=None, channel="TEMPLATE", template_id="t", data={"thing1": "x"}, user_ids=[u.pk for u in users]
    )
    wechat.answer = dies_on_third
    errors: list[BaseException] = []
    ids = list(PushDelivery.objects.filter(batch=batch).order_by("pk").values_list("pk", flat=True))
    thread = threading.Thread(target=_worker, args=(batch.pk, ids, errors))
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], Killed)
    restarted = threading.Thread(target=_worker, args=(batch.pk, ids, errors))
    restarted.start()
    restarted.join()
    settings.PUSH_CLAIM_TIMEOUT = 0
    assert services.mark_stale_unknown() == 1
    batch.refresh_from_db()
    assert (batch.status, batch.sent, batch.unknown, batch.pending) == ("DONE", 7, 1, 0)
    openids: list[str] = wechat.openids()
    assert len(openids) == len(set(openids)) == 8  # the dead one's was tried once, never again
    assert PushDelivery.objects.get(pk=ids[2]).status == "UNKNOWN"


class _Clock:
    """The `time` module as services sees it, remembering each thread's last reading: after
    wait_for_send_slot returns, that is the moment its slot was counted at (a stamp taken after the
    return could be late by however long the thread then waited for the interpreter)."""

    def __init__(self) -> None:
        self.seen = threading.local()

    def time(self) -> float:
        self.seen.now = time.time()
        return self.seen.now

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def test_workers_together_never_exceed_the_rate_in_any_second(settings, monkeypatch):
    """Three threads taking send slots from the shared cache (Redis under CI, locmem otherwise): no window
    of one second, on the clock or sliding, holds more than the rate."""
    settings.PUSH_RATE_PER_SECOND = 5
    clock = _Clock()
    monkeypatch.setattr(services, "time", clock)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            services.wait_for_send_slot()
            with lock:
                stamps.append(clock.seen.now)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stamps) == 15
    per_clock_second = Counter(int(stamp) for stamp in stamps)
    per_sliding_second = [sum(start <= other < start + 1 for other in stamps) for start in stamps]
    assert max(per_clock_second.values()) <= 5 and max(per_sliding_second) <= 5, sorted(stamps)
    assert max(per_sliding_second) == 5  # and the rate is used, not starved
