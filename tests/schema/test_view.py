"""schema.view: the /graphql/ endpoint's error shape, validation limits end to end, request hardening, masking,
auth and document cache."""

from __future__ import annotations

import json
import logging
from typing import Any

import graphene
import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client
from django_redis.exceptions import ConnectionInterrupted
from graphql import GraphQLInterfaceType, GraphQLNamedType, GraphQLObjectType, get_named_type

import accounts.services
import schema.view
from accounts.models import RefreshToken, User, WechatIdentity
from core.errors import ErrorCode
from providers.http import ProviderError, ProviderUnavailable
from schema.schema import schema as app_schema
from schema.view import AppGraphQLView
from tests.helpers import error_code

GRAPHQL_SCHEMA = app_schema.graphql_schema
CODES = {code.value for code in ErrorCode}  # the literal list is pinned in tests/core/test_errors.py
LOGIN = "mutation Login($code: String!) { wechatLogin(code: $code) { token refreshToken user { id } } }"


def _all_codes(result: dict[str, Any]) -> list[str]:
    assert result.get("errors"), result
    return [error["extensions"]["code"] for error in result["errors"]]


def _deepest(type_: GraphQLNamedType, seen: frozenset[str] = frozenset()) -> float:
    """The longest field path below `type_` (infinite when a type can contain itself)."""
    if not isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
        return 0
    if type_.name in seen:
        return float("inf")
    inner = seen | {type_.name}
    return max((1 + _deepest(get_named_type(field.type), inner) for field in type_.fields.values()), default=0)


def _post(client: Client, payload: Any, **extra: Any) -> Any:
    return client.post("/graphql/", json.dumps(payload), content_type="application/json", **extra)


# --- every error carries extensions.code -----------------------------------------


def test_syntax_error_is_bad_user_input(gql):
    response = gql.raw("{ me { id ")
    assert response.status_code == 400
    body = response.json()
    assert _all_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["message"].startswith("Syntax Error")
    assert "data" not in body


def test_unknown_field_is_bad_user_input(gql):
    result = gql("{ me { id doesNotExist } }")
    assert _all_codes(result) == ["BAD_USER_INPUT"]
    assert "doesNotExist" in result["errors"][0]["message"]


def test_missing_required_argument_is_rejected_by_standard_rules(gql):
    result = gql("mutation { wechatLogin { token } }")
    assert _all_codes(result) == ["BAD_USER_INPUT"]
    assert "argument 'code'" in result["errors"][0]["message"]


def test_undefined_variable_is_rejected_by_standard_rules(gql):
    result = gql("mutation { wechatLogin(code: $code) { token } }")
    assert _all_codes(result) == ["BAD_USER_INPUT"]
    assert "'$code' is not defined" in result["errors"][0]["message"]


def test_null_for_required_variable_is_bad_user_input(gql):
    result = gql(LOGIN, {"code": None})
    assert _all_codes(result) == ["BAD_USER_INPUT"]
    assert "$code" in result["errors"][0]["message"]


def _counts() -> tuple[int, ...]:
    return User.objects.count(), WechatIdentity.objects.count(), RefreshToken.objects.count()


def _errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (LOGIN, {"code": 5}),  # 5 for String!
        ("query($f: Int) { orders(first: $f) { edges { cursor } } }", {"f": "abc"}),
        ("query($f: Int) { orders(first: $f) { edges { cursor } } }", {"f": 2**31}),  # no 32-bit Int
        ("query($f: Int) { orders(first: $f) { edges { cursor } } }", {"f": 1.5}),
        (
            # An input field the type does not have.
            "mutation($i: CreateWechatPayOrderInput!) { createWechatPayOrder(input: $i) { codeUrl } }",
            {"i": {"sku": "coffee", "quantity": 1, "tradeType": "NATIVE", "app": "x"}},
        ),
    ],
    ids=["int-for-string", "string-for-int", "int-overflow", "float-for-int", "unknown-input-field"],
)
def test_a_variable_graphql_cannot_coerce_is_bad_user_input_like_any_validation_error(gql, caplog, query, variables):
    # graphql-core keeps the cause of a coercion error as original_error: that is no internal error.
    before = _counts()
    with caplog.at_level(logging.INFO):
        response = gql.raw(query, variables)
    validation = gql.raw("{ me { id doesNotExist } }")
    assert response.status_code == validation.status_code == 400  # graphene-django's status for request errors
    assert _all_codes(response.json()) == ["BAD_USER_INPUT"] and "data" not in response.json()
    assert _errors_logged(caplog) == []
    assert _counts() == before


