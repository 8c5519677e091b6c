"""Reads of accounts that need care."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.db import connection

from accounts.models import User, WechatIdentity
from config.db import Statement


@dataclass(frozen=True, slots=True)
class MiniprogramIds:
    """A user's openid and unionid in the mini-program, read along with the user: what the
    GraphQL `User.openid` / `unionid` resolve from (cheaper to make than a model instance)."""

    openid: str
    unionid: str


@functools.cache
def _user_with_identity() -> tuple[Statement, list[str]]:
    quote = connection.ops.quote_name
    user_fields = list(User._meta.concrete_fields)
    identity = WechatIdentity._meta
    columns = ", ".join(f"u.{quote(f.column)}" for f in user_fields)
    # Identifiers come from model metadata, quoted; the values are parameters.
    sql = (
        f"SELECT {columns}, i.{quote('openid')}, i.{quote('unionid')} "  # noqa: S608
        f"FROM {quote(User._meta.db_table)} u "
        f"LEFT JOIN {quote(identity.db_table)} i ON i.{quote('user_id')} = u.{quote('id')} AND i.{quote('appid')} = %s "
        f"WHERE u.{quote('username')} = %s"
    )
    # Planning this join costs PostgreSQL more than running it: prepared once per connection.
    return Statement("wxb_user_for_token", sql, ("text", "text")), [f.attname for f in user_fields]


def _fetch(appid: str, username: str) -> tuple[Any, ...] | None:
    statement, _ = _user_with_identity()
    with connection.cursor() as cursor:
        statement.execute(cursor, [appid, username])
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row


def active_user_for_token(username: str, appid: str) -> User | None:
    """The active user a JWT names, with their mini-program identity, in one round trip.

    This runs on every authenticated request, so it is one fixed (prepared) SQL statement
    rather than two ORM queries; the identity is what `User.openid` / `unionid` resolve from.
    """
    _, attnames = _user_with_identity()
    row = _fetch(appid, username)
    if row is None:
        return None
    user = User.from_db(connection.alias, attnames, row[: len(attnames)])
    if not user.is_active:
        return None
    openid, unionid = row[len(attnames) :]
    user._miniprogram_identity = MiniprogramIds(openid, unionid or "") if openid else None  # type: ignore[attr-defined]
    return user
