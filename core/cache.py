"""The embedded default's shared cache: a table in the database (see settings.CACHES)."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.db import DatabaseCache as _DatabaseCache
from django.db import router, transaction


class DatabaseCache(_DatabaseCache):
    """Django's database cache with `incr`/`decr` in one transaction. Django's reads, then writes in
    another transaction, so two concurrent decrements lose one; on SQLite (IMMEDIATE transactions) the
    transaction holds the write lock from the read to the write. `add` is atomic already (the key is the
    table's primary key). On PostgreSQL use Redis (REDIS_URL) instead."""

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        with transaction.atomic(using=router.db_for_write(self.cache_model_class)):
            return super().incr(key, delta, version)