@pytest.mark.parametrize(
    "escaped",
    [r"\ud800", r"a\udfffb", r"a\u0000b"],
    ids=["lone-high-surrogate", "lone-low-surrogate", "nul"],
)
def test_unpaired_surrogates_and_nul_in_variables_are_bad_user_input(client, db, caplog, escaped):
    # JSON escapes: json.loads turns them into a lone surrogate or a NUL inside a str.
    query = "mutation($c: String!) { wechatLogin(code: $c) { token } }"
    body = json.dumps({"query": query, "variables": {"c": "CODE"}}).replace("CODE", escaped)
    with caplog.at_level(logging.INFO):
        response = client.post("/graphql/", body, content_type="application/json")
    assert response.status_code == 400
    assert _all_codes(response.json()) == ["BAD_USER_INPUT"]
    assert _errors_logged(caplog) == [] and _counts() == (0, 0, 0)


def test_a_nul_in_a_string_literal_is_bad_user_input(gql):
    result = gql('mutation { wechatLogin(code: "a\\u0000b") { token } }')
    assert _all_codes(result) == ["BAD_USER_INPUT"]
    assert result["errors"][0]["message"] == "Strings may not contain NUL characters."
    assert _counts() == (0, 0, 0)


def test_a_deeply_nested_json_body_is_400(client, db):
    deep = "[" * 100_000 + "]" * 100_000
    response = client.post("/graphql/", deep, content_type="application/json")
    assert response.status_code == 400 and _all_codes(response.json()) == ["BAD_USER_INPUT"]
    variables = '{"a":' * 50_000 + "1" + "}" * 50_000
    response = client.get(
        "/graphql/", {"query": "{ __typename }", "variables": variables}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 400 and _all_codes(response.json()) == ["BAD_USER_INPUT"]


def test_a_body_that_is_not_utf8_is_400(client, db):
    response = client.post("/graphql/", b"{ me { id } }\xff", content_type="application/graphql")
    assert response.status_code == 400 and _all_codes(response.json()) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize("introspection", [False, True])
def test_suggestions_name_the_schema_only_when_introspection_is_on(settings, rf, introspection):
    settings.GRAPHQL_INTROSPECTION = introspection
    view = AppGraphQLView.as_view()
    for query in ("{ mee { id } }", "{ me { nicknam } }"):
        response = view(rf.post("/graphql/", json.dumps({"query": query}), content_type="application/json"))
        message = json.loads(response.content)["errors"][0]["message"]
        assert ("Did you mean" in message) is introspection, message


def test_protected_field_without_token_is_unauthenticated(gql):
    response = gql.raw("{ me { id } }")
    assert response.status_code == 200
    body = response.json()
    assert _all_codes(body) == ["UNAUTHENTICATED"]
    assert body["errors"][0]["path"] == ["me"]
    assert body["data"] == {"me": None}


def test_several_errors_all_carry_a_code(gql):
    result = gql("{ me { nope1 nope2 } other }")
    codes = _all_codes(result)
    assert len(codes) == 3
    assert set(codes) == {"BAD_USER_INPUT"}


def test_unsupported_method_has_a_code(client, db):
    response = client.put("/graphql/", json.dumps({"query": "{ __typename }"}), content_type="application/json")
    assert response.status_code == 405
    assert error_code(response.json()) == "BAD_USER_INPUT"


def test_empty_query_is_bad_user_input(client, db):
    response = _post(client, {"query": ""})
    assert response.status_code == 400
    assert error_code(response.json()) == "BAD_USER_INPUT"


def test_non_string_query_is_bad_user_input(client, db):
    response = _post(client, {"query": ["{ __typename }"]})
    assert response.status_code == 400
    assert error_code(response.json()) == "BAD_USER_INPUT"


# --- validation limits, end to end ---------------------------------------------------


def test_too_many_aliases_end_to_end(gql):
    query = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(31)) + " }"
    response = gql.raw(query)
    assert response.status_code == 400
    body = response.json()
    assert _all_codes(body) == ["BAD_USER_INPUT"]
    assert "aliases" in body["errors"][0]["message"]


