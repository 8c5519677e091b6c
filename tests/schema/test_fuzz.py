"""The fuzz suite's GraphQL half: schemathesis generates documents for every operation of the committed
schema.graphql, sent as an anonymous client, a user and staff. No 5xx, every error with a code of ours,
never INTERNAL, and a refused request changes nothing.

Bounded for CI (FUZZ_EXAMPLES per operation, 25 by default, the same examples on every run);
`FUZZ_EXAMPLES=500 FUZZ_RANDOM=1 make test PYTEST_ARGS="tests/schema/test_fuzz.py"` digs deeper by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.test import Client
from graphql import build_schema
from graphql_jwt.shortcuts import get_token
from hypothesis import given

from accounts.models import RefreshToken, User, WechatIdentity
from core.errors import ErrorCode
from notifications.models import PushBatch, PushDelivery, Subscription
from payments.models import Order, PaymentEvent, Product, Refund
from tests.factories import OrderFactory, ProductFactory, StaffFactory
from tests.helpers import fuzz_settings

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"
SCHEMA = schemathesis.graphql.from_path(SCHEMA_FILE)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
CODES = {code.value for code in ErrorCode} - {"INTERNAL"}


def _database() -> list[Any]:
    models = (
        User,
        WechatIdentity,
        RefreshToken,
        Product,
        Order,
        Refund,
        PaymentEvent,
        PushBatch,
        PushDelivery,
        Subscription,
    )
    return [list(model.objects.order_by("pk").values()) for model in models]


@pytest.fixture
def tokens(gql: Any, settings: Any) -> dict[str, str | None]:
    settings.RATELIMIT_LOGIN = settings.RATELIMIT_LOGIN_CODE = settings.RATELIMIT_ORDER = "0"
    ProductFactory(sku="coffee", price=1800)
    user = gql.login("fuzz")["token"]
    buyer = User.objects.get(wechat_identities__openid__isnull=False)
    OrderFactory(user=buyer, status=Order.Status.PAID, transaction_id="4200000001202611300000000002")
    return {"anonymous": None, "user": user, "staff": get_token(StaffFactory())}


def test_every_operation_of_the_schema_is_fuzzed():
    committed = build_schema(SCHEMA_FILE.read_text())
    assert committed.query_type is not None and committed.mutation_type is not None
    fields = [f"Query.{name}" for name in committed.query_type.fields]
    fields += [f"Mutation.{name}" for name in committed.mutation_type.fields]
    assert sorted(operation.label for operation in OPERATIONS) == sorted(fields)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_generated_documents_never_break_the_contract(client: Client, tokens, operation):
    @given(case=operation.as_strategy())
    @fuzz_settings(25)
    def send(case: Any) -> None:
        body = json.dumps({"query": case.body}, ensure_ascii=True)
        for role, token in tokens.items():
            before = _database()
            headers = {"HTTP_AUTHORIZATION": f"JWT {token}"} if token else {}
            response = client.post("/graphql/", body, content_type="application/json", **headers)
            assert response.status_code < 500, (role, case.body, response.content[:300])
            errors = response.json().get("errors") or []
            for error in errors:
                assert error["extensions"]["code"] in CODES, (role, case.body, error)
                assert "Traceback" not in error["message"], (role, error)
            if errors:
                assert _database() == before, (role, case.body, errors)

    send()
