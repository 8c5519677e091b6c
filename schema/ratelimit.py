"""Per-operation rate limits on the shared cache (django-ratelimit), raised as RATE_LIMITED."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from django_ratelimit.core import is_ratelimited

from core.errors import AppError, ErrorCode


def enforce(request: HttpRequest, *, group: str, rate: str, key: str | Callable[[str, Any], str]) -> None:
    """Counts one use of `group` for `key`; a rate of "0" or "" turns the limit off."""
    if not rate or rate == "0":
        return
    if is_ratelimited(request, group=group, key=key, rate=rate, increment=True):
        raise AppError(ErrorCode.RATE_LIMITED, "Too many attempts: wait a minute and try again.")
