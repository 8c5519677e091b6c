"""JWT authentication for the GraphQL endpoint: one prepared query per request, and a token's
signature checked once per process.

Only `Authorization: JWT <token>` authenticates here; a session cookie never does,
which is what lets the endpoint be CSRF-exempt.
"""

from __future__ import annotations

import functools
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject
from graphql_jwt.exceptions import JSONWebTokenError, JSONWebTokenExpired
from graphql_jwt.settings import jwt_settings
from graphql_jwt.utils import get_payload

from accounts.selectors import active_user_for_token
from schema.tokens import verifying_key

PREFIX = "jwt"
_UNRESOLVED = object()


@functools.lru_cache(maxsize=4096)
def _verified(token: str, key: str) -> tuple[Any, Any]:
    """(username, exp) of a token that passed every check now, expiry included.

    Checking the signature is most of the cost of authenticating a request but for the database
    lookup, and its outcome cannot change: a token verified once stays verified, so a cached one
    only has its expiry checked again (`_username`). Failures are not cached. `key` is part of
    the cache key, so a token is verified afresh under another key.
    """
    payload = get_payload(token)
    try:
        exp = int(payload["exp"])  # PyJWT's reading of the claim
    except (KeyError, TypeError, ValueError, OverflowError):
        exp = None  # no claim (or, with expiry checks off, an unreadable one): nothing to check later
    return payload.get("username"), exp


def _username(token: str) -> Any:
    """The token's username, with graphql_jwt's checks and errors (get_payload's)."""
    username, exp = _verified(token, verifying_key())
    if exp is not None and jwt_settings.JWT_VERIFY_EXPIRATION:
        leeway = jwt_settings.JWT_LEEWAY
        if isinstance(leeway, timedelta):
            leeway = leeway.total_seconds()
        if exp <= time.time() - leeway:  # as PyJWT decides it
            raise JSONWebTokenExpired()
    return username


def _resolve(request: HttpRequest, token: str) -> Any:
    try:
        username = _username(token)
    except JSONWebTokenExpired:
        request.jwt_error = "Your access token has expired: call refreshToken, then retry."  # type: ignore[attr-defined]
        return AnonymousUser()
    except JSONWebTokenError:
        request.jwt_error = "Your access token is invalid: log in again."  # type: ignore[attr-defined]
        return AnonymousUser()
    user = active_user_for_token(username, settings.WECHAT_MINIPROGRAM_APPID) if isinstance(username, str) else None
    if user is None:
        request.jwt_error = "Your access token names no active user: log in again."  # type: ignore[attr-defined]
        return AnonymousUser()
    return user


def request_user(request: HttpRequest) -> Any:
    """The authenticated user (or AnonymousUser), resolved at most once per request.

    Resolvers use this rather than the lazy `request.user`, so the hot path works on the
    model instance itself, not through a proxy on every attribute.
    """
    user = getattr(request, "_jwt_user", _UNRESOLVED)
    if user is _UNRESOLVED:
        token = getattr(request, "_jwt_token", None)
        user = _resolve(request, token) if token else AnonymousUser()
        request._jwt_user = user  # type: ignore[attr-defined]
    return user


def authenticate(request: HttpRequest) -> None:
    """Reads the JWT header; nothing is decoded until someone asks for the user."""
    request.jwt_error = None  # type: ignore[attr-defined]
    request._jwt_token = None  # type: ignore[attr-defined]
    parts = request.META.get("HTTP_AUTHORIZATION", "").split()
    if parts and (len(parts) != 2 or parts[0].lower() != PREFIX):
        request.jwt_error = "Send the token as 'Authorization: JWT <token>'."  # type: ignore[attr-defined]
    elif parts:
        request._jwt_token = parts[1]  # type: ignore[attr-defined]
    request.user = SimpleLazyObject(lambda: request_user(request))
