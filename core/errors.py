"""The one error vocabulary of the domain: services raise AppError; schema/ turns it into `extensions.code`."""

from __future__ import annotations

import enum

from django.db import InterfaceError, OperationalError
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Our own database or cache not answering (down, restarting, a connection cut): the client retries later.
OUTAGES: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionInterrupted,
    RedisConnectionError,
    RedisTimeoutError,
)


class ErrorCode(enum.StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"  # our own database or cache is down: retry later
    INTERNAL = "INTERNAL"


class AppError(Exception):
    """An expected failure with a message that tells the client what to do."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
