"""Where the sandbox keeps its shared state: the default cache, and on Redis one script for a login.

A sandbox login checks for a pending fault, uses the code up and stores the new session_key. As
three cache calls that is three round trips to Redis, which cost the server more than the rest
of the simulated provider call; as one Lua script it is one, and atomic as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.cache import BaseCache, cache

from providers.sandbox.core import Store, Write

# KEYS: fault name, fault count, the once key, then one key per write.
# ARGV: the once value and ttl, the number of fault kinds, the kinds, then value and ttl per write.
# Values arrive encoded as django-redis stores them, so the cache API reads what this writes.
_CLAIM = """
local kinds = tonumber(ARGV[3])
local fault = redis.call('GET', KEYS[1])
if fault then
    for i = 1, kinds do
        if fault == ARGV[3 + i] then
            if redis.call('DECR', KEYS[2]) >= 0 then
                return i
            end
            redis.call('DEL', KEYS[2])
            break
        end
    end
end
if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'EX', ARGV[2]) then
    return -1
end
local arg = 4 + kinds
for k = 4, #KEYS do
    redis.call('SET', KEYS[k], ARGV[arg], 'EX', ARGV[arg + 1])
    arg = arg + 2
end
return 0
"""


class RedisSandboxStore:
    """Django's cache API (django-redis), plus `take_fault_or_claim` in one round trip."""

    def __init__(self, redis_cache: Any) -> None:
        self._cache = redis_cache
        self._script: Any = None
        self._kinds: dict[tuple[str, ...], list[Any]] = {}  # fault kinds, encoded once

    def get(self, key: str, default: Any = None) -> Any:
        return self._cache.get(key, default)

    def set(self, key: str, value: Any, timeout: float | None = None) -> None:
        self._cache.set(key, value, timeout)

    def add(self, key: str, value: Any, timeout: float | None = None) -> bool:
        return bool(self._cache.add(key, value, timeout))

    def delete(self, key: str) -> Any:
        return self._cache.delete(key)

    def incr(self, key: str, delta: int = 1) -> int:
        return int(self._cache.incr(key, delta))

    def decr(self, key: str, delta: int = 1) -> int:
        return int(self._cache.decr(key, delta))

    def take_fault_or_claim(
        self, fault_key: str, count_key: str, kinds: Sequence[str], once: Write, then: Sequence[Write]
    ) -> str | bool:
        client = self._cache.client
        redis = client.get_client(write=True)
        if self._script is None:
            self._script = redis.register_script(_CLAIM)
        keys = [client.make_key(k) for k in (fault_key, count_key, once.key, *(w.key for w in then))]
        args: list[Any] = [client.encode(once.value), int(once.ttl), len(kinds)]
        kinds = tuple(kinds)
        encoded = self._kinds.get(kinds)
        if encoded is None:
            encoded = self._kinds[kinds] = [client.encode(kind) for kind in kinds]
        args += encoded
        for write in then:
            args += [client.encode(write.value), int(write.ttl)]
        outcome = int(self._script(keys=keys, args=args, client=redis))
        if outcome > 0:
            return kinds[outcome - 1]
        return outcome == 0


def sandbox_store(backend: BaseCache = cache) -> Store:
    """The default cache, wrapped for one-step claims when it is django-redis's plain client."""
    try:
        from django_redis.client import DefaultClient
    except ImportError:  # pragma: no cover (django-redis is a requirement)
        return backend
    client = getattr(backend, "client", None)
    # Other django-redis clients (sharded, herd) keep keys or values differently: they take the steps one by one.
    if type(client) is DefaultClient:
        return RedisSandboxStore(backend)
    return backend
