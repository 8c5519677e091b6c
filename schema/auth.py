"""JWT authentication for the GraphQL endpoint: django-graphql-jwt verifies the token and reads the
user it names through its JWT_GET_USER_BY_NATURAL_KEY_HANDLER, the accounts selector
`active_user_for_token` (settings.GRAPHQL_JWT).

Only `Authorization: JWT <token>` authenticates here; a session cookie never does,
which is what lets the endpoint be CSRF-exempt.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject
from graphql_jwt.exceptions import JSONWebTokenError, JSONWebTokenExpired
from graphql_jwt.utils import get_payload, get_user_by_payload

PREFIX = "jwt"
_UNRESOLVED = object()


def _resolve(request: HttpRequest, token: str) -> Any:
    try:
        user = get_user_by_payload(get_payload(token))
    except JSONWebTokenExpired:
        request.jwt_error = "Your access token has expired: call refreshToken, then retry."  # type: ignore[attr-defined]
        return AnonymousUser()
    except JSONWebTokenError:
        request.jwt_error = "Your access token is invalid: log in again."  # type: ignore[attr-defined]
        return AnonymousUser()
    if user is None:
        request.jwt_error = "Your access token names no active user: log in again."  # type: ignore[attr-defined]
        return AnonymousUser()
    return user


def request_user(request: HttpRequest) -> Any:
    """The authenticated user (or AnonymousUser), resolved at most once per request."""
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
