"""JWT authentication for the GraphQL endpoint: one decode and one prepared query per request.

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
_UNRESOLVED = object()


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
