"""The pushes' GraphQL: sendPush, pushBatch(es), cancelPush (staff) and recordSubscription."""

from __future__ import annotations

import json
from typing import Any

import pytest
from graphql_jwt.shortcuts import get_token

from notifications.models import PushBatch, PushDelivery, Subscription
from tests.factories import StaffFactory
from tests.notifications.conftest import mp_user, oa_user

SEND = """
mutation($input: SendPushInput!) {
  sendPush(input: $input) { id status total sent skipped failed pending channel templateId data { key value }
    outcomes { status errcode errmsg count } }
}"""
BATCH = "query($id: ID!) { pushBatch(id: $id) { id status total sent skipped pending stopReason } }"
BATCHES = """
query($first: Int, $after: String) {
  pushBatches(first: $first, after: $after) {
    edges { cursor node { id status total sent skipped failed unknown pending createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""
CANCEL = "mutation($id: ID!) { cancelPush(id: $id) { id status skipped pending } }"
RECORD = "mutation($results: String!) { recordSubscription(results: $results) { templateId status remaining } }"


@pytest.fixture
def staff_gql(gql: Any) -> Any:
    gql.token = get_token(StaffFactory())
    return gql


def send_input(users: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "channel": "TEMPLATE",
        "userIds": [str(user.pk) for user in users],
        "templateId": "tpl-news",
        "data": [{"key": "thing1", "value": "New arrivals"}],
        **extra,
    }


def test_staff_send_a_push_and_read_its_counts(staff_gql, wechat, django_capture_on_commit_callbacks):
    users = [oa_user("ann"), oa_user("bob"), mp_user("mia")]
    with django_capture_on_commit_callbacks(execute=True):
        result = staff_gql(SEND, {"input": send_input(users)})
    assert "errors" not in result, result
    created = result["data"]["sendPush"]
    assert (created["status"], created["total"], created["skipped"], created["pending"]) == ("RUNNING", 3, 1, 2)
    assert created["data"] == [{"key": "thing1", "value": "New arrivals"}]
    batch = staff_gql(BATCH, {"id": created["id"]})["data"]["pushBatch"]
    assert (batch["status"], batch["sent"], batch["skipped"], batch["pending"]) == ("DONE", 2, 1, 0)
    assert sorted(wechat.openids()) == ["ann-oa", "bob-oa"]


def test_send_push_to_all_bound_users(staff_gql, wechat, django_capture_on_commit_callbacks):
    oa_user("ann"), oa_user("bob"), mp_user("mia")
    with django_capture_on_commit_callbacks(execute=True):
        result = staff_gql(SEND, {"input": {**send_input([]), "userIds": None, "all": True}})
    assert result["data"]["sendPush"]["total"] == 2


def test_a_custom_text_goes_as_a_text_message(staff_gql, wechat, django_capture_on_commit_callbacks):
    ann = oa_user("ann")
    with django_capture_on_commit_callbacks(execute=True):
        result = staff_gql(SEND, {"input": {"channel": "CUSTOM", "userIds": [str(ann.pk)], "text": "Hello"}})
    assert "errors" not in result, result
    assert wechat.calls == [("custom", "ann-oa", {"message": {"msgtype": "text", "text": {"content": "Hello"}}})]


@pytest.mark.parametrize("who", ["anonymous", "user"])
def test_send_push_by_a_non_staff_user_is_refused_and_creates_nothing(gql, wechat, who):
    ann = oa_user("ann")
    if who == "user":
        gql.token = get_token(ann)
    result = gql(SEND, {"input": send_input([ann])})
    assert result["errors"][0]["extensions"]["code"] == ("FORBIDDEN" if who == "user" else "UNAUTHENTICATED")
    assert result["data"]["sendPush"] is None
    assert PushBatch.objects.count() == PushDelivery.objects.count() == 0
    assert wechat.calls == []
    for query, variables in ((BATCHES, {}), (BATCH, {"id": "UHVzaEJhdGNoOjE="}), (CANCEL, {"id": "UHVzaEJhdGNoOjE="})):
        assert gql(query, variables)["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "UNAUTHENTICATED")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"templateId": ""}, "BAD_USER_INPUT"),
        ({"data": []}, "BAD_USER_INPUT"),
        ({"data": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]}, "BAD_USER_INPUT"),
        ({"userIds": ["x"]}, "BAD_USER_INPUT"),
        ({"userIds": ["999999"]}, "NOT_FOUND"),
        ({"all": True}, "BAD_USER_INPUT"),  # and userIds
        ({"url": "javascript:alert(1)"}, "BAD_USER_INPUT"),
    ],
)
def test_bad_send_push_input_is_refused_and_creates_nothing(staff_gql, wechat, change, code):
    result = staff_gql(SEND, {"input": {**send_input([oa_user("ann")]), **change}})
    assert result["errors"][0]["extensions"]["code"] == code, result
    assert PushBatch.objects.count() == 0


def test_push_batches_pages_newest_first_in_pinned_queries(staff_gql, django_assert_num_queries):
    ann = oa_user("ann")
    for _ in range(3):
        PushBatch.objects.create(channel="TEMPLATE", template_id="t", created_by=ann, total=1, pending=1)
    # the JWT's user, then one page of first + 1 rows
    with django_assert_num_queries(2):
        page = staff_gql(BATCHES, {"first": 2})["data"]["pushBatches"]
    assert len(page["edges"]) == 2 and page["pageInfo"]["hasNextPage"]
    ids = [edge["node"]["id"] for edge in page["edges"]]
    rest = staff_gql(BATCHES, {"first": 2, "after": page["pageInfo"]["endCursor"]})["data"]["pushBatches"]
    assert len(rest["edges"]) == 1 and rest["edges"][0]["node"]["id"] not in ids


def test_cancel_push_skips_what_is_not_sent(staff_gql, wechat):
    result = staff_gql(SEND, {"input": send_input([oa_user("ann"), oa_user("bob")])})  # no commit: not sent
    cancelled = staff_gql(CANCEL, {"id": result["data"]["sendPush"]["id"]})["data"]["cancelPush"]
    assert (cancelled["status"], cancelled["skipped"], cancelled["pending"]) == ("CANCELLED", 2, 0)
    again = staff_gql(CANCEL, {"id": result["data"]["sendPush"]["id"]})
    assert again["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert staff_gql(CANCEL, {"id": "nonsense"})["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert staff_gql(BATCH, {"id": "UHVzaEJhdGNoOjk5OTk="})["data"]["pushBatch"] is None


def test_record_subscription_takes_what_wx_request_subscribe_message_returns(gql):
    mia = mp_user("mia")
    gql.token = get_token(mia)
    answer = {"tpl-ship": "accept", "tpl-news": "reject", "errMsg": "requestSubscribeMessage:ok"}
    gql(RECORD, {"results": json.dumps(answer)})
    result = gql(RECORD, {"results": json.dumps(answer)})
    assert result["data"]["recordSubscription"] == [
        {"templateId": "tpl-news", "status": "reject", "remaining": 0},
        {"templateId": "tpl-ship", "status": "accept", "remaining": 2},
    ]
    refused = gql(RECORD, {"results": '{"tpl-ship": "yes"}'})
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert Subscription.objects.get(template_id="tpl-ship").remaining == 2


def test_record_subscription_needs_a_login(gql):
    result = gql(RECORD, {"results": '{"t": "accept"}'})
    assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert Subscription.objects.count() == 0
