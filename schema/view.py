"""The /graphql/ endpoint: graphene-django's view with our auth, limits, error shape and document cache."""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from graphene_django.views import GraphQLView, HttpError
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    ValidationRule,
    execute,
    get_operation_ast,
    parse,
    validate,
)

from core.errors import OUTAGES, AppError, ErrorCode
from core.middleware import current_request_id
from providers.http import ProviderError, ProviderUnavailable
from schema.auth import authenticate
from schema.validation import Limits, standard_rules

logger = logging.getLogger("schema")

# Documents longer than this are not cached (they are rare and would crowd the cache).
CACHEABLE_QUERY_CHARS = 32 * 1024


def error_payload(message: str, code: ErrorCode) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code.value}}]}


class UnexpectedError(GraphQLError):
    """An exception execute() raised (resolver errors graphql-core reports itself): always INTERNAL."""


# graphql-core's suggestions name types and fields: without introspection they would leak the schema.
_SUGGESTION = re.compile(r" Did you mean .*\?$")


def _shape(error: GraphQLError) -> dict[str, Any]:
    """Maps an error to {message, locations, path, extensions.code}, masking anything unexpected."""
    original = error.original_error
    formatted: dict[str, Any] = {}
    if isinstance(original, AppError):
        formatted["message"] = original.message
        code = original.code
    elif isinstance(original, ProviderUnavailable):
        formatted["message"] = "The provider is not reachable right now: try again shortly."
        code = ErrorCode.PROVIDER_UNAVAILABLE
        logger.warning("provider unavailable: %s", original)
    elif isinstance(original, ProviderError):
        formatted["message"] = "The provider refused the request."
        code = ErrorCode.PROVIDER_ERROR
        logger.warning("provider error: %s", original)
    elif isinstance(original, OUTAGES):
        formatted["message"] = "A service of ours is not answering right now: try again in a moment."
        code = ErrorCode.SERVICE_UNAVAILABLE
        logger.error("service unavailable in %s: %r", error.path, original)
    elif not isinstance(error, UnexpectedError) and (original is None or error.path is None):
        # Syntax, validation and variable errors, which have no path (graphql-core keeps the cause of a
        # variable it could not coerce as original_error): graphql-core's messages are safe to show.
        message = error.message
        if not settings.GRAPHQL_INTROSPECTION:
            message = _SUGGESTION.sub("", message)
        formatted["message"] = message
        code = ErrorCode.BAD_USER_INPUT
        logger.info("request refused: %s", message)
    else:
        request_id = current_request_id()
        logger.error("internal error in %s", error.path, exc_info=original)
        formatted["message"] = f"Internal error: quote request id {request_id} when reporting it."
        code = ErrorCode.INTERNAL
    if error.locations:
        formatted["locations"] = [loc._asdict() for loc in error.locations]
    if error.path is not None:
        formatted["path"] = error.path
    formatted["extensions"] = {"code": code.value}
    return formatted


