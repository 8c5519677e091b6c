"""The push benchmark's Django side (run by bench/push.sh, in the server's environment; see bench/README.md).

    push.py users N                  N active users bound to the official account (openids of sandbox users bench<i>)
    push.py loop BASE                the bare loop: every bound user's template message posted to the sandbox's
                                     cgi-bin/message/template/send at BASE through one pooled requests.Session
    push.py batch TIMEOUT            a template push to every bound user (notifications.services.create_batch),
                                     sent by the running Celery workers; waits until it is done
    push.py seconds BATCH_ID FILE..  a batch's messages per second, as the sandbox received them (FILEs: the
                                     arrival times bench/push_gunicorn.py logs) and by the deliveries' sent_at

Each command prints `BENCH_PUSH key=value ...` lines on stdout; progress goes to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import transaction  # noqa: E402

from accounts.models import User, WechatIdentity  # noqa: E402
from notifications import services  # noqa: E402
from notifications.models import PushBatch, PushDelivery  # noqa: E402
from providers.sandbox.wechat import openid_for  # noqa: E402

logger = logging.getLogger("bench.push")

TEMPLATE_ID = "benchShippedTemplate0001"
# Untyped keys (the classic template's), so the sandbox checks only that each is a non-empty string.
DATA = {
    "first": "Your order has shipped",
    "keyword1": "B20261130000001",
    "keyword2": "2026-11-30 13:00",
    "remark": "Thank you for shopping with us",
}
URL = "https://shop.example.com/orders/B20261130000001"
PAGE = 1000


def result(**values: Any) -> None:
    sys.stdout.write("BENCH_PUSH " + " ".join(f"{key}={value}" for key, value in values.items()) + "\n")


def bound_openids() -> list[str]:
    identities = WechatIdentity.objects.filter(appid=settings.WECHAT_OA_APPID, user__is_active=True)
    return list(identities.order_by("user_id").values_list("openid", flat=True))


def create_users(count: int) -> None:
    appid = settings.WECHAT_OA_APPID
    with transaction.atomic():
        for start in range(0, count, PAGE):
            names = [f"bench{i}" for i in range(start, min(start + PAGE, count))]
            users = User.objects.bulk_create(User(username=f"bench_push_{name}") for name in names)
            WechatIdentity.objects.bulk_create(
                WechatIdentity(
                    user=user,
                    kind=WechatIdentity.Kind.OFFICIAL_ACCOUNT,
                    appid=appid,
                    openid=openid_for(appid, name),
                )
                for user, name in zip(users, names, strict=True)
            )
    result(users=count, appid=appid)


def bare_loop(base: str) -> None:
    """What the workers do, minus the app: one session, one token, one POST per message, the answer checked."""
    openids = bound_openids()
    api = f"{base}/sandbox/wechat"
    session = requests.Session()
    answer = session.post(
        f"{api}/cgi-bin/stable_token",
        json={
            "grant_type": "client_credential",
            "appid": settings.WECHAT_OA_APPID,
            "secret": settings.WECHAT_OA_SECRET,
        },
        timeout=(3, 5),
    ).json()
    token = answer["access_token"]
    data = {key: {"value": value} for key, value in DATA.items()}
    headers = {"Content-Type": "application/json; charset=utf-8"}
    failed = 0
    started = time.monotonic()
    for openid in openids:
        body = {"touser": openid, "template_id": TEMPLATE_ID, "url": URL, "data": data}
        response = session.post(
            f"{api}/cgi-bin/message/template/send",
            params={"access_token": token},
            data=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
            headers=headers,
            timeout=(3, 5),
        )
        if response.status_code != 200 or response.json().get("errcode") != 0:
            failed += 1
    seconds = time.monotonic() - started
    result(messages=len(openids), failed=failed, seconds=f"{seconds:.2f}", rate=f"{len(openids) / seconds:.1f}")


def run_batch(timeout: float) -> None:
    started = time.time()
    batch = services.create_batch(
        created_by=None, channel=services.Channel.TEMPLATE, template_id=TEMPLATE_ID, data=DATA, url=URL, all_users=True
    )
    created = time.time() - started
    deadline = started + timeout
    while True:
        batch.refresh_from_db()
        if batch.status != PushBatch.Status.RUNNING or time.time() > deadline:
            break
        time.sleep(0.1)
    assert batch.finished_at is not None or batch.status == PushBatch.Status.RUNNING
    seconds = (batch.finished_at.timestamp() if batch.finished_at else time.time()) - started
    statuses = Counter(PushDelivery.objects.filter(batch=batch).values_list("status", flat=True))
    result(
        batch=batch.pk,
        status=batch.status,
        total=batch.total,
        sent=batch.sent,
        skipped=batch.skipped,
        failed=batch.failed,
        pending=batch.pending,
        unknown=batch.unknown,
        deliveries=",".join(f"{status}:{count}" for status, count in sorted(statuses.items())),
        created_s=f"{created:.2f}",
        seconds=f"{seconds:.2f}",
        rate=f"{batch.sent / seconds:.1f}",
    )


def _per_second(times: list[float]) -> dict[str, Any]:
    """Per clock second and in any sliding 1 s window (PUSH_RATE_PER_SECOND bounds both)."""
    times = sorted(times)
    per_second = Counter(int(stamp) for stamp in times)
    window, low = 0, 0
    for high, stamp in enumerate(times):
        while stamp - times[low] >= 1.0:
            low += 1
        window = max(window, high - low + 1)
    full = sorted(per_second[second] for second in sorted(per_second)[1:-1])  # the first and last are partial
    return {
        "count": len(times),
        "max_second": max(per_second.values(), default=0),
        "max_window": window,
        "median_second": full[len(full) // 2] if full else 0,
        "seconds": ",".join(str(per_second[second]) for second in range(min(per_second), max(per_second) + 1))
        if per_second
        else "",
    }


def sent_per_second(batch_id: int, arrival_files: list[str]) -> None:
    """The rate phase's sends as the sandbox saw them (the arrival times bench/push_gunicorn.py logs, within the
    batch's start and end: nothing else posts then) and as the deliveries' sent_at say (marked after the answer,
    so a few milliseconds after the send; a send that started in one second may be marked in the next)."""
    batch = PushBatch.objects.get(pk=batch_id)
    assert batch.started_at is not None and batch.finished_at is not None
    low, high = batch.started_at.timestamp(), batch.finished_at.timestamp() + 1.0
    arrivals = [
        stamp
        for name in arrival_files
        for stamp in (float(line) for line in Path(name).read_text().split())
        if low <= stamp <= high
    ]
    sent = [
        stamp.timestamp()
        for stamp in PushDelivery.objects.filter(batch_id=batch_id, sent_at__isnull=False).values_list(
            "sent_at", flat=True
        )
    ]
    result(**{f"arrived_{key}": value for key, value in _per_second(arrivals).items()})
    result(**{f"sent_{key}": value for key, value in _per_second(sent).items()})


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    command, args = argv[1], argv[2:]
    if command == "users":
        create_users(int(args[0]))
    elif command == "loop":
        bare_loop(args[0])
    elif command == "batch":
        run_batch(float(args[0]))
    elif command == "seconds":
        sent_per_second(int(args[0]), args[1:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
