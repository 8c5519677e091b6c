"""Access-token caching: one fetch for many waiters, across threads and processes, and the 40001 retry."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid

import pytest
from django.conf import settings as django_settings

from config import providers
from providers.http import ProviderError, ProviderUnavailable
from providers.sandbox.core import SandboxResponse
from providers.wechat.token import AccessTokenManager, MemoryTokenStore, RedisTokenStore

THREADS = 16


class CountingFetch:
    """A fetch function that is slow enough for every waiter to pile up behind it."""

    def __init__(self, delay: float = 0.05, expires_in: int = 7200) -> None:
        self.calls = 0
        self.delay = delay
        self.expires_in = expires_in
        self._lock = threading.Lock()

    def __call__(self) -> tuple[str, int]:
        with self._lock:
            self.calls += 1
            n = self.calls
        time.sleep(self.delay)
        return f"token-{n}", self.expires_in


class FakeClock:
    """A monotonic clock the test moves by hand, so a TTL can pass without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_together(target, n: int = THREADS) -> list:
    """Runs `target` in n threads released at once; returns results (or exceptions) in thread order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results


# --- AccessTokenManager with MemoryTokenStore ---------------------------------------------


def test_memory_store_many_threads_one_fetch():
    fetch = CountingFetch()
    manager = AccessTokenManager(MemoryTokenStore(), "access_token:wxtest", fetch)
    results = run_together(manager.get)
    assert fetch.calls == 1
    assert results == ["token-1"] * THREADS
    # and the cached token is served afterwards without fetching
    assert manager.get() == "token-1"
    assert fetch.calls == 1


def test_memory_store_many_threads_at_an_expired_token_one_fetch():
    clock = FakeClock()
    fetch = CountingFetch()
    manager = AccessTokenManager(MemoryTokenStore(clock=clock), "access_token:wxtest", fetch)
    assert manager.get() == "token-1"
    assert manager.get() == "token-1" and fetch.calls == 1  # cached until its TTL passes

    clock.advance(7200)  # past the cached TTL (expires_in minus the margin)
    results = run_together(manager.get)
    assert fetch.calls == 2
    assert results == ["token-2"] * THREADS
    assert manager.get() == "token-2"
    assert fetch.calls == 2


def test_invalidate_only_expires_the_token_still_cached():
    fetch = CountingFetch(delay=0)
    manager = AccessTokenManager(MemoryTokenStore(), "access_token:wxtest", fetch)
    old = manager.get()
    assert manager.invalidate(old) is True
    new = manager.get()
    assert new != old and fetch.calls == 2
    # a late failure with the old token must not throw the new one away
    assert manager.invalidate(old) is False
    assert manager.get() == new
    assert fetch.calls == 2


def test_failed_fetch_releases_the_lock():
    calls = []

    def fetch() -> tuple[str, int]:
        calls.append(1)
        if len(calls) == 1:
            raise ProviderUnavailable("wechat", "HTTP 500")
        return "token-ok", 7200

    # If the lock were kept, the second get() would wait out wait_seconds and raise TimeoutError.
    manager = AccessTokenManager(MemoryTokenStore(), "access_token:wxtest", fetch, wait_seconds=30)
    with pytest.raises(ProviderUnavailable):
        manager.get()
    assert manager.get() == "token-ok"
    assert len(calls) == 2


def test_waiter_gives_up_when_the_lock_holder_is_stuck():
    store = MemoryTokenStore()
    fetch = CountingFetch(delay=0)
    manager = AccessTokenManager(store, "access_token:wxtest", fetch, wait_seconds=0.2, poll_seconds=0.01)
    assert store.acquire("access_token:wxtest:lock", 60_000) is not None  # someone else holds it
    with pytest.raises(TimeoutError):
        manager.get()
    assert fetch.calls == 0


def test_memory_store_basics():
    store = MemoryTokenStore()
    assert store.get("k") is None
    store.set("k", "a", 60)
    assert store.get("k") == "a"
    assert store.delete_if("k", "b") is False
    assert store.get("k") == "a"
    assert store.delete_if("k", "a") is True
    assert store.get("k") is None
    owner = store.acquire("lock", 60_000)
    assert owner is not None
    assert store.acquire("lock", 60_000) is None
    store.release("lock", "not-the-owner")
    assert store.acquire("lock", 60_000) is None
    store.release("lock", owner)
    assert store.acquire("lock", 60_000) is not None


# --- WechatClient against the sandbox ------------------------------------------------------


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
def test_sandbox_many_threads_one_token_fetch(settings, monkeypatch, wechat_sandbox, stable):
    settings.WECHAT_USE_STABLE_TOKEN = stable  # the client is built below, after this
    client = providers.wechat_miniprogram()
    assert client.config.use_stable_token is stable
    assert providers.sandbox().providers["wechat"] is wechat_sandbox
    appid = client.config.appid
    hits = count_token_endpoint_hits(monkeypatch, wechat_sandbox)
    before = wechat_sandbox.token_fetches(appid)
    results = run_together(client.access_token)
    assert wechat_sandbox.token_fetches(appid) == before + 1
    assert len(hits) == 1
    assert all(isinstance(r, str) and r.startswith("sbx_") for r in results), results
    assert len(set(results)) == 1


@pytest.mark.parametrize("stable", [True, False], ids=["stable_token", "cgi-bin/token"])
def test_sandbox_many_threads_at_an_expired_token_one_fetch(settings, monkeypatch, wechat_sandbox, stable):
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
    results = run_together(client.access_token)
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


# --- RedisTokenStore ---------------------------------------------------------------------


@pytest.fixture
def redis_conn():
    from django_redis import get_redis_connection

    conn = get_redis_connection("default")
    prefix = f"wxtest:{uuid.uuid4().hex}:"
    yield conn, prefix
    for key in conn.scan_iter(prefix + "*"):
        conn.delete(key)


@pytest.mark.redis
def test_redis_delete_if_only_deletes_the_matching_token(redis_conn):
    conn, prefix = redis_conn
    store = RedisTokenStore(conn, prefix=prefix)
    assert store.delete_if("k", "a") is False  # nothing there
    store.set("k", "token-a", 60)
    assert store.get("k") == "token-a"
    assert store.delete_if("k", "token-b") is False
    assert store.get("k") == "token-a"
    assert store.delete_if("k", "token-a") is True
    assert store.get("k") is None
    assert conn.exists(prefix + "k") == 0


@pytest.mark.redis
def test_redis_set_uses_a_ttl(redis_conn):
    conn, prefix = redis_conn
    store = RedisTokenStore(conn, prefix=prefix)
    store.set("k", "t", 100)
    assert 0 < conn.ttl(prefix + "k") <= 100
    store.set("z", "t", 0)  # never "no expiry"
    assert conn.ttl(prefix + "z") == 1


@pytest.mark.redis
def test_redis_acquire_is_exclusive(redis_conn):
    conn, prefix = redis_conn
    store = RedisTokenStore(conn, prefix=prefix)
    owners = run_together(lambda: store.acquire("lock", 60_000))
    winners = [o for o in owners if o is not None]
    assert len(winners) == 1, owners
    assert 0 < conn.pttl(prefix + "lock") <= 60_000
    store.release("lock", "someone-else")
    assert store.acquire("lock", 60_000) is None
    store.release("lock", winners[0])
    assert store.acquire("lock", 60_000) is not None


@pytest.mark.redis
def test_redis_manager_keeps_ttl_below_expires_in(redis_conn):
    conn, prefix = redis_conn
    manager = AccessTokenManager(RedisTokenStore(conn, prefix=prefix), "access_token:wx", CountingFetch(delay=0))
    assert manager.get() == "token-1"
    assert 6800 < conn.ttl(prefix + "access_token:wx") <= 7200 - 300
    assert conn.exists(prefix + "access_token:wx:lock") == 0  # lock released


CHILD = r"""
import json, sys, threading, time
import redis
from providers.wechat.token import AccessTokenManager, RedisTokenStore

url, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = redis.Redis.from_url(url)
store = RedisTokenStore(client, prefix=prefix)

def fetch():
    count = client.incr(prefix + "fetches")
    time.sleep(0.05)
    return "token-%d" % count, 7200

manager = AccessTokenManager(store, "access_token:wxmulti", fetch)
barrier = threading.Barrier(n)
results = [None] * n

def worker(i):
    barrier.wait()
    try:
        results[i] = manager.get()
    except Exception as exc:
        results[i] = "error: %r" % (exc,)

threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
print("ready", flush=True)
sys.stdin.readline()
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results), flush=True)
"""


@pytest.mark.redis
def test_redis_two_processes_share_one_fetch(redis_conn):
    conn, prefix = redis_conn
    key = prefix + "access_token:wxmulti"
    conn.set(key, "stale-token", px=1)
    while conn.exists(key):  # wait until it has really expired
        time.sleep(0.01)

    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, django_settings.REDIS_URL, prefix, "8"],
            cwd=str(django_settings.BASE_DIR),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
        for child in children:  # release both at once
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    results = []
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        results.extend(json.loads(out.strip().splitlines()[-1]))
    assert conn.get(prefix + "fetches") == b"1"
    assert results == ["token-1"] * 16
