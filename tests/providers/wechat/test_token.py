"""providers.wechat.token: one fetch for many waiters, across threads and processes; the memory and Redis stores."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid

import pytest
from django.conf import settings as django_settings

from providers.http import ProviderUnavailable
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


# --- AccessTokenManager with MemoryTokenStore ---------------------------------------------


def test_memory_store_many_threads_one_fetch(run_together):
    fetch = CountingFetch()
    manager = AccessTokenManager(MemoryTokenStore(), "access_token:wxtest", fetch)
    results = run_together(manager.get, THREADS)
    assert fetch.calls == 1
    assert results == ["token-1"] * THREADS
    # and the cached token is served afterwards without fetching
    assert manager.get() == "token-1"
    assert fetch.calls == 1


def test_memory_store_many_threads_at_an_expired_token_one_fetch(run_together):
    clock = FakeClock()
    fetch = CountingFetch()
    manager = AccessTokenManager(MemoryTokenStore(clock=clock), "access_token:wxtest", fetch)
    assert manager.get() == "token-1"
    assert manager.get() == "token-1" and fetch.calls == 1  # cached until its TTL passes

    clock.advance(7200)  # past the cached TTL (expires_in minus the margin)
    results = run_together(manager.get, THREADS)
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
def test_redis_acquire_is_exclusive(redis_conn, run_together):
    conn, prefix = redis_conn
    store = RedisTokenStore(conn, prefix=prefix)
    owners = run_together(lambda: store.acquire("lock", 60_000), THREADS)
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
