"""Fixtures of the push tests: users bound in the official account or the mini-program, Celery inline, and a
scripted WeChat standing in for PushClient where a test needs answers the sandbox does not give."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings

from accounts.models import User
from config import celery_app, providers
from providers.wechat.push import PushOutcome, SendResult
from tests.factories import UserFactory, WechatIdentityFactory


@pytest.fixture(autouse=True)
def _celery_inline() -> Any:
    """Tasks run where they are sent (after the commit), never queued to the Redis of the suite."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture(autouse=True)
def _push_settings(settings: Any) -> None:
    settings.PUSH_RATE_PER_SECOND = 0
    settings.PUSH_RETRY_BACKOFF = 0
    settings.PUSH_CHUNK_SIZE = 3


def oa_user(name: str) -> User:
    """A user with an openid (named after them) in the official account."""
    identity = WechatIdentityFactory(
        user=UserFactory(username=name), appid=settings.WECHAT_OA_APPID, openid=f"{name}-oa", kind="official_account"
    )
    return identity.user  # type: ignore[no-any-return]


def mp_user(name: str) -> User:
    """A user with an openid (named after them) in the mini-program."""
    identity = WechatIdentityFactory(user=UserFactory(username=name), openid=f"{name}-mp")
    return identity.user  # type: ignore[no-any-return]


@dataclass
class FakeWechat:
    """PushClient's stand-in: `answer(openid, call_number)` scripts each answer (default SENT)."""

    answer: Callable[[str, int], SendResult] = lambda openid, number: SendResult(PushOutcome.SENT, msgid=f"m{number}")
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, kind: str, openid: str, body: dict[str, Any]) -> SendResult:
        with self.lock:
            self.calls.append((kind, openid, body))
            number = len(self.calls)
        return self.answer(openid, number)

    def prepare(self) -> None:
        pass

    def send_template(self, *, openid: str, **body: Any) -> SendResult:
        return self._record("template", openid, body)

    def send_subscribe(self, *, openid: str, **body: Any) -> SendResult:
        return self._record("subscribe", openid, body)

    def send_custom(self, *, openid: str, **body: Any) -> SendResult:
        return self._record("custom", openid, body)

    def openids(self) -> list[str]:
        return [openid for _, openid, _ in self.calls]


@pytest.fixture
def wechat(monkeypatch: Any) -> FakeWechat:
    fake = FakeWechat()

    @functools.cache
    def push_client(app: str) -> FakeWechat:
        return fake

    monkeypatch.setattr(providers, "push_client", push_client)
    return fake
