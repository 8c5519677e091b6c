"""payments/schema.py through /graphql/: products, createWechatPayOrder's rules, the JSAPI, NATIVE, H5
and APP flows with their notifies, order and orders (who sees what, filters, the connection's pages
against graphql-relay's reference, query counts), and what syncOrder, closeOrder and refundOrder
refuse, changing nothing."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.utils import timezone
from graphql_jwt.shortcuts import get_token
from graphql_relay import connection_from_array

from accounts.models import User
from payments.models import Order, PaymentEvent, Refund
from payments.schema import CreateWechatPayOrderInput
from tests.factories import OrderFactory, ProductFactory, UserFactory
from tests.helpers import CREATE_ORDER, GraphQLClient, create_order_input, error_code
from tests.payments.notify_bodies import state

PRODUCTS = "{ products { sku title price } }"
ORDER = "query O($n: String!) { order(outTradeNo: $n) { outTradeNo status transactionId paidAt refundedAmount } }"
ORDERS = (
    "query P($first: Int, $after: String, $last: Int, $before: String, $offset: Int, $status: OrderStatus,"
    " $provider: PaymentProvider) { orders(first: $first, after: $after, last: $last, before: $before,"
    " offset: $offset, status: $status, provider: $provider) {"
    " pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
    " edges { cursor node { outTradeNo status amount product { sku } } } } }"
)
SYNC = "mutation S($n: String!) { syncOrder(outTradeNo: $n) { status transactionId } }"
CLOSE = "mutation X($n: String!) { closeOrder(outTradeNo: $n) { status } }"
REFUND = (
    'mutation R($n: String!, $a: Int!) { refundOrder(outTradeNo: $n, amount: $a, reason: "test") '
    "{ outRefundNo amount status } }"
)
NO_SUCH_ORDER = "20990101" + "0" * 24
# What WeChat Pay accepts in out_trade_no.
OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")


def create(gql: GraphQLClient, sku: str = "coffee", quantity: int = 1, trade_type: str = "JSAPI", **extra: Any) -> Any:
    result = gql(CREATE_ORDER, create_order_input(sku, quantity, tradeType=trade_type, **extra))
    assert "errors" not in result, result
    return result["data"]["createWechatPayOrder"]


@pytest.fixture
def buyers(db: Any) -> tuple[User, User]:
    return UserFactory(username="ann"), UserFactory(username="bob")


# --- products -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # as in production: no test transaction, no savepoints
def test_products_is_one_query(gql, products, django_assert_num_queries):
    ProductFactory(sku="retired", price=500, active=False)
    with django_assert_num_queries(1):  # the active products, in sku order; anonymous: no user
        result = gql(PRODUCTS)
    assert result == {
        "data": {
            "products": [
                {"sku": "coffee", "title": "Coffee", "price": 1800},
                {"sku": "sticker", "title": "Sticker", "price": 1},
            ]
        }
    }


# --- createWechatPayOrder: the server prices it -----------------------------------------------


def test_amount_is_the_server_price_times_quantity(gql, products, wechatpay_sandbox):
    gql.login("alice")
    order = create(gql, quantity=3)["order"]
    assert order["amount"] == products["coffee"].price * 3 == 5400
    assert Order.objects.get().amount == 5400
    assert wechatpay_sandbox.order(order["outTradeNo"])["amount"] == 5400
    assert OUT_TRADE_NO.match(order["outTradeNo"])


def test_create_input_has_no_price_and_a_client_price_is_refused(gql, products, wechatpay_sandbox):
    fields = {name.lower() for name in CreateWechatPayOrderInput._meta.fields}
    assert not fields & {"price", "amount", "total", "total_fee", "totalfee"}
    gql.login("alice")
    result = gql(CREATE_ORDER, create_order_input(price=1))
    assert result.get("errors")
    assert Order.objects.count() == 0 and wechatpay_sandbox.orders_created() == 0


@pytest.mark.parametrize("quantity", [0, -1, 100])
def test_bad_quantity_is_bad_user_input(gql, products, wechatpay_sandbox, quantity):
    gql.login("alice")
    assert error_code(gql(CREATE_ORDER, create_order_input(quantity=quantity))) == "BAD_USER_INPUT"
    assert Order.objects.count() == 0 and wechatpay_sandbox.orders_created() == 0


def test_unknown_and_inactive_products_are_not_found(gql, products, wechatpay_sandbox):
    ProductFactory(sku="retired", title="Retired", price=500, active=False)
    gql.login("alice")
    assert error_code(gql(CREATE_ORDER, create_order_input(sku="no-such-sku"))) == "NOT_FOUND"
    assert error_code(gql(CREATE_ORDER, create_order_input(sku="retired"))) == "NOT_FOUND"
    assert Order.objects.count() == 0 and wechatpay_sandbox.orders_created() == 0


# --- the flows: GraphQL, the sandbox and our notify views, in-process ---------------------------


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_jsapi_pay_flow(gql, products, wechatpay_sandbox, version):
    gql.login("alice")
    created = create(gql, quantity=2, version=version)
    order = created["order"]
    assert order["amount"] == 3600 and order["status"] == "PENDING"
    params = created["payParams"]
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["package"].startswith("prepay_id=")
    assert params["signType"] == ("RSA" if version == "V3" else "HMAC-SHA256")

    wechatpay_sandbox.pay(order["outTradeNo"])
    status, body = wechatpay_sandbox.send_pay_notify(order["outTradeNo"])
    assert status == (204 if version == "V3" else 200)
    if version == "V2":
        assert "<return_code><![CDATA[SUCCESS]]></return_code>" in body
    paid = gql(ORDER, {"n": order["outTradeNo"]})["data"]["order"]
    assert paid["status"] == "PAID" and paid["transactionId"] and paid["paidAt"]
    assert PaymentEvent.objects.count() == 1

    # A duplicate notify changes nothing and is still acknowledged.
    assert wechatpay_sandbox.send_pay_notify(order["outTradeNo"])[0] == status
    assert PaymentEvent.objects.count() == 1


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_native_h5_app(gql, products, wechatpay_sandbox, version):
    gql.login("alice")
    assert create(gql, trade_type="NATIVE", version=version)["codeUrl"].startswith("weixin://")
    assert create(gql, trade_type="H5", version=version)["h5Url"].startswith("https://")
    app = create(gql, trade_type="APP", version=version)["appParams"]
    assert app["package"] == "Sign=WXPay" and app["prepayid"]


@pytest.mark.parametrize("version", ["V2", "V3"])
def test_refund_flow(gql, products, wechatpay_sandbox, staff, version):
    gql.login("alice")
    order = create(gql, version=version)["order"]
    wechatpay_sandbox.pay(order["outTradeNo"])
    wechatpay_sandbox.send_pay_notify(order["outTradeNo"])
    buyer_token = gql.token

    gql.token = get_token(staff)
    partial = gql(REFUND, {"n": order["outTradeNo"], "a": 800})["data"]["refundOrder"]
    assert partial["status"] == "PROCESSING" and partial["amount"] == 800
    assert wechatpay_sandbox.complete_refund(partial["outRefundNo"])[0] in (200, 204)
    rest = gql(REFUND, {"n": order["outTradeNo"], "a": 1000})["data"]["refundOrder"]
    wechatpay_sandbox.complete_refund(rest["outRefundNo"])
    gql.token = buyer_token
    final = gql(ORDER, {"n": order["outTradeNo"]})["data"]["order"]
    assert final == {**final, "status": "REFUNDED", "refundedAmount": 1800}
    assert set(Refund.objects.values_list("status", flat=True)) == {"SUCCESS"}
    # Nothing left to refund.
    gql.token = get_token(staff)
    assert error_code(gql(REFUND, {"n": order["outTradeNo"], "a": 1})) == "CONFLICT"


def test_sync_recovers_a_lost_notify(gql, products, wechatpay_sandbox):
    gql.login("alice")
    order = create(gql)["order"]
    wechatpay_sandbox.pay(order["outTradeNo"])  # paid, but the notify never arrives
    result = gql(SYNC, {"n": order["outTradeNo"]})
    assert result["data"]["syncOrder"]["status"] == "PAID"
    assert Order.objects.get().status == "PAID"


def test_close_order(gql, products, wechatpay_sandbox):
    gql.login("alice")
    order = create(gql)["order"]
    result = gql(CLOSE, {"n": order["outTradeNo"]})
    assert result["data"]["closeOrder"]["status"] == "CLOSED"
    assert wechatpay_sandbox.order(order["outTradeNo"])["state"] == "CLOSED"


# --- order and orders: who sees what ------------------------------------------------------------


def numbers(result: dict[str, Any]) -> set[str]:
    assert "errors" not in result, result
    return {edge["node"]["outTradeNo"] for edge in result["data"]["orders"]["edges"]}


def test_order_of_someone_else_is_not_found(gql, products, buyers, staff):
    ann, bob = buyers
    bobs = OrderFactory(user=bob, product=products["coffee"])
    gql.token = get_token(ann)
    result = gql(ORDER, {"n": bobs.out_trade_no})
    assert error_code(result) == "NOT_FOUND"
    assert result["data"]["order"] is None
    # Indistinguishable from an order that does not exist.
    assert error_code(gql(ORDER, {"n": NO_SUCH_ORDER})) == "NOT_FOUND"
    gql.token = get_token(bob)
    assert gql(ORDER, {"n": bobs.out_trade_no})["data"]["order"]["status"] == "PENDING"
    gql.token = get_token(staff)
    assert gql(ORDER, {"n": bobs.out_trade_no})["data"]["order"]["outTradeNo"] == bobs.out_trade_no


def test_a_user_sees_only_their_own_orders_and_staff_see_all(gql, products, buyers, staff):
    ann, bob = buyers
    mine = {OrderFactory(user=ann, product=products["coffee"]).out_trade_no for _ in range(3)}
    theirs = {OrderFactory(user=bob, product=products["sticker"]).out_trade_no for _ in range(2)}

    gql.token = get_token(ann)
    assert numbers(gql(ORDERS, {"first": 50})) == mine
    gql.token = get_token(bob)
    assert numbers(gql(ORDERS, {"first": 50})) == theirs
    gql.token = get_token(staff)
    assert numbers(gql(ORDERS, {"first": 50})) == mine | theirs
    gql.token = None
    assert error_code(gql(ORDERS, {"first": 50})) == "UNAUTHENTICATED"


def test_orders_filter_by_status(gql, products, buyers):
    ann, bob = buyers
    coffee = products["coffee"]
    pending = {OrderFactory(user=ann, product=coffee).out_trade_no for _ in range(2)}
    paid = {OrderFactory(user=ann, product=coffee, status="PAID").out_trade_no for _ in range(3)}
    closed = {OrderFactory(user=ann, product=coffee, status="CLOSED").out_trade_no}
    OrderFactory(user=bob, product=coffee, status="PAID")
    gql.token = get_token(ann)
    assert numbers(gql(ORDERS, {"first": 50, "status": "PAID"})) == paid
    assert numbers(gql(ORDERS, {"first": 50, "status": "PENDING"})) == pending
    assert numbers(gql(ORDERS, {"first": 50, "status": "CLOSED"})) == closed
    assert numbers(gql(ORDERS, {"first": 50, "status": "REFUNDED"})) == set()
    result = gql(ORDERS, {"first": 50})
    assert all(e["node"]["status"] in ("PENDING", "PAID", "CLOSED") for e in result["data"]["orders"]["edges"])


def test_orders_filter_by_provider(gql, products, buyers):
    ann, _ = buyers
    mine = {OrderFactory(user=ann, product=products["coffee"]).out_trade_no for _ in range(2)}
    gql.token = get_token(ann)
    assert numbers(gql(ORDERS, {"first": 50, "provider": "WECHATPAY"})) == mine
    assert numbers(gql(ORDERS, {"first": 50, "provider": "ALIPAY"})) == set()


# --- orders: query counts (outside a test transaction, as in production: no savepoints) --------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("rows", "first"),
    [(5, 50), (50, 50), (6, 5), (51, 50)],
    ids=["5-rows-first-50", "50-rows-first-50", "first-5-of-6", "first-50-of-51"],
)
def test_an_orders_page_is_two_queries_whatever_its_size(gql, products, buyers, django_assert_num_queries, rows, first):
    ann, _ = buyers
    for i in range(rows):
        OrderFactory(user=ann, product=products["coffee" if i % 2 else "sticker"])
    gql.token = get_token(ann)
    with django_assert_num_queries(2) as captured:  # the user, the page (first + 1 rows with their products)
        result = gql(ORDERS, {"first": first})
    page_sql = captured.captured_queries[1]["sql"]
    assert f"LIMIT {first + 1}" in page_sql and "COUNT(" not in page_sql.upper()
    orders = result["data"]["orders"]
    assert len(orders["edges"]) == min(rows, first)
    assert orders["pageInfo"]["hasNextPage"] is (rows > first)
    assert {e["node"]["product"]["sku"] for e in orders["edges"]} == {"coffee", "sticker"}


# --- orders: the connection pages like graphene-django's (same cursors, same pageInfo), no COUNT --

COUNT = 7


@pytest.fixture
def seven(products, buyers) -> tuple[User, list[str]]:
    """A user with seven orders (newest first in the list), and someone else's order."""
    ann, bob = buyers
    start = timezone.now() - dt.timedelta(hours=1)
    made = []
    for i in range(COUNT):
        product = products["coffee" if i % 2 else "sticker"]
        order = OrderFactory(user=ann, product=product, status="PAID" if i % 3 == 0 else "PENDING")
        Order.objects.filter(pk=order.pk).update(created_at=start + dt.timedelta(minutes=i))
        made.append(order.out_trade_no)
    OrderFactory(user=bob, product=products["coffee"])
    return ann, made[::-1]


