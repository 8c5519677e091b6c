"""Permission decorators for resolvers and mutations: declared, not sprinkled inside."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from graphql import GraphQLResolveInfo

from core.errors import AppError, ErrorCode
from schema.auth import request_user

F = TypeVar("F", bound=Callable[..., Any])


def _info(args: tuple[Any, ...]) -> GraphQLResolveInfo:
    for arg in args:
        if isinstance(arg, GraphQLResolveInfo):
            return arg
    raise TypeError("resolver called without GraphQLResolveInfo")


def current_user(info: GraphQLResolveInfo) -> Any:
    user = request_user(info.context)
    if not user.is_authenticated:
        message = getattr(info.context, "jwt_error", None) or "Log in first: send 'Authorization: JWT <token>'."
        raise AppError(ErrorCode.UNAUTHENTICATED, message)
    return user


def login_required(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current_user(_info(args))
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def staff_required(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user(_info(args)).is_staff:
            raise AppError(ErrorCode.FORBIDDEN, "Only staff may do this.")
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