def test_depth_limit_end_to_end_with_fresh_view(settings, rf):
    # A query nested 11 levels is not expressible in our shallow schema, so the default depth
    # of 10 is checked over a deeper stand-in schema below; here a view built with
    # GRAPHQL_MAX_DEPTH=1 shows the setting reaches the endpoint.
    settings.GRAPHQL_MAX_DEPTH = 1
    view = AppGraphQLView.as_view()
    request = rf.post("/graphql/", json.dumps({"query": "{ me { id } }"}), content_type="application/json")
    response = view(request)
    assert response.status_code == 400
    body = json.loads(response.content)
    assert _all_codes(body) == ["BAD_USER_INPUT"]
    assert "nested deeper than 1 levels" in body["errors"][0]["message"]

    request = rf.post("/graphql/", json.dumps({"query": "{ __typename }"}), content_type="application/json")
    response = view(request)
    assert response.status_code == 200
    assert json.loads(response.content) == {"data": {"__typename": "Query"}}


class _Level(graphene.ObjectType):
    """A type that contains itself, so documents of any depth are valid (ours stop at 5)."""

    level = graphene.Int(required=True)
    next = graphene.Field(lambda: _Level)

    @staticmethod
    def resolve_level(parent: int, info: Any) -> int:
        return parent

    @staticmethod
    def resolve_next(parent: int, info: Any) -> int:
        return parent + 1


class _DeepQuery(graphene.ObjectType):
    next = graphene.Field(_Level)

    @staticmethod
    def resolve_next(root: Any, info: Any) -> int:
        return 1


DEEP_SCHEMA = graphene.Schema(query=_DeepQuery)


def test_default_depth_limit_of_ten_end_to_end(settings, rf, nested):
    # No path in our schema is deeper than 10 (the deepest is orders.edges.node.product.sku), so the
    # default limit is exercised through the real view over a schema that nests without end.
    assert _deepest(GRAPHQL_SCHEMA.query_type) < settings.GRAPHQL_MAX_DEPTH
    assert _deepest(GRAPHQL_SCHEMA.mutation_type) < settings.GRAPHQL_MAX_DEPTH
    assert settings.GRAPHQL_MAX_DEPTH == 10  # the documented default; the suite sets no GRAPHQL_* variable
    view = AppGraphQLView.as_view(schema=DEEP_SCHEMA)

    def post(query: str) -> Any:
        return view(rf.post("/graphql/", json.dumps({"query": query}), content_type="application/json"))

    at_limit = post(nested(10, leaf="level", field="next"))
    assert at_limit.status_code == 200
    data = json.loads(at_limit.content)["data"]
    for _ in range(9):
        data = data["next"]
    assert data == {"level": 9}  # executed all the way down

    deeper = post(nested(11, leaf="level", field="next"))
    assert deeper.status_code == 400
    body = json.loads(deeper.content)
    assert _all_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["message"] == "the operation is nested deeper than 10 levels."
    assert "data" not in body


