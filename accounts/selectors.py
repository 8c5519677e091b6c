"""Reads of accounts that need care."""

from __future__ import annotations

import contextlib
import functools
import weakref
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from accounts.models import User, WechatIdentity

STATEMENT = "wxb_user_for_token"
# Raw connections that hold the prepared statement (PREPARE is per connection).
_prepared: weakref.WeakSet[Any] = weakref.WeakSet()


@functools.cache
def _user_with_identity_sql() -> tuple[str, list[str]]:
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
    return sql, [f.attname for f in user_fields]


def _guarded() -> Any:
    """Inside a caller's transaction, a savepoint keeps a failed statement from spoiling it;
    outside one (the usual case: autocommit) nothing is needed, and nothing is spent."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


def _execute_prepared(cursor: Any, sql: str, params: list[str]) -> None:
    raw = connection.connection
    if raw not in _prepared:
        try:
            with transaction.atomic():  # a savepoint, so a failure cannot spoil a caller's transaction
                cursor.execute(
                    f"PREPARE {STATEMENT} (text, text) AS " + sql.replace("%s", "$1", 1).replace("%s", "$2", 1)
                )
        except DatabaseError as exc:
            if getattr(exc.__cause__, "pgcode", None) != "42P05":  # 42P05: a pooled session already has it
                raise
        _prepared.add(raw)
    try:
        with _guarded():
            cursor.execute(f"EXECUTE {STATEMENT} (%s, %s)", params)
    except DatabaseError as exc:
        if getattr(exc.__cause__, "pgcode", None) != "26000":  # 26000: the session lost it (DISCARD ALL)
            raise
        _prepared.discard(raw)
        _execute_prepared(cursor, sql, params)


def _fetch(appid: str, username: str) -> tuple[Any, ...] | None:
    sql, _ = _user_with_identity_sql()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and settings.DB_PREPARED_STATEMENTS:
            # Planning this join costs PostgreSQL more than running it; prepare it once per connection.
            _execute_prepared(cursor, sql, [appid, username])
        else:
            cursor.execute(sql, [appid, username])
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row


def active_user_for_token(username: str, appid: str) -> User | None:
    """The active user a JWT names, with their mini-program identity, in one round trip.

    This runs on every authenticated request, so it is one fixed (prepared) SQL statement
    rather than two ORM queries; the identity is what `User.openid` / `unionid` resolve from.
    """
    _, attnames = _user_with_identity_sql()
    row = _fetch(appid, username)
    if row is None:
        return None
    user = User.from_db(connection.alias, attnames, row[: len(attnames)])
    if not user.is_active:
        return None
    openid, unionid = row[len(attnames) :]
    user._miniprogram_identity = (  # type: ignore[attr-defined]
        WechatIdentity(user_id=user.pk, appid=appid, openid=openid, unionid=unionid or "") if openid else None
    )
    return user
