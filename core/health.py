"""/healthz: 200 when the database and the cache answer, 503 naming what is down."""

from __future__ import annotations

import logging
import uuid

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


def _database_ok() -> bool:
    try:
        # The probe every database answers; no flow runs SQL of its own.
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:  # any driver error means "down" here
        logger.warning("healthz: database check failed", exc_info=True)
        return False


def _cache_ok() -> bool:
    probe = uuid.uuid4().hex
    key = f"healthz:{probe}"  # unique per probe, so concurrent checks cannot collide
    try:
        cache.set(key, probe, 10)
        ok = cache.get(key) == probe
        cache.delete(key)
        return ok
    except Exception:  # any client error means "down" here
        logger.warning("healthz: cache check failed", exc_info=True)
        return False


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database_ok(), "cache": _cache_ok()}
    down = [name for name, ok in checks.items() if not ok]
    body = {"status": "ok" if not down else "down", "down": down}
    return JsonResponse(body, status=503 if down else 200)
