"""JWT authentication for the GraphQL endpoint: one decode and at most one query per request.

Only `Authorization: JWT <token>` authenticates here; a session cookie never does,
which is what lets the endpoint be CSRF-exempt.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject
from graphql_jwt.exceptions import JSONWebTokenError, JSONWebTokenExpired
from graphql_jwt.utils import get_payload

from accounts.selectors import active_user_for_token

PREFIX = "jwt"


def _resolve(request: HttpRequest, token: str) -> Any:
    try:
        payload = get_payload(token)
    except JSONWebTokenExpired:
        request.jwt_error = "Your access token has expired: call refreshToken, then retry."  # type: ignore[attr-defined]
        return AnonymousUser()
    except JSONWebTokenError:
        request.jwt_error = "Your access token is invalid: log in again."  # type: ignore[attr-defined]
        return AnonymousUser()
    username = payload.get("username")
    user = active_user_for_token(username, settings.WECHAT_MINIPROGRAM_APPID) if isinstance(username, str) else None
    if user is None:
        request.jwt_error = "Your access token names no active user: log in again."  # type: ignore[attr-defined]
        return AnonymousUser()
    return user


def authenticate(request: HttpRequest) -> None:
    """Sets request.user lazily from the JWT (nothing is decoded until someone asks)."""
    request.jwt_error = None  # type: ignore[attr-defined]
    header = request.META.get("HTTP_AUTHORIZATION", "")
    parts = header.split()
    if not parts:
        request.user = AnonymousUser()
        return
    if len(parts) != 2 or parts[0].lower() != PREFIX:
        request.jwt_error = "Send the token as 'Authorization: JWT <token>'."  # type: ignore[attr-defined]
        request.user = AnonymousUser()
        return
    token = parts[1]
    request.user = SimpleLazyObject(lambda: _resolve(request, token))
