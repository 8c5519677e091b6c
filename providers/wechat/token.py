"""Access-token cache shared by every process, refreshed by one of them at a time.

As WxJava does it: read; if missing, take a lock (SET NX PX), read again, and only
then fetch. A token that the API rejects is expired only if it is still the cached
one, so a late failure cannot throw away a token another process just fetched.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# errcodes meaning "this access token is no longer good"
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})

_COMPARE_AND_DELETE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


class TokenStore(Protocol):
    def get(self, key: str) -> str | None: ...
    def set(self, key: str, token: str, ttl: int) -> None: ...
    def delete_if(self, key: str, token: str) -> bool: ...
    def acquire(self, key: str, ttl_ms: int) -> str | None: ...
    def release(self, key: str, owner: str) -> None: ...


class MemoryTokenStore:
    """One process only (the embedded default and unit tests).

    `clock` (seconds, monotonic) decides when entries expire; tests move it forward.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[str, float]] = {}

    def _get(self, key: str) -> str | None:
        item = self._values.get(key)
        if item is None or item[1] <= self.clock():
            self._values.pop(key, None)
            return None
        return item[0]

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._get(key)

    def set(self, key: str, token: str, ttl: int) -> None:
        with self._lock:
            self._values[key] = (token, self.clock() + ttl)

    def delete_if(self, key: str, token: str) -> bool:
        with self._lock:
            if self._get(key) == token:
                del self._values[key]
                return True
            return False

    def acquire(self, key: str, ttl_ms: int) -> str | None:
        owner = uuid.uuid4().hex
        with self._lock:
            if self._get(key) is not None:
                return None
            self._values[key] = (owner, self.clock() + ttl_ms / 1000)
            return owner

    def release(self, key: str, owner: str) -> None:
        self.delete_if(key, owner)


class RedisTokenStore:
    """Shared by every process and host; `client` is a redis-py client."""

    def __init__(self, client: Any, prefix: str = "wxtoken:") -> None:
        self._client = client
        self._prefix = prefix
        self._cad = client.register_script(_COMPARE_AND_DELETE)

    def get(self, key: str) -> str | None:
        value = self._client.get(self._prefix + key)
        return value.decode() if isinstance(value, bytes) else value

    def set(self, key: str, token: str, ttl: int) -> None:
        self._client.set(self._prefix + key, token, ex=max(ttl, 1))

    def delete_if(self, key: str, token: str) -> bool:
        return bool(self._cad(keys=[self._prefix + key], args=[token]))

    def acquire(self, key: str, ttl_ms: int) -> str | None:
        owner = uuid.uuid4().hex
        ok = self._client.set(self._prefix + key, owner, nx=True, px=ttl_ms)
        return owner if ok else None

    def release(self, key: str, owner: str) -> None:
        self.delete_if(key, owner)


class AccessTokenManager:
    """get() returns a valid token, fetching it at most once across all waiters."""

    def __init__(
        self,
        store: TokenStore,
        key: str,
        fetch: Callable[[], tuple[str, int]],
        *,
        margin: int = 300,
        lock_ttl_ms: int = 10_000,
        wait_seconds: float = 10.0,
        poll_seconds: float = 0.02,
    ) -> None:
        self.store = store
        self.key = key
        self._fetch = fetch
        self._margin = margin
        self._lock_ttl_ms = lock_ttl_ms
        self._wait = wait_seconds
        self._poll = poll_seconds

    def get(self) -> str:
        token = self.store.get(self.key)
        if token:
            return token
        deadline = time.monotonic() + self._wait
        lock_key = self.key + ":lock"
        while True:
            owner = self.store.acquire(lock_key, self._lock_ttl_ms)
            if owner:
                try:
                    # Someone may have refreshed between our read and the lock.
                    token = self.store.get(self.key)
                    if token:
                        return token
                    token, expires_in = self._fetch()
                    # Keep it well below expires_in so a token never dies in flight.
                    self.store.set(self.key, token, max(expires_in - self._margin, expires_in // 2, 1))
                    return token
                finally:
                    self.store.release(lock_key, owner)
            time.sleep(self._poll)
            token = self.store.get(self.key)
            if token:
                return token
            if time.monotonic() > deadline:
                # The holder is stuck; its lock expires on its own. The caller reports "unavailable".
                raise TimeoutError("timed out waiting for the access-token refresh lock")

    def invalidate(self, token: str) -> bool:
        """Expires `token` only if it is still the cached one."""
        expired = self.store.delete_if(self.key, token)
        if expired:
            logger.info("access token for %s expired after the API rejected it", self.key)
        return expired