def expected(made: list[str], **args: Any) -> dict[str, Any]:
    """What graphql-relay's reference algorithm gives for the whole list."""
    reference = connection_from_array(made, args)
    return {
        "pageInfo": {
            "hasNextPage": reference.pageInfo.hasNextPage,
            "hasPreviousPage": reference.pageInfo.hasPreviousPage,
            "startCursor": reference.pageInfo.startCursor,
            "endCursor": reference.pageInfo.endCursor,
        },
        "edges": [(edge.cursor, edge.node) for edge in reference.edges],
    }


def page(gql: GraphQLClient, **args: Any) -> dict[str, Any]:
    result = gql(ORDERS, args)
    assert "errors" not in result, result
    orders = result["data"]["orders"]
    return {
        "pageInfo": orders["pageInfo"],
        "edges": [(edge["cursor"], edge["node"]["outTradeNo"]) for edge in orders["edges"]],
    }


def test_walking_forward_gives_every_order_once_in_order(gql, seven):
    ann, made = seven
    gql.token = get_token(ann)
    seen: list[str] = []
    after = None
    for _ in range(COUNT):
        got = page(gql, first=3, after=after)
        assert got == expected(made, first=3, after=after)
        seen += [number for _, number in got["edges"]]
        if not got["pageInfo"]["hasNextPage"]:
            break
        after = got["pageInfo"]["endCursor"]
    assert seen == made


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
    ann, made = seven
    gql.token = get_token(ann)
    assert page(gql, **args) == expected(made, **{"first": 100, **args})


