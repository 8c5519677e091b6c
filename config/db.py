"""Prepared SQL for the few statements on every hot request (auth, notifies, the orders page, login).

Building and compiling an ORM query costs the worker more than PostgreSQL spends running it, and
PostgreSQL spends more planning these joins and CTEs than executing them. So each hot statement is
fixed SQL, PREPAREd once per database connection and EXECUTEd after that. Elsewhere (SQLite, or
DB_PREPARED_STATEMENTS=0 behind a pooler that cannot keep them) the same SQL runs as a plain query.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction

DUPLICATE_PREPARED = "42P05"  # a pooled session already holds it
UNKNOWN_PREPARED = "26000"  # the session lost it (DISCARD ALL behind a pooler)


def guarded() -> Any:
    """Inside a caller's transaction, a savepoint keeps a failing statement from spoiling it;
    outside one (the usual case: autocommit) nothing is needed, and nothing is spent."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


def _pgcode(exc: BaseException) -> str | None:
    return getattr(exc.__cause__, "pgcode", None)


class Statement:
    """One SQL statement and the PostgreSQL types of its parameters.

    Parameters are `%s` in order (types a tuple), or `%(name)s` (types a dict in parameter
    order, and execute() takes a dict), which lets one value appear several times.
    """

    def __init__(self, name: str, sql: str, types: tuple[str, ...] | dict[str, str]) -> None:
        self.name = name
        self.sql = sql
        self.names: tuple[str, ...] | None = None
        numbered = sql
        if isinstance(types, dict):
            self.names = tuple(types)
            for n, key in enumerate(self.names, 1):
                if f"%({key})s" not in numbered:
                    raise ValueError(f"{name}: no %({key})s in the SQL")
                numbered = numbered.replace(f"%({key})s", f"${n}")
            if "%(" in numbered:
                raise ValueError(f"{name}: a parameter without a type")
        else:
            if sql.count("%s") != len(types):
                raise ValueError(f"{name}: {sql.count('%s')} placeholders, {len(types)} types")
            for n in range(1, len(types) + 1):
                numbered = numbered.replace("%s", f"${n}", 1)
        type_list = list(types.values()) if isinstance(types, dict) else list(types)
        self._prepare = f"PREPARE {name} ({', '.join(type_list)}) AS {numbered}"
        self._execute = f"EXECUTE {name} ({', '.join(['%s'] * len(type_list))})" if type_list else f"EXECUTE {name}"
        # Raw connections holding it (PREPARE is per connection): a new connection prepares again.
        self._prepared: weakref.WeakSet[Any] = weakref.WeakSet()

    def execute(self, cursor: Any, params: list[Any] | tuple[Any, ...] | dict[str, Any]) -> None:
        """Runs the statement on Django's cursor; read the rows from the cursor afterwards.

        A statement that fails (a unique violation, say) raises as cursor.execute would, and
        leaves a caller's transaction usable.
        """
        if connection.vendor != "postgresql" or not settings.DB_PREPARED_STATEMENTS:
            with guarded():
                cursor.execute(self.sql, params)
            return
        values = [params[key] for key in self.names] if isinstance(params, dict) and self.names else params
        raw = connection.connection
        if raw not in self._prepared:
            try:
                with guarded():
                    cursor.execute(self._prepare)
            except DatabaseError as exc:
                if _pgcode(exc) != DUPLICATE_PREPARED:
                    raise
            self._prepared.add(raw)
        try:
            with guarded():
                cursor.execute(self._execute, values)
        except DatabaseError as exc:
            if _pgcode(exc) != UNKNOWN_PREPARED:
                raise
            self._prepared.discard(raw)
            self.execute(cursor, params)