def test_alias_flooded_login_mutation_changes_nothing(gql, settings):
    # Each alias would be one login: refused as a whole at validation, before any resolver runs.
    count = settings.GRAPHQL_MAX_ALIASES + 1
    codes = [f"alice:{i}" for i in range(1, count + 1)]
    logins = " ".join(f'l{i}: wechatLogin(code: "{code}") {{ token refreshToken }}' for i, code in enumerate(codes))
    response = gql.raw(f"mutation Flood {{ {logins} }}")
    assert response.status_code == 400
    body = response.json()
    assert _all_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["message"] == f"Flood uses more than {settings.GRAPHQL_MAX_ALIASES} aliases."
    assert "data" not in body
    assert (User.objects.count(), WechatIdentity.objects.count(), RefreshToken.objects.count()) == (0, 0, 0)
    # The sandbox never saw the codes: the first and the last still log in, once each.
    first = gql(LOGIN, {"code": codes[0]})
    assert "errors" not in first, first
    last = gql(LOGIN, {"code": codes[-1]})
    assert "errors" not in last, last
    assert last["data"]["wechatLogin"]["user"]["id"] == first["data"]["wechatLogin"]["user"]["id"]
    assert (User.objects.count(), WechatIdentity.objects.count(), RefreshToken.objects.count()) == (1, 1, 2)


def test_introspection_setting_reaches_a_fresh_view(settings, rf):
    query = json.dumps({"query": "{ __schema { queryType { name } } }"})
    settings.GRAPHQL_INTROSPECTION = False
    response = AppGraphQLView.as_view()(rf.post("/graphql/", query, content_type="application/json"))
    assert response.status_code == 400
    assert error_code(json.loads(response.content)) == "BAD_USER_INPUT"

    settings.GRAPHQL_INTROSPECTION = True
    response = AppGraphQLView.as_view()(rf.post("/graphql/", query, content_type="application/json"))
    assert response.status_code == 200
    assert json.loads(response.content) == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


def test_introspection_works_through_the_endpoint_in_the_default_settings(gql):
    result = gql("{ __schema { types { name } } }")
    assert "errors" not in result, result
    assert "User" in {t["name"] for t in result["data"]["__schema"]["types"]}


def test_token_limit(gql, settings):
    query = "{ me { " + "id " * (settings.GRAPHQL_MAX_TOKENS + 10) + "} }"
    response = gql.raw(query)
    assert response.status_code == 400
    body = response.json()
    assert _all_codes(body) == ["BAD_USER_INPUT"]
    assert "tokens" in body["errors"][0]["message"]


def test_token_limit_applies_to_long_documents_beyond_the_cache(gql):
    # Longer than CACHEABLE_QUERY_CHARS: parsed without the cache, still token-limited.
    field = "id" + " " * 40
    query = "{ me { " + field * 2100 + "} }"
    assert len(query) > schema.view.CACHEABLE_QUERY_CHARS
    response = gql.raw(query)
    assert response.status_code == 400
    assert "tokens" in response.json()["errors"][0]["message"]


# --- request hardening ---------------------------------------------------------------


def test_oversized_body_is_413_with_code_and_not_logged_as_error(client, db, caplog):
    payload = {"query": "{ __typename }", "variables": {"pad": "x" * (3 * 1024 * 1024)}}
    with caplog.at_level(logging.INFO):
        response = _post(client, payload)
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")
    assert error_code(response.json()) == "BAD_USER_INPUT"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_batch_list_body_is_rejected(client, db):
    response = _post(client, [{"query": "{ __typename }"}, {"query": "{ __typename }"}])
    assert response.status_code == 400
    body = response.json()
    assert _all_codes(body) == ["BAD_USER_INPUT"]
    assert "data" not in body


def test_invalid_json_is_rejected(client, db):
    response = client.post("/graphql/", '{"query": "{ __typename }"', content_type="application/json")
    assert response.status_code == 400
    assert error_code(response.json()) == "BAD_USER_INPUT"


@pytest.mark.parametrize("variables", [[1, 2], "not json", 5, '"a string"', "[1]"])
def test_variables_must_be_an_object(client, db, variables):
    response = _post(client, {"query": LOGIN, "variables": variables})
    assert response.status_code == 400
    assert error_code(response.json()) == "BAD_USER_INPUT"