@pytest.mark.parametrize("args", [{"offset": 2, "after": "coffee"}, {"offset": 2, "after": "coffee", "last": 3}])
def test_an_unreadable_after_reads_as_the_start_with_an_offset_too(gql, seven, args):
    # graphene-django's offset arithmetic failed on it (a TypeError: INTERNAL).
    ann, made = seven
    gql.token = get_token(ann)
    assert page(gql, **args) == page(gql, **{k: v for k, v in args.items() if k != "after"})


def test_offset_counts_from_after(gql, seven):
    ann, made = seven
    gql.token = get_token(ann)
    after = page(gql, first=1)["pageInfo"]["endCursor"]
    # offset 2 after the first order skips two more: graphene-django's reading of `offset`.
    assert [n for _, n in page(gql, first=2, after=after, offset=2)["edges"]] == made[3:5]
    assert [n for _, n in page(gql, first=2, offset=3)["edges"]] == made[3:5]


@pytest.mark.parametrize("args", [{"last": 2}, {"last": 3, "before": "YXJyYXljb25uZWN0aW9uOjU="}])
def test_paging_backwards_still_works(gql, seven, args):
    ann, made = seven
    gql.token = get_token(ann)
    assert page(gql, **args) == expected(made, **args)


def test_filters_and_staff(gql, seven, staff):
    ann, made = seven
    paid = [n for n in made if Order.objects.get(out_trade_no=n).status == "PAID"]
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
    "args",
    [
        {"first": 101},
        {"first": -1},
        {"last": 101},
        {"last": -1},
        {"offset": -1},
        {"offset": 1, "before": "x"},
    ],
)
def test_out_of_range_paging_is_bad_user_input(gql, seven, args):
    ann, _ = seven
    gql.token = get_token(ann)
    assert error_code(gql(ORDERS, args)) == "BAD_USER_INPUT"


