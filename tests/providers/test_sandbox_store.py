"""`claim`, the sandbox's one-step "take a fault, or use a key up once": on Redis (one Lua script)
and step by step on any other cache, with the same outcomes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache

from config import providers
from config.sandbox_store import RedisSandboxStore, sandbox_store
from providers.sandbox.core import Write, claim

FAULT, COUNT = "sbx:fault:wechat", "sbx:fault:wechat:n"


@pytest.fixture(params=["steps", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "redis":
        return RedisSandboxStore(cache)
    return LocMemCache(f"sandbox-store-{uuid.uuid4()}", {})  # locmem shares state per name


def _arm(store: Any, fault: str, count: int) -> None:
    store.set(FAULT, fault, 3600)
    store.set(COUNT, count, 3600)


def test_a_key_is_used_once_and_its_writes_happen_once(store):
    first = claim(store, "wechat", once=Write("code:a", 1, 300), then=(Write("sk:a", "key-1", 600),))
    again = claim(store, "wechat", once=Write("code:a", 1, 300), then=(Write("sk:a", "key-2", 600),))
    assert (first, again) == (True, False)
    assert store.get("sk:a") == "key-1"  # the refused claim wrote nothing
    assert claim(store, "wechat", once=Write("code:b", 1, 300)) is True


@pytest.mark.parametrize("fault", ["timeout", "http_500", "malformed"])
def test_pending_faults_are_taken_first_and_leave_the_key_unused(store, fault):
    _arm(store, fault, 2)
    outcomes = [claim(store, "wechat", once=Write("code:c", 1, 300), then=(Write("sk:c", "k", 600),)) for _ in range(4)]
    assert outcomes == [fault, fault, True, False]
    assert store.get("sk:c") == "k"
    assert not store.get(COUNT)  # spent (and removed once it went below zero on the steps store)


def test_faults_of_other_kinds_are_left_pending(store):
    _arm(store, "bad_signature", 1)
    assert claim(store, "wechat", once=Write("code:d", 1, 300)) is True
    assert store.get(COUNT) == 1
    assert store.get(FAULT) == "bad_signature"


def test_a_fault_of_another_provider_is_not_taken(store):
    _arm(store, "http_500", 1)
    assert claim(store, "wechatpay", once=Write("code:e", 1, 300)) is True
    assert store.get(COUNT) == 1


@pytest.mark.redis
def test_redis_keys_get_their_ttl_and_the_cache_api_reads_them():
    from django_redis import get_redis_connection

    store = RedisSandboxStore(cache)
    assert claim(store, "wechat", once=Write("code:f", 1, 300), then=(Write("sk:f", "secret-key", 900),)) is True
    conn = get_redis_connection("default")
    assert 0 < conn.ttl(cache.make_key("code:f")) <= 300
    assert 300 < conn.ttl(cache.make_key("sk:f")) <= 900
    # Written by the script, read through Django's cache API (django-redis's encoding).
    assert cache.get("sk:f") == "secret-key"
    assert cache.get("code:f") == 1


def test_the_sandbox_uses_the_script_exactly_when_the_cache_is_django_redis():
    chosen = sandbox_store()
    assert isinstance(chosen, RedisSandboxStore) is bool(settings.REDIS_URL)
    assert sandbox_store(LocMemCache("other", {})).__class__ is LocMemCache


@pytest.mark.redis
def test_a_sandbox_login_is_one_step_on_redis(monkeypatch):
    """code2session neither reads nor writes the cache key by key: one script does it all."""
    store = providers.sandbox().store
    assert isinstance(store, RedisSandboxStore)
    calls: list[str] = []
    real = store.take_fault_or_claim

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append("claim")
        return real(*args, **kwargs)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a key-by-key cache call during a sandbox login")

    monkeypatch.setattr(store, "take_fault_or_claim", spy)
    for name in ("get", "set", "add", "delete", "incr", "decr"):
        monkeypatch.setattr(store, name, refuse)
    login = providers.wechat_miniprogram().code2session("heidi")
    assert login.openid and login.session_key
    assert calls == ["claim"]
    monkeypatch.undo()
    assert providers.sandbox().providers["wechat"].session_key(settings.WECHAT_MINIPROGRAM_APPID, login.openid) == (
        login.session_key
    )
