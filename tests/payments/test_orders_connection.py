"""The `orders` connection pages like graphene-django's (same cursors, same pageInfo) without COUNT(*)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from graphql_jwt.shortcuts import get_token
from graphql_relay import connection_from_array

from payments.models import Order
from tests.helpers import error_code
from tests.payments.test_reliability import make_order

PAGE = (
    "query P($first: Int, $after: String, $last: Int, $before: String, $offset: Int, $status: OrderStatus,"
    " $provider: PaymentProvider) { orders(first: $first, after: $after, last: $last, before: $before,"
    " offset: $offset, status: $status, provider: $provider) {"
    " pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
    " edges { cursor node { outTradeNo status product { sku } } } } }"
)
COUNT = 7


@pytest.fixture
def seven(products, django_user_model) -> tuple[Any, list[str]]:
    """A user with seven orders (newest first in the list), and someone else's order."""
    ann = django_user_model.objects.create_user(username="ann")
    bob = django_user_model.objects.create_user(username="bob")
    start = timezone.now() - dt.timedelta(hours=1)
    numbers = []
    for i in range(COUNT):
        order = make_order(ann, products["coffee" if i % 2 else "sticker"], status="PAID" if i % 3 == 0 else "PENDING")
        Order.objects.filter(pk=order.pk).update(created_at=start + dt.timedelta(minutes=i))
        numbers.append(order.out_trade_no)
    make_order(bob, products["coffee"])
    return ann, numbers[::-1]


def expected(numbers: list[str], **args: Any) -> dict[str, Any]:
    """What graphql-relay's reference algorithm gives for the whole list."""
    reference = connection_from_array(numbers, args)
    return {
        "pageInfo": {
            "hasNextPage": reference.pageInfo.hasNextPage,
            "hasPreviousPage": reference.pageInfo.hasPreviousPage,
            "startCursor": reference.pageInfo.startCursor,
            "endCursor": reference.pageInfo.endCursor,
        },
        "edges": [(edge.cursor, edge.node) for edge in reference.edges],
    }


def page(gql: Any, **args: Any) -> dict[str, Any]:
    result = gql(PAGE, args)
    assert "errors" not in result, result
    orders = result["data"]["orders"]
    return {
        "pageInfo": orders["pageInfo"],
        "edges": [(edge["cursor"], edge["node"]["outTradeNo"]) for edge in orders["edges"]],
    }


def test_walking_forward_gives_every_order_once_in_order(gql, seven):
    ann, numbers = seven
    gql.token = get_token(ann)
    seen: list[str] = []
    after = None
    for _ in range(COUNT):
        got = page(gql, first=3, after=after)
        assert got == expected(numbers, first=3, after=after)
        seen += [number for _, number in got["edges"]]
        if not got["pageInfo"]["hasNextPage"]:
            break
        after = got["pageInfo"]["endCursor"]
    assert seen == numbers


@pytest.mark.parametrize(
    "args",
    [
        {"first": 7},  # exactly all: no next page, though one more row was asked for
        {"first": 6},
        {"first": 0},
        {"first": 100},
        {},  # no first: the configured maximum
        {"first": 2, "after": "bad cursor"},  # an unreadable cursor reads as the start, as in graphene-django
    ],
)
def test_forward_pages_match_the_reference(gql, seven, args):
    ann, numbers = seven
    gql.token = get_token(ann)
    assert page(gql, **args) == expected(numbers, **{"first": 100, **args})


def test_offset_counts_from_after(gql, seven):
    ann, numbers = seven
    gql.token = get_token(ann)
    after = page(gql, first=1)["pageInfo"]["endCursor"]
    # offset 2 after the first order skips two more: graphene-django's reading of `offset`.
    assert [n for _, n in page(gql, first=2, after=after, offset=2)["edges"]] == numbers[3:5]
    assert [n for _, n in page(gql, first=2, offset=3)["edges"]] == numbers[3:5]


@pytest.mark.parametrize("args", [{"last": 2}, {"last": 3, "before": "YXJyYXljb25uZWN0aW9uOjU="}])
def test_paging_backwards_still_works(gql, seven, args):
    ann, numbers = seven
    gql.token = get_token(ann)
    assert page(gql, **args) == expected(numbers, **args)


def test_filters_and_staff(gql, seven, staff):
    ann, numbers = seven
    paid = [n for n in numbers if Order.objects.get(out_trade_no=n).status == "PAID"]
    gql.token = get_token(ann)
    assert [n for _, n in page(gql, first=50, status="PAID")["edges"]] == paid
    assert page(gql, first=50, provider="ALIPAY")["edges"] == []
    assert [n for _, n in page(gql, first=50, status="PAID", provider="WECHATPAY")["edges"]] == paid
    gql.token = get_token(staff)
    everyone = list(Order.objects.order_by("-created_at", "-id").values_list("out_trade_no", flat=True))
    assert [n for _, n in page(gql, first=50)["edges"]] == everyone
    assert len(everyone) == COUNT + 1
    assert [n for _, n in page(gql, first=50, status="PAID")["edges"]] == paid


@pytest.mark.parametrize(
    "args", [{"first": 101}, {"first": -1}, {"last": 101}, {"last": -1}, {"offset": -1}, {"offset": 1, "before": "x"}]
)
def test_out_of_range_paging_is_bad_user_input(gql, seven, args):
    ann, _ = seven
    gql.token = get_token(ann)
    assert error_code(gql(PAGE, args)) == "BAD_USER_INPUT"


def test_anonymous_is_unauthenticated(gql, seven):
    assert error_code(gql(PAGE, {"first": 5})) == "UNAUTHENTICATED"