def test_anonymous_is_unauthenticated(gql, seven):
    assert error_code(gql(ORDERS, {"first": 5})) == "UNAUTHENTICATED"


# --- syncOrder and closeOrder: only the buyer's own order -----------------------------------------


def _at_the_sandbox(sandbox: Any, order: Order) -> tuple[Any, ...]:
    return state(order), sandbox.order(order.out_trade_no)["state"]


@pytest.mark.parametrize("mutation", [SYNC, CLOSE], ids=["syncOrder", "closeOrder"])
def test_sync_and_close_of_someone_elses_order_are_refused_and_change_nothing(
    gql, products, buyers, wechatpay_sandbox, mutation
):
    gql.login("alice")
    number = create(gql, trade_type="NATIVE")["order"]["outTradeNo"]
    wechatpay_sandbox.pay(number)  # paid at the provider, not yet here: a sync would apply it
    order = Order.objects.get(out_trade_no=number)
    before = _at_the_sandbox(wechatpay_sandbox, order)
    ann, _ = buyers
    gql.token = get_token(ann)
    assert error_code(gql(mutation, {"n": number})) == "NOT_FOUND"  # as if it did not exist
    assert error_code(gql(mutation, {"n": NO_SUCH_ORDER})) == "NOT_FOUND"
    gql.token = None
    assert error_code(gql(mutation, {"n": number})) == "UNAUTHENTICATED"
    assert _at_the_sandbox(wechatpay_sandbox, order) == before == (("PENDING", None, None, 0, 0), "SUCCESS")


