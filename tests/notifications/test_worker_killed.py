"""A real Celery worker (its own processes, the Redis broker, the test's PostgreSQL database) killed with
SIGKILL in the middle of a chunk, while WeChat holds the answer to the third message of eight: nothing is
sent twice, the rest is sent once the task comes back (to a restarted worker, or to the same worker's
new pool process), and the dead send is UNKNOWN."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from config import celery_app
from notifications import services, tasks
from notifications.models import PushBatch, PushDelivery
from tests.notifications.conftest import oa_user
from tests.processes import BASE_DIR, clean_env

VISIBILITY_TIMEOUT = 2
HELD = 3  # the message whose answer WeChat holds until the worker is dead


class FakeWechat(ThreadingHTTPServer):
    """WeChat's token and template-send endpoints, recording every message; the HELD-th is answered only
    once `release` is set."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[str] = []
        self.lock = threading.Lock()
        self.holding = threading.Event()
        self.release = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the held answer goes to a dead worker's closed socket


class _Handler(BaseHTTPRequestHandler):
    server: FakeWechat

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # /cgi-bin/token
        self._answer({"access_token": "token-1", "expires_in": 7200})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path.startswith("/cgi-bin/stable_token"):
            self._answer({"access_token": "token-1", "expires_in": 7200})
            return
        with self.server.lock:
            self.server.received.append(body["touser"])
            number = len(self.server.received)
        if number == HELD:
            self.server.holding.set()
            self.server.release.wait(60)
        self._answer({"errcode": 0, "errmsg": "ok", "msgid": 1000 + number})


@pytest.fixture
def fake_wechat() -> Iterator[FakeWechat]:
    server = FakeWechat()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _until(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.1)


class Workers:
    """`celery -A config worker -c 1` processes on one queue of their own, each in its own process group."""

    def __init__(self, env: dict[str, str], queue: str, logs: Path) -> None:
        self.env, self.queue, self.logs = env, queue, logs
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker-{len(self.started)}.log"
        process = subprocess.Popen(  # noqa: S603 (our own worker)
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-c", "1", "-Q", self.queue]
            + ["-n", f"{self.queue}-{len(self.started)}@%h", "--without-gossip", "--without-mingle"]
            + ["--without-heartbeat", "-l", "info"],
            cwd=BASE_DIR,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append((process, log))
        _until(lambda: process.poll() is None and " ready." in log.read_text(), f"worker ready:\n{self.output()}")
        return process

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()}" for _, log in self.started if log.exists())

    def stop(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def pool_process(worker: subprocess.Popen[bytes]) -> int:
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.fixture
def workers(fake_wechat: FakeWechat, tmp_path: Path) -> Iterator[Workers]:
    queue = f"push-killed-{uuid.uuid4().hex[:8]}"
    db = connection.settings_dict
    env = clean_env(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        REDIS_URL=str(settings.REDIS_URL),
        CELERY_BROKER_URL=str(settings.CELERY_BROKER_URL),
        CELERY_TASK_ALWAYS_EAGER="0",
        CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
        CACHE_KEY_PREFIX=queue,  # its own access token, from the fake WeChat
        WECHAT_API_BASE_URL=f"http://127.0.0.1:{fake_wechat.server_address[1]}",
        WECHAT_OA_APPID=settings.WECHAT_OA_APPID,
        WECHAT_OA_SECRET=settings.WECHAT_OA_SECRET,
        PUSH_RATE_PER_SECOND="0",
        LOG_LEVEL="INFO",
    )
    running = Workers(env, queue, tmp_path)
    yield running
    running.stop()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(queue, f"_kombu.binding.{queue}")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("killed", ["worker", "pool process"])
def test_a_worker_killed_mid_chunk_sends_nothing_twice(killed, workers, fake_wechat, settings, monkeypatch):
    monkeypatch.setattr(tasks.fan_out, "delay_on_commit", lambda *args: None)  # the chunk is sent below
    users = [oa_user(f"u{i}") for i in range(8)]
    batch = services.create_batch(
        created_by=None, channel="TEMPLATE", template_id="t", data={"thing1": "x"}, user_ids=[u.pk for u in users]
    )
    ids = list(PushDelivery.objects.filter(batch=batch).order_by("pk").values_list("pk", flat=True))
    first = workers.start()
    celery_app.conf.task_always_eager = False  # to the broker, this once
    with celery_app.connection_for_write() as broker:
        tasks.send_chunk.apply_async((batch.pk, ids), queue=workers.queue, connection=broker)
    taken_at = time.monotonic()
    assert fake_wechat.holding.wait(60), workers.output()
    assert PushDelivery.objects.get(pk=ids[HELD - 1]).status == "SENDING"

    if killed == "worker":  # the whole worker: its task goes to the next worker after the visibility timeout
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        time.sleep(max(taken_at + VISIBILITY_TIMEOUT + 0.5 - time.monotonic(), 0))
        workers.start()
    else:  # its pool process: the worker puts the task back (CELERY_TASK_REJECT_ON_WORKER_LOST) and goes on
        os.kill(pool_process(first), signal.SIGKILL)
    fake_wechat.release.set()

    _until(
        lambda: not PushDelivery.objects.filter(batch=batch, status="PENDING").exists(),
        f"the rest sent:\n{workers.output()}",
    )
    _until(lambda: len(fake_wechat.received) == 8, "eight messages at WeChat")
    assert sorted(fake_wechat.received) == sorted(f"u{i}-oa" for i in range(8))  # each once
    held = PushDelivery.objects.get(pk=ids[HELD - 1])
    assert held.status == "SENDING" and held.attempts == 1  # claimed by the dead one, never again
    settings.PUSH_CLAIM_TIMEOUT = 0
    assert services.mark_stale_unknown() == 1  # housekeeping's sweep
    batch = PushBatch.objects.get(pk=batch.pk)
    assert (batch.status, batch.sent, batch.unknown, batch.pending) == ("DONE", 7, 1, 0)
    assert PushDelivery.objects.get(pk=ids[HELD - 1]).status == "UNKNOWN"
    time.sleep(0.5)
    assert len(fake_wechat.received) == 8  # nothing more came
    log = workers.output()
    assert "raised unexpected" not in log and "notifications.send_chunk" in log and " succeeded in " in log
