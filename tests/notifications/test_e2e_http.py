"""Pushes over real HTTP against a running server in sandbox mode: staff send a template push to three
followers bound through the bind QR code (one refuses), and a mini-program user who accepted a subscription
gets the paid-order subscribe message once, however often WeChat Pay notifies."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from graphql_jwt.shortcuts import get_token

from config import providers
from tests.factories import ProductFactory, StaffFactory
from tests.helpers import CREATE_ORDER, LOGIN, create_order_input, graphql_over_http, sandbox_notifies

BIND_QR = "mutation { officialAccountBindQrCode { imageUrl } }"
SEND = "mutation S($input: SendPushInput!) { sendPush(input: $input) { id status total } }"
BATCH = (
    "query B($id: ID!) { pushBatch(id: $id) { status total sent skipped failed pending"
    " outcomes { status errcode errmsg count } } }"
)
RECORD = "mutation R($r: String!) { recordSubscription(results: $r) { templateId remaining status } }"
ORDER = "query($n: String!) { order(outTradeNo: $n) { status } }"
NEWS = {"thing1": "New arrivals", "time2": "2026-11-30 12:00"}


@pytest.fixture
def server(live_server: Any, settings: Any) -> str:
    settings.PUBLIC_BASE_URL = live_server.url  # the sandbox posts notifies and phone messages here
    providers.reset()
    return str(live_server.url)


def inbox(url: str, **params: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{url}/sandbox/inbox.json", params=params, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def bound_follower(url: str, name: str) -> str:
    """A mini-program user (logged in as the sandbox user `name`) who scans their bind QR code and follows
    the official account; their user id."""
    login = graphql_over_http(url, LOGIN, {"code": name})["wechatLogin"]
    qr = graphql_over_http(url, BIND_QR, token=login["token"])["officialAccountBindQrCode"]
    scanned = requests.post(qr["imageUrl"], json={"user": name}, headers={"Accept": "application/json"}, timeout=30)
    assert scanned.status_code == 200 and scanned.json()["status"] == 200, scanned.text
    return str(login["user"]["id"])


def settled(url: str, batch_id: str, token: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        batch: dict[str, Any] = graphql_over_http(url, BATCH, {"id": batch_id}, token)["pushBatch"]
        if batch["pending"] == 0 and batch["status"] != "RUNNING":
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_a_template_push_to_three_followers_one_refuses(server):
    names = ["ann", "refuse-bo", "cat"]
    user_ids = [bound_follower(server, name) for name in names]
    token = get_token(StaffFactory(username="editor"))
    fields = [{"key": key, "value": value} for key, value in NEWS.items()]
    variables = {"input": {"channel": "TEMPLATE", "userIds": user_ids, "templateId": "tpl-news", "data": fields}}
    sent = graphql_over_http(server, SEND, variables, token)["sendPush"]
    assert sent["total"] == 3

    batch = settled(server, sent["id"], token)
    assert (batch["status"], batch["total"], batch["sent"], batch["skipped"], batch["failed"]) == ("DONE", 3, 2, 1, 0)
    (refused,) = [row for row in batch["outcomes"] if row["status"] == "SKIPPED"]
    assert (refused["errcode"], refused["count"]) == (43101, 1) and "refuse" in refused["errmsg"]

    cards = inbox(server)
    assert sorted(card["user"] for card in cards) == ["ann", "cat"]
    for card in cards:
        assert (card["kind"], card["template_id"], card["data"]) == ("template", "tpl-news", NEWS)
    assert inbox(server, user="refuse-bo") == []


@pytest.mark.django_db(transaction=True)
def test_the_paid_order_subscribe_message_arrives_once(server, settings):
    settings.PUSH_ON_PAID_CHANNEL, settings.PUSH_ON_PAID_TEMPLATE = "SUBSCRIBE", "tpl-paid"
    ProductFactory(sku="coffee", price=1800)
    token = graphql_over_http(server, LOGIN, {"code": "mia"})["wechatLogin"]["token"]
    # Mia taps Allow in wx.requestSubscribeMessage: WeChat keeps the one-time subscription, the app reports it.
    granted = requests.post(
        f"{server}/sandbox/inbox/subscriptions", json={"user": "mia", "template_id": "tpl-paid"}, timeout=10
    )
    assert granted.status_code == 200 and granted.json()["remaining"] == 1, granted.text
    results = json.dumps({"tpl-paid": "accept", "errMsg": "requestSubscribeMessage:ok"})
    recorded = graphql_over_http(server, RECORD, {"r": results}, token)["recordSubscription"]
    assert recorded == [{"templateId": "tpl-paid", "remaining": 1, "status": "accept"}]

    created = graphql_over_http(server, CREATE_ORDER, create_order_input(tradeType="NATIVE"), token)
    number = created["createWechatPayOrder"]["order"]["outTradeNo"]
    paid = requests.post(f"{server}/sandbox/pay/{number}", timeout=30)
    assert paid.status_code == 202 and paid.json()["paid"] is True
    (delivery,) = sandbox_notifies(server, number)
    assert delivery["status"] == 204
    assert graphql_over_http(server, ORDER, {"n": number}, token)["order"]["status"] == "PAID"

    (card,) = inbox(server, user="mia")
    assert (card["kind"], card["template_id"]) == ("subscribe", "tpl-paid")
    assert card["data"]["amount1"] == "18.00元" and card["data"]["character_string3"] == number

    # Paid again at the cashier: WeChat Pay sends the same notify once more, which changes nothing.
    again = requests.post(f"{server}/sandbox/pay/{number}", timeout=30)
    assert again.status_code == 202 and again.json()["paid"] is True
    _, second = sandbox_notifies(server, number, count=2)
    assert second["status"] == 204
    assert inbox(server, user="mia") == [card]
    assert inbox(server) == [card]