def test_close_by_staff_is_forbidden_and_of_a_paid_order_is_conflict(gql, products, wechatpay_sandbox, staff):
    gql.login("alice")
    number = create(gql, trade_type="NATIVE")["order"]["outTradeNo"]
    order = Order.objects.get(out_trade_no=number)
    buyer_token = gql.token
    gql.token = get_token(staff)  # staff see every order, but only the buyer closes one
    assert error_code(gql(CLOSE, {"n": number})) == "FORBIDDEN"
    assert _at_the_sandbox(wechatpay_sandbox, order) == (("PENDING", None, None, 0, 0), "NOTPAY")
    wechatpay_sandbox.pay(number)
    assert wechatpay_sandbox.send_pay_notify(number)[0] == 204
    gql.token = buyer_token
    assert error_code(gql(CLOSE, {"n": number})) == "CONFLICT"
    assert Order.objects.get(pk=order.pk).status == "PAID"
    assert wechatpay_sandbox.order(number)["state"] == "SUCCESS"


# --- refundOrder: staff only, within what is refundable --------------------------------------------


@pytest.fixture
def paid_order(gql, products, wechatpay_sandbox) -> Order:
    gql.login("alice")
    created = create(gql)["order"]
    wechatpay_sandbox.pay(created["outTradeNo"])
    assert wechatpay_sandbox.send_pay_notify(created["outTradeNo"])[0] == 204
    order = Order.objects.get(out_trade_no=created["outTradeNo"])
    assert order.status == "PAID"
    return order