def _text_problem(value: Any) -> str | None:
    """What is wrong with a string somewhere in `value` (a NUL, which PostgreSQL cannot store, or a lone
    surrogate, which is no text at all), else None. Iterative: variables may nest as deep as JSON allows."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "Strings may not contain NUL characters."
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "Strings must be valid Unicode (no unpaired surrogates)."
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _prepare(
    schema: GraphQLSchema, limits: Limits, rules: list[type[ValidationRule]], max_tokens: int, query: str
) -> tuple[DocumentNode | None, list[GraphQLError]]:
    """Parse, check our limits, then validate (the standard rules only see a document within the
    limits); cached per distinct document text by the view."""
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError as error:
        return None, [error]
    errors = limits.errors(document)
    if not errors:
        errors = validate(schema, document, rules, max_errors=20)
    return document, list(errors)


class AppGraphQLView(GraphQLView):
    # Django builds a view instance per request, so the document caches live on the class,
    # one per configuration (tests build views with other limits).
    _prepared: dict[tuple[Any, ...], Any] = {}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("graphiql", settings.GRAPHIQL)
        kwargs["batch"] = False
        super().__init__(**kwargs)
        self.max_body = settings.GRAPHQL_MAX_BODY_BYTES
        config = (
            id(self.schema),
            settings.GRAPHQL_MAX_DEPTH,
            settings.GRAPHQL_MAX_FIELDS,
            settings.GRAPHQL_MAX_ALIASES,
            settings.GRAPHQL_MAX_REPEATS,
            settings.GRAPHQL_INTROSPECTION,
            settings.GRAPHQL_MAX_TOKENS,
            settings.GRAPHQL_DOCUMENT_CACHE_SIZE,
        )
        prepare = self._prepared.get(config)
        if prepare is None:
            prepare = functools.lru_cache(maxsize=settings.GRAPHQL_DOCUMENT_CACHE_SIZE)(
                functools.partial(
                    _prepare,
                    self.schema.graphql_schema,
                    Limits(
                        max_depth=settings.GRAPHQL_MAX_DEPTH,
                        max_fields=settings.GRAPHQL_MAX_FIELDS,
                        max_aliases=settings.GRAPHQL_MAX_ALIASES,
                        max_repeats=settings.GRAPHQL_MAX_REPEATS,
                    ),
                    standard_rules(introspection=settings.GRAPHQL_INTROSPECTION),
                    settings.GRAPHQL_MAX_TOKENS,
                )
            )
            self._prepared[config] = prepare
        self.prepare = prepare

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # Exempt the view function once, rather than wrapping dispatch again on every request.
        return csrf_exempt(super().as_view(**initkwargs))

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(error_payload("Invalid Content-Length.", ErrorCode.BAD_USER_INPUT), status=400)
        if length > self.max_body:
            return JsonResponse(
                error_payload(f"The request body must be at most {self.max_body} bytes.", ErrorCode.BAD_USER_INPUT),
                status=413,
            )
        authenticate(request)
        # graphene-django's dispatch is wrapped in ensure_csrf_cookie; a JWT API needs no CSRF cookie.
        return GraphQLView.dispatch.__wrapped__(self, request, *args, **kwargs)  # type: ignore[attr-defined]

    def execute_graphql_request(
        self,
        request: HttpRequest,
        data: Any,
        query: str | None,
        variables: Any,
        operation_name: str | None,
        show_graphiql: bool = False,
    ) -> ExecutionResult | None:
        if not query:
            if show_graphiql:
                return None
            raise HttpError(HttpResponse(status=400), "Send a GraphQL query in 'query'.")
        if not isinstance(query, str):
            raise HttpError(HttpResponse(status=400), "'query' must be a string.")
        if variables is not None and not isinstance(variables, dict):
            raise HttpError(HttpResponse(status=400), "'variables' must be a JSON object.")
        problem = _text_problem([query, variables, operation_name])
        if problem:
            raise HttpError(HttpResponse(status=400), problem)
        if len(query) <= CACHEABLE_QUERY_CHARS:
            document, errors = self.prepare(query)
        else:
            document, errors = self.prepare.__wrapped__(query)
        if errors or document is None:
            return ExecutionResult(data=None, errors=errors)

        operation = get_operation_ast(document, operation_name)
        if request.method == "GET" and operation is not None and operation.operation != OperationType.QUERY:
            if show_graphiql:
                return None
            raise HttpError(HttpResponse(status=405), "Mutations must be sent with POST.")
        try:
            return execute(
                self.schema.graphql_schema,
                document,
                root_value=self.get_root_value(request),
                context_value=self.get_context(request),
                variable_values=variables,
                operation_name=operation_name,
                middleware=self.get_middleware(request),
            )
        except Exception as exc:  # noqa: BLE001 (resolver errors are reported by graphql-core; this is the rest)
            return ExecutionResult(errors=[UnexpectedError(str(exc), original_error=exc)])

    def parse_body(self, request: HttpRequest) -> Any:
        try:
            return super().parse_body(request)
        except RecursionError:
            # json.loads recurses once per nesting level: a body of 100,000 "[" would be a 500.
            raise HttpError(HttpResponse(status=400), "The JSON body is nested too deeply.") from None
        except UnicodeDecodeError:
            raise HttpError(HttpResponse(status=400), "The body must be UTF-8.") from None

    @staticmethod
    def get_graphql_params(request: HttpRequest, data: Any) -> Any:
        try:
            return GraphQLView.get_graphql_params(request, data)
        except RecursionError:  # `variables` sent as a JSON string
            raise HttpError(HttpResponse(status=400), "'variables' is nested too deeply.") from None

    @staticmethod
    def format_error(error: Any) -> dict[str, Any]:
        if isinstance(error, GraphQLError):
            return _shape(error)
        if isinstance(error, HttpError):
            return {"message": error.message or "Bad request.", "extensions": {"code": ErrorCode.BAD_USER_INPUT.value}}
        return _shape(UnexpectedError(str(error), original_error=error))

    def json_encode(self, request: HttpRequest, d: Any, pretty: bool = False) -> str:
        if pretty or self.pretty:
            return json.dumps(d, sort_keys=True, indent=2, ensure_ascii=False)
        return json.dumps(d, separators=(",", ":"), ensure_ascii=False)
