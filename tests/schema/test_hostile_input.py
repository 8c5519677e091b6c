"""Every operation of the committed schema.graphql, every argument, a table of hostile values, as an
anonymous client, a user and staff: no 5xx, every error with a code of ours, never INTERNAL for a
client's mistake, and a refused request changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    build_schema,
    get_named_type,
)
from graphql_jwt.shortcuts import get_token

from accounts.models import RefreshToken, User, WechatIdentity
from core.errors import ErrorCode
from payments.models import Order, PaymentEvent, Product, Refund
from tests.factories import OrderFactory, ProductFactory, StaffFactory

SCHEMA = build_schema((Path(__file__).resolve().parents[2] / "schema.graphql").read_text())
CODES = {code.value for code in ErrorCode}

HOSTILE_STRINGS = [
    "",
    " ",
    "x" * 100_000,
    "漢字😀",
    "\u202e\u0301",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "\x00",
    "\ud800",
]
HOSTILE_INTS = [-1, 0, -(2**31), 2**31, 2**63, 1.5, "abc", "", True, [1]]
HOSTILE_OTHERS = ["NOPE", "", 1, -1, True, None, {"a": 1}, [], ["x"]]


def _hostile(type_: Any) -> list[Any]:
    named = get_named_type(type_)
    if isinstance(named, GraphQLScalarType) and named.name in ("String", "ID"):
        return HOSTILE_STRINGS + [1, True, None, ["x"], {"a": "b"}]
    if isinstance(named, GraphQLScalarType) and named.name == "Int":
        return HOSTILE_INTS + [None]
    if isinstance(named, GraphQLInputObjectType):
        plausible = _plausible(named)
        values: list[Any] = [{}, None, "x", [plausible], {**plausible, "unknown": 1}]
        for name, field in named.fields.items():
            values += [{**plausible, name: value} for value in _hostile(field.type)]
        return values
    return HOSTILE_OTHERS


def _plausible(type_: Any) -> Any:
    """A value of the right type, so that one argument at a time is the hostile one."""
    if isinstance(type_, GraphQLNonNull):
        return _plausible(type_.of_type)
    if isinstance(type_, GraphQLList):
        return [_plausible(type_.of_type)]
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        return {name: _plausible(field.type) for name, field in type_.fields.items()}
    return {"Int": 1, "Boolean": True, "Float": 1.0}.get(type_.name, "coffee")


def _selection(field: GraphQLField) -> str:
    return " { __typename }" if isinstance(get_named_type(field.type), GraphQLObjectType) else ""


def _cases() -> list[Any]:
    cases = []
    for operation, root in (("query", SCHEMA.query_type), ("mutation", SCHEMA.mutation_type)):
        assert root is not None
        for name, field in root.fields.items():
            if not field.args:
                cases.append(pytest.param(operation, name, None, None, id=f"{name}"))
            for arg_name, arg in field.args.items():
                for n, value in enumerate(_hostile(arg.type)):
                    cases.append(pytest.param(operation, name, arg_name, value, id=f"{name}-{arg_name}-{n}"))
    return cases


def _document(operation: str, name: str) -> tuple[str, dict[str, Any]]:
    root = SCHEMA.query_type if operation == "query" else SCHEMA.mutation_type
    assert root is not None
    field = root.fields[name]
    if not field.args:
        return f"{operation} {{ {name}{_selection(field)} }}", {}
    declared = ", ".join(f"${arg}: {arg_type.type}" for arg, arg_type in field.args.items())
    passed = ", ".join(f"{arg}: ${arg}" for arg in field.args)
    variables = {arg: _plausible(arg_type.type) for arg, arg_type in field.args.items()}
    return f"{operation}({declared}) {{ {name}({passed}){_selection(field)} }}", variables


def _database() -> list[Any]:
    """Every row of every model a request could change."""
    models = (User, WechatIdentity, RefreshToken, Product, Order, Refund, PaymentEvent)
    return [list(model.objects.order_by("pk").values()) for model in models]


@pytest.fixture
def tokens(gql: Any) -> dict[str, str | None]:
    ProductFactory(sku="coffee", price=1800)
    user = gql.login("hostile")["token"]
    staff = StaffFactory()
    buyer = User.objects.get(wechat_identities__openid__isnull=False)
    OrderFactory(user=buyer, status=Order.Status.PAID, transaction_id="4200000001202611300000000001")
    return {"anonymous": None, "user": user, "staff": get_token(staff)}


@pytest.mark.parametrize(("operation", "name", "argument", "value"), _cases())
def test_hostile_values_never_break_the_contract(client: Client, tokens, settings, operation, name, argument, value):
    settings.RATELIMIT_LOGIN = settings.RATELIMIT_LOGIN_CODE = settings.RATELIMIT_ORDER = "0"
    query, variables = _document(operation, name)
    if argument is not None:
        variables[argument] = value
    # ensure_ascii: a lone surrogate travels as the JSON escape a client would send.
    body = json.dumps({"query": query, "variables": variables}, ensure_ascii=True)
    for role, token in tokens.items():
        before = _database()
        headers = {"HTTP_AUTHORIZATION": f"JWT {token}"} if token else {}
        response = client.post("/graphql/", body, content_type="application/json", **headers)
        assert response.status_code < 500, (role, response.status_code, response.content[:300])
        answer = response.json()
        errors = answer.get("errors") or []
        for error in errors:
            assert error["extensions"]["code"] in CODES, (role, error)
            assert error["extensions"]["code"] != "INTERNAL", (role, error)
            assert "Traceback" not in error["message"], (role, error)
        if errors:
            assert _database() == before, (role, errors)
