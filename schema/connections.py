"""A relay connection that pages forward without counting the whole set.

graphene-django's DjangoConnectionField runs `SELECT COUNT(*)` on every page, only to know
whether there is a next one. Reading one row more than asked answers that for less. Paging
backwards (`last` / `before`) needs the count, so it keeps graphene-django's way. Cursors are
graphene's offsets either way, so a client can mix them.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Protocol, runtime_checkable

from django.db.models import QuerySet
from graphene.relay.connection import connection_adapter, page_info_adapter
from graphene_django import DjangoConnectionField
from graphql_relay import connection_from_array_slice, cursor_to_offset, get_offset_with_default, offset_to_cursor

from schema.errors import AppError, ErrorCode


@runtime_checkable
class Pageable(Protocol):
    """What a resolver returns to be paged by ForwardConnectionField."""

    def rows(self, offset: int, limit: int) -> list[Any]: ...

    def queryset(self) -> QuerySet[Any]: ...


class ForwardConnectionField(DjangoConnectionField):
    """DjangoConnectionField whose resolver returns a Pageable: `first`/`after`/`offset` pages cost
    one query of `first + 1` rows; `last`/`before` fall back to counting the queryset."""

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
    def resolve_queryset(cls, connection: Any, iterable: Any, info: Any, args: dict[str, Any]) -> Any:
        if isinstance(iterable, Pageable):
            return iterable
        return super().resolve_queryset(connection, iterable, info, args)

    @classmethod
    def resolve_connection(
        cls, connection: Any, args: dict[str, Any], iterable: Any, max_limit: int | None = None
    ) -> Any:
        if not isinstance(iterable, Pageable):
            return super().resolve_connection(connection, args, iterable, max_limit=max_limit)
        if args.get("last") is not None or args.get("before") is not None:
            return super().resolve_connection(connection, args, iterable.queryset(), max_limit=max_limit)
        # `offset` counts from 1 after `after`, as graphene-django reads it.
        offset = args.pop("offset", None)
        after = args.get("after")
        if offset:
            if after:
                offset += cursor_to_offset(after) + 1
            args["after"] = offset_to_cursor(offset - 1)
        start = get_offset_with_default(args.get("after"), -1) + 1
        first = args.get("first")
        if first is None:
            first = args["first"] = max_limit
        if first is None:  # no limit configured: the whole set, graphene-django's way
            return super().resolve_connection(connection, args, iterable.queryset(), max_limit=max_limit)
        rows = iterable.rows(start, first + 1)
        # The set is known to reach at least this far; one more row than asked means a next page.
        return connection_from_array_slice(
            rows,
            args,
            slice_start=start,
            array_length=start + len(rows),
            array_slice_length=len(rows),
            connection_type=partial(connection_adapter, connection),
            edge_type=Edge,
            page_info_type=page_info_adapter,
        )


class Edge:
    """What an edge resolves from: graphene reads `node` and `cursor` by attribute, and a plain
    object costs a fraction of an ObjectType instance, fifty times a page."""

    __slots__ = ("cursor", "node")

    def __init__(self, node: Any, cursor: str) -> None:
        self.node = node
        self.cursor = cursor