def _refund_state(sandbox: Any, order: Order) -> tuple[Any, ...]:
    sandbox_order = sandbox.order(order.out_trade_no)
    return state(order), Refund.objects.count(), sandbox_order["refunded"], sandbox_order["state"]


def test_refund_by_a_non_staff_user_is_forbidden(gql, paid_order, wechatpay_sandbox):
    before = _refund_state(wechatpay_sandbox, paid_order)
    assert error_code(gql(REFUND, {"n": paid_order.out_trade_no, "a": 100})) == "FORBIDDEN"  # the buyer
    gql.token = None
    assert error_code(gql(REFUND, {"n": paid_order.out_trade_no, "a": 100})) == "UNAUTHENTICATED"
    assert _refund_state(wechatpay_sandbox, paid_order) == before
    assert before[1] == 0


@pytest.mark.parametrize("amount", [0, -100, 1801])
def test_refund_amount_outside_what_is_refundable_is_bad_user_input(gql, paid_order, staff, wechatpay_sandbox, amount):
    gql.token = get_token(staff)
    before = _refund_state(wechatpay_sandbox, paid_order)
    assert error_code(gql(REFUND, {"n": paid_order.out_trade_no, "a": amount})) == "BAD_USER_INPUT"
    assert _refund_state(wechatpay_sandbox, paid_order) == before


def test_refund_counts_refunds_in_flight(gql, paid_order, staff, wechatpay_sandbox):
    gql.token = get_token(staff)
    first = gql(REFUND, {"n": paid_order.out_trade_no, "a": 1000})["data"]["refundOrder"]
    assert first["status"] == "PROCESSING"
    before = _refund_state(wechatpay_sandbox, paid_order)
    # 1000 is in flight: only 800 is left, even before the first refund completes.
    assert error_code(gql(REFUND, {"n": paid_order.out_trade_no, "a": 801})) == "BAD_USER_INPUT"
    assert _refund_state(wechatpay_sandbox, paid_order) == before


def test_refund_of_a_pending_order_is_conflict(gql, products, wechatpay_sandbox, staff):
    gql.login("alice")
    created = create(gql)["order"]
    gql.token = get_token(staff)
    before = _refund_state(wechatpay_sandbox, Order.objects.get(out_trade_no=created["outTradeNo"]))
    assert error_code(gql(REFUND, {"n": created["outTradeNo"], "a": 100})) == "CONFLICT"
    assert _refund_state(wechatpay_sandbox, Order.objects.get(out_trade_no=created["outTradeNo"])) == before
    assert before[1] == 0 and before[0][0] == "PENDING"


def test_refund_of_an_unknown_order_is_not_found(gql, db, staff):
    gql.token = get_token(staff)
    assert error_code(gql(REFUND, {"n": NO_SUCH_ORDER, "a": 100})) == "NOT_FOUND"
    assert Refund.objects.count() == 0
