"""Per-operation rate limits on the shared cache (django-ratelimit), raised as RATE_LIMITED; they fail
open (with a warning) while the cache is down."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from django_ratelimit.core import is_ratelimited

from core.errors import OUTAGES, AppError, ErrorCode

logger = logging.getLogger(__name__)


def enforce(request: HttpRequest, *, group: str, rate: str, key: str | Callable[[str, Any], str]) -> None:
    """Counts one use of `group` for `key`; a rate of "0" or "" turns the limit off."""
    if not rate or rate == "0":
        return
    try:
        limited = is_ratelimited(request, group=group, key=key, rate=rate, increment=True)
    except OUTAGES:
        # The cache is down: a limit that locked everyone out would be worse than none for a while.
        logger.warning("rate limit %s not counted: the cache is unavailable", group, exc_info=True)
        return
    if limited:
        raise AppError(ErrorCode.RATE_LIMITED, "Too many attempts: wait a minute and try again.")
