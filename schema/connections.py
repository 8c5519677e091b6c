"""A relay connection that pages forward without counting the whole set.

graphene-django's DjangoConnectionField runs `SELECT COUNT(*)` on every page, only to know
whether there is a next one. Reading one row more than asked answers that for less. Paging
backwards (`last` / `before`) needs the count, so it keeps graphene-django's way, on the same
queryset. Cursors are graphene's offsets either way, so a client can mix them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db.models import QuerySet
from graphene.relay.connection import connection_adapter, page_info_adapter
from graphene_django import DjangoConnectionField
from graphene_django.utils import maybe_queryset
from graphql_relay import connection_from_array_slice, cursor_to_offset, get_offset_with_default, offset_to_cursor

from core.errors import AppError, ErrorCode


class ForwardConnectionField(DjangoConnectionField):
    """DjangoConnectionField whose `first`/`after`/`offset` pages are one query of `first + 1` rows."""

    @classmethod
    def connection_resolver(  # type: ignore[override]
        cls,
        resolver: Any,
        connection: Any,
        default_manager: Any,
        queryset_resolver: Any,
        max_limit: int | None,
        enforce_first_or_last: bool,
        root: Any,
        info: Any,
        **args: Any,
    ) -> Any:
        # graphene-django asserts these (an internal error); they are the client's to fix.
        for name in ("first", "last"):
            value = args.get(name)
            if value is not None and (value < 0 or (max_limit is not None and value > max_limit)):
                raise AppError(ErrorCode.BAD_USER_INPUT, f"'{name}' must be between 0 and {max_limit}.")
        if args.get("after") is not None and cursor_to_offset(args["after"]) is None:
            # graphql-relay reads an unreadable cursor as the start; graphene-django's offset arithmetic
            # would fail on it (TypeError), so it is dropped here, to the same effect.
            del args["after"]
        if args.get("offset") is not None and (args["offset"] < 0 or args.get("before") is not None):
            raise AppError(ErrorCode.BAD_USER_INPUT, "'offset' must be 0 or more, and not used with 'before'.")
        return super().connection_resolver(
            resolver,
            connection,
            default_manager,
            queryset_resolver,
            max_limit,
            enforce_first_or_last,
            root,
            info,
            **args,
        )

    @classmethod
    def resolve_connection(
        cls, connection: Any, args: dict[str, Any], iterable: Any, max_limit: int | None = None
    ) -> Any:
        iterable = maybe_queryset(iterable)
        first = args["first"] if args.get("first") is not None else max_limit
        backwards = args.get("last") is not None or args.get("before") is not None
        if backwards or first is None or not isinstance(iterable, QuerySet):
            return super().resolve_connection(connection, args, iterable, max_limit=max_limit)
        # `offset` counts rows after `after`, as graphene-django reads it; both become one cursor.
        start = get_offset_with_default(args.get("after"), -1) + 1 + (args.pop("offset", None) or 0)
        if start:
            args["after"] = offset_to_cursor(start - 1)
        args["first"] = first
        rows = list(iterable[start : start + first + 1])
        # The set reaches at least this far; one row more than asked means there is a next page.
        page = connection_from_array_slice(
            rows,
            args,
            slice_start=start,
            array_length=start + len(rows),
            array_slice_length=len(rows),
            connection_type=partial(connection_adapter, connection),
            edge_type=connection.Edge,
            page_info_type=page_info_adapter,
        )
        page.iterable = iterable
        return page
