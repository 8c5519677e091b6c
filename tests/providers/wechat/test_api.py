"""providers.wechat.api's WechatClient and its access token, against the sandbox: one fetch for many callers,
and the retry of a rejected token."""

from __future__ import annotations

import time

import pytest
from django.conf import settings as django_settings

from config import providers
from providers.http import ProviderError, ProviderUnavailable
from providers.sandbox.core import SandboxResponse
from providers.wechat.token import AccessTokenManager, MemoryTokenStore

THREADS = 16


def count_token_endpoint_hits(monkeypatch, wechat_sandbox) -> list[str]:
    """Counts hits on the sandbox's token endpoints, and makes them slow.

    stable_token hands out the current token without issuing one, so token_fetches
    alone would not see a second fetch there. The in-process sandbox answers within
    one GIL slice; without the delay the first thread would finish before the others
    start, and the threads would not really race.
    """
    hits: list[str] = []
    for name in ("stable_token", "token"):
        original = getattr(wechat_sandbox, name)

        def counting(request, _original=original):
            hits.append(request.path)
            time.sleep(0.05)
            return _original(request)

        monkeypatch.setattr(wechat_sandbox, name, counting)
    return hits


def expire_cached_token(monkeypatch, client) -> None:
    """Lets the TTL of the token cached in the app's own store pass (memory or Redis)."""
    store = client.tokens.store
    if isinstance(store, MemoryTokenStore):
        real_clock = store.clock
        monkeypatch.setattr(store, "clock", lambda: real_clock() + 7200)
        return
    from django_redis import get_redis_connection

    conn = get_redis_connection("default")
    key = f"{django_settings.CACHE_KEY_PREFIX}:wxtoken:{client.tokens.key}"
    assert conn.pexpire(key, 1)  # the key really is the cached token
    while conn.exists(key):  # wait until Redis has really expired it
        time.sleep(0.005)


@pytest.mark.parametrize("stable", [True, False], ids=["stable_token", "cgi-bin/token"])
def test_sandbox_many_threads_one_token_fetch(settings, monkeypatch, wechat_sandbox, run_together, stable):
    settings.WECHAT_USE_STABLE_TOKEN = stable  # the client is built below, after this
    client = providers.wechat_miniprogram()
    assert client.config.use_stable_token is stable
    assert providers.sandbox().providers["wechat"] is wechat_sandbox
    appid = client.config.appid
    hits = count_token_endpoint_hits(monkeypatch, wechat_sandbox)
    before = wechat_sandbox.token_fetches(appid)
    results = run_together(client.access_token, THREADS)
    assert wechat_sandbox.token_fetches(appid) == before + 1
    assert len(hits) == 1
    assert all(isinstance(r, str) and r.startswith("sbx_") for r in results), results
    assert len(set(results)) == 1


@pytest.mark.parametrize("stable", [True, False], ids=["stable_token", "cgi-bin/token"])
def test_sandbox_many_threads_at_an_expired_token_one_fetch(
    settings, monkeypatch, wechat_sandbox, run_together, stable
):
    settings.WECHAT_USE_STABLE_TOKEN = stable
    client = providers.wechat_miniprogram()
    assert client.tokens.store is providers.token_store()  # the store the app itself uses
    appid = client.config.appid
    old = client.access_token()
    assert client.access_token() == old  # cached

    expire_cached_token(monkeypatch, client)
    wechat_sandbox.expire_access_token(appid)  # 7200 s on, WeChat's copy has died too
    hits = count_token_endpoint_hits(monkeypatch, wechat_sandbox)
    before = wechat_sandbox.token_fetches(appid)
    results = run_together(client.access_token, THREADS)
    assert wechat_sandbox.token_fetches(appid) == before + 1
    assert len(hits) == 1
    new = results[0]
    assert isinstance(new, str) and new.startswith("sbx_") and new != old, results
    assert results == [new] * THREADS


def test_rejected_token_is_refetched_once(wechat_sandbox):
    client = providers.wechat_miniprogram()
    appid = client.config.appid
    login = client.code2session("alice")
    assert login.openid
    old = client.access_token()
    fetches = wechat_sandbox.token_fetches(appid)
    assert client.access_token() == old  # cached
    assert wechat_sandbox.token_fetches(appid) == fetches

    wechat_sandbox.expire_access_token(appid)  # as if someone else refreshed it long ago

    phone = client.get_phone_number("phone:13800138000")
    assert phone.pure_phone_number == "13800138000"
    assert wechat_sandbox.token_fetches(appid) == fetches + 1
    new = client.access_token()
    assert new != old

    # the second call uses the new cached token
    assert client.get_phone_number("phone:13800138001").pure_phone_number == "13800138001"
    assert wechat_sandbox.token_fetches(appid) == fetches + 1

    # invalidating the old token (a late 40001 elsewhere) changes nothing
    assert client.tokens.invalidate(old) is False
    assert client.access_token() == new
    assert client.get_phone_number("phone:13800138002").pure_phone_number == "13800138002"
    assert wechat_sandbox.token_fetches(appid) == fetches + 1


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
def test_token_error_on_the_retry_too_gives_up_after_two_calls(monkeypatch, wechat_sandbox, errcode):
    client = providers.wechat_miniprogram()
    calls = []

    def always_rejected(request):
        calls.append(request.query.get("access_token"))
        return SandboxResponse.json({"errcode": errcode, "errmsg": "invalid credential"})

    monkeypatch.setattr(wechat_sandbox, "get_phone_number", always_rejected)
    with pytest.raises(ProviderError) as info:
        client.get_phone_number("phone:13800138000")
    assert info.value.errcode == errcode
    assert len(calls) == 2
    assert all(calls)


def test_other_errors_are_not_retried(monkeypatch, wechat_sandbox):
    client = providers.wechat_miniprogram()
    original = wechat_sandbox.get_phone_number
    calls = []

    def counting(request):
        calls.append(1)
        return original(request)

    monkeypatch.setattr(wechat_sandbox, "get_phone_number", counting)
    with pytest.raises(ProviderError) as info:
        client.get_phone_number("not-a-phone-code")
    assert info.value.errcode == 40029
    assert len(calls) == 1


def test_stuck_refresh_becomes_provider_unavailable(wechat_sandbox):
    client = providers.wechat_miniprogram()
    store = client.tokens.store
    client.tokens = AccessTokenManager(
        store, client.tokens.key, client.fetch_access_token, wait_seconds=0.2, poll_seconds=0.01
    )
    owner = store.acquire(client.tokens.key + ":lock", 60_000)
    assert owner is not None
    try:
        with pytest.raises(ProviderUnavailable, match="stuck"):
            client.get_phone_number("phone:13800138000")
    finally:
        store.release(client.tokens.key + ":lock", owner)
    assert wechat_sandbox.token_fetches(client.config.appid) == 0