def test_get_mutation_is_405_and_not_executed(gql, client):
    tokens = gql.login("get-mutation-user")
    mutation = "mutation Revoke($t: String!) { revokeToken(refreshToken: $t) { revoked } }"
    params = {"query": mutation, "variables": json.dumps({"t": tokens["refreshToken"]})}
    response = client.get("/graphql/", params, HTTP_ACCEPT="application/json")
    assert response.status_code == 405
    assert error_code(response.json()) == "BAD_USER_INPUT"
    # The refresh token still works: the mutation never ran.
    refreshed = gql(
        "mutation R($t: String!) { refreshToken(refreshToken: $t) { token } }", {"t": tokens["refreshToken"]}
    )
    assert "errors" not in refreshed, refreshed


def test_get_with_operation_name_selecting_a_mutation_is_405(client, db):
    document = 'query Q { __typename } mutation M { revokeToken(refreshToken: "x") { revoked } }'
    response = client.get("/graphql/", {"query": document, "operationName": "M"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 405
    assert error_code(response.json()) == "BAD_USER_INPUT"
    response = client.get("/graphql/", {"query": document, "operationName": "Q"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


def test_get_query_with_accept_json(client, db):
    response = client.get("/graphql/", {"query": "{ __typename }"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


# --- error masking ---------------------------------------------------------------------


def test_unexpected_error_is_masked_as_internal(gql, monkeypatch, caplog):
    def boom(**_kwargs: Any) -> Any:
        raise RuntimeError("secret-detail of the failure")

    monkeypatch.setattr(accounts.services, "wechat_login", boom)
    with caplog.at_level(logging.INFO):
        response = gql.raw(LOGIN, {"code": "masked"})
    request_id = response["X-Request-ID"]
    assert request_id
    body = response.content.decode()
    result = response.json()
    assert _all_codes(result) == ["INTERNAL"]
    assert request_id in result["errors"][0]["message"]
    assert result["errors"][0]["path"] == ["wechatLogin"]
    for secret in ("secret-detail", "session_key", "Traceback", "RuntimeError"):
        assert secret not in body
    # ...but the operator can find it: logged at ERROR with the exception.
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is RuntimeError


def test_internal_error_quotes_the_incoming_request_id(gql, monkeypatch):
    def boom(**_kwargs: Any) -> Any:
        raise KeyError("session_key")

    monkeypatch.setattr(accounts.services, "wechat_login", boom)
    response = gql.raw(LOGIN, {"code": "masked"}, HTTP_X_REQUEST_ID="req-0123456789")
    assert response["X-Request-ID"] == "req-0123456789"
    result = response.json()
    assert error_code(result) == "INTERNAL"
    assert "req-0123456789" in result["errors"][0]["message"]
    assert "session_key" not in response.content.decode()


@pytest.mark.parametrize("incoming", ["req-log-0123456789", None], ids=["from-proxy", "generated"])
def test_internal_error_log_line_carries_the_request_id_the_client_quotes(gql, monkeypatch, console_log, incoming):
    def boom(**_kwargs: Any) -> Any:
        raise RuntimeError("secret-detail of the failure")

    monkeypatch.setattr(accounts.services, "wechat_login", boom)
    extra = {"HTTP_X_REQUEST_ID": incoming} if incoming else {}
    _handler, stream = console_log
    response = gql.raw(LOGIN, {"code": "masked"}, **extra)

    request_id = response["X-Request-ID"]
    # The proxy's id is kept; without one the middleware makes a uuid4 hex.
    assert request_id == incoming if incoming else len(request_id) == 32
    result = response.json()
    assert _all_codes(result) == ["INTERNAL"]
    assert result["errors"][0]["message"] == f"Internal error: quote request id {request_id} when reporting it."
    body = response.content.decode()
    for leak in ("secret-detail", "session_key", "Traceback", "RuntimeError", 'File "'):
        assert leak not in body
    # The operator greps the quoted id and finds the one error line, with its traceback after it.
    log = stream.getvalue()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert errors[0].endswith(f" ERROR schema [{request_id}] internal error in ['wechatLogin']")
    assert "Traceback (most recent call last)" in log
    assert "RuntimeError: secret-detail of the failure" in log


@pytest.mark.parametrize(
    "outage",
    [
        OperationalError("could not connect to server: Connection refused"),
        InterfaceError("connection already closed"),
        ConnectionInterrupted("Redis ConnectionError: Error 111 connecting. Connection refused."),
    ],
    ids=["database", "database-connection-closed", "cache"],
)
def test_our_database_or_cache_down_is_service_unavailable(gql, monkeypatch, console_log, outage):
    def down(**_kwargs: Any) -> Any:
        raise outage

    monkeypatch.setattr(accounts.services, "wechat_login", down)
    response = gql.raw(LOGIN, {"code": "alice"}, HTTP_X_REQUEST_ID="outage-0123456789")
    body = response.json()
    assert response.status_code == 200 and _all_codes(body) == ["SERVICE_UNAVAILABLE"]
    assert "try again" in body["errors"][0]["message"] and str(outage) not in body["errors"][0]["message"]
    _, stream = console_log
    # An outage is an error for whoever runs the service, with the request id the client quotes.
    assert "ERROR schema [outage-0123456789] service unavailable" in stream.getvalue()


def test_provider_unavailable_maps_to_its_code(gql, monkeypatch):
    def unavailable(**_kwargs: Any) -> Any:
        raise ProviderUnavailable("wechat", "timed out")

    monkeypatch.setattr(accounts.services, "wechat_login", unavailable)
    result = gql(LOGIN, {"code": "slow"})
    assert _all_codes(result) == ["PROVIDER_UNAVAILABLE"]


def test_provider_error_maps_to_its_code_without_the_provider_message(gql, monkeypatch):
    def refused(**_kwargs: Any) -> Any:
        raise ProviderError("wechat", 40013, "invalid appid secret-appid-detail")

    monkeypatch.setattr(accounts.services, "wechat_login", refused)
    response = gql.raw(LOGIN, {"code": "refused"})
    assert _all_codes(response.json()) == ["PROVIDER_ERROR"]
    assert "secret-appid-detail" not in response.content.decode()


def test_all_codes_come_from_the_enum(gql):
    results = [gql("{ me { id } }"), gql("{ nope }"), gql(LOGIN, {"code": ""})]
    for result in results:
        assert set(_all_codes(result)) <= CODES


# --- document cache -----------------------------------------------------------------------


def _spy_parse(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real_parse = schema.view.parse

    def spy(source: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(source)
        return real_parse(source, *args, **kwargs)

    monkeypatch.setattr(schema.view, "parse", spy)
    return calls


def test_document_cache_parses_a_repeated_query_once(gql, monkeypatch):
    # Django builds a view instance per request, so this proves the cache outlives the instance.
    AppGraphQLView._prepared.clear()
    calls = _spy_parse(monkeypatch)
    query = "{ __typename cacheProbe: __typename }"
    assert gql(query) == {"data": {"__typename": "Query", "cacheProbe": "Query"}}
    assert gql(query) == {"data": {"__typename": "Query", "cacheProbe": "Query"}}
    assert len(calls) == 1
    assert gql("{ otherProbe: __typename }") == {"data": {"otherProbe": "Query"}}
    assert len(calls) == 2


def test_document_cache_within_one_view_instance(monkeypatch):
    AppGraphQLView._prepared.clear()
    calls = _spy_parse(monkeypatch)
    view = AppGraphQLView()
    document, errors = view.prepare("{ __typename }")
    again, errors_again = view.prepare("{ __typename }")
    assert document is again and errors == errors_again == []
    assert len(calls) == 1
    view.prepare("{ me { id } }")
    assert len(calls) == 2


def test_document_cache_is_a_bounded_lru(gql, settings, monkeypatch):
    # A size no other test uses gives a cache of its own; the class-level registry is restored after.
    monkeypatch.setattr(AppGraphQLView, "_prepared", {})
    settings.GRAPHQL_DOCUMENT_CACHE_SIZE = 3
    calls = _spy_parse(monkeypatch)
    docs = [f"{{ d{i}: __typename }}" for i in range(4)]
    sizes: list[int] = []

    def ask(i: int) -> None:
        assert gql(docs[i]) == {"data": {f"d{i}": "Query"}}
        (prepare,) = AppGraphQLView._prepared.values()  # one cache, shared by every request's view
        assert prepare.cache_info().maxsize == 3
        sizes.append(prepare.cache_info().currsize)

    ask(0)
    ask(0)
    assert calls == docs[:1]  # the repeat came from the cache
    ask(1)
    ask(2)
    ask(0)  # a hit, which makes d1 the least recently used
    assert calls == docs[:3]
    ask(3)  # a fourth document evicts d1
    ask(0)
    ask(2)
    assert calls == docs
    ask(1)
    assert calls == [*docs, docs[1]]  # evicted, so parsed again
    assert max(sizes) == 3


def test_cached_invalid_document_is_still_rejected_each_time(gql):
    for _ in range(2):
        assert _all_codes(gql("{ me { nope } }")) == ["BAD_USER_INPUT"]


# --- authentication -----------------------------------------------------------------------


def test_session_cookie_never_authenticates(db, django_user_model):
    staff = django_user_model.objects.create_user(username="staff", password="pw-unused-123", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    response = _post(client, {"query": "{ me { id } }"})
    assert response.status_code == 200  # CSRF-exempt: the cookie is simply ignored
    result = response.json()
    assert _all_codes(result) == ["UNAUTHENTICATED"]
    assert result["data"] == {"me": None}


@pytest.mark.parametrize("header", ["Bearer x", "JWT", "JWT a b", "Basic dXNlcjpwYXNz", "jwtx token"])
def test_malformed_authorization_header(gql, header):
    result = gql("{ me { id } }", HTTP_AUTHORIZATION=header)
    assert _all_codes(result) == ["UNAUTHENTICATED"]
    assert "Authorization: JWT <token>" in result["errors"][0]["message"]
    # A public mutation still works with the same header.
    login = gql(LOGIN, {"code": f"malformed-{len(header)}-{header[:3]}"}, HTTP_AUTHORIZATION=header)
    assert "errors" not in login, login
    assert login["data"]["wechatLogin"]["token"]


def test_invalid_jwt_is_unauthenticated_and_public_mutations_work(gql):
    result = gql("{ me { id } }", HTTP_AUTHORIZATION="JWT not.a.token")
    assert _all_codes(result) == ["UNAUTHENTICATED"]
    assert "invalid" in result["errors"][0]["message"]
    login = gql(LOGIN, {"code": "after-bad-jwt"}, HTTP_AUTHORIZATION="JWT not.a.token")
    assert "errors" not in login, login


def test_lowercase_jwt_prefix_is_accepted(gql):
    login = gql.login("lowercase-prefix")
    result = gql("{ me { id } }", HTTP_AUTHORIZATION=f"jwt {gql.token}")
    assert result == {"data": {"me": {"id": login["user"]["id"]}}}


@pytest.mark.parametrize("length", ["abc", "1e3", "12 34"])
def test_unparsable_content_length_is_400_not_500(client, db, length):
    response = _post(client, {"query": "{ __typename }"}, CONTENT_LENGTH=length)
    assert response.status_code == 400
    assert error_code(response.json()) == "BAD_USER_INPUT"
    assert "Content-Length" in response.json()["errors"][0]["message"]


def test_negative_content_length_is_rejected(client, db):
    response = _post(client, {"query": "{ __typename }"}, CONTENT_LENGTH="-5")
    assert 400 <= response.status_code < 500
    assert error_code(response.json()) == "BAD_USER_INPUT"
