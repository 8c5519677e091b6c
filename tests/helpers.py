"""What many test modules share that is not a fixture: the GraphQL client, its documents, error codes,
threads released at once."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from django.db import connection
from django.test import Client

LOGIN = """
mutation Login($code: String!) {
  wechatLogin(code: $code) { token refreshToken created user { id openid unionid nickname } }
}
"""
REFRESH = "mutation R($t: String!) { refreshToken(refreshToken: $t) { token refreshToken } }"
ORDER_FIELDS = "outTradeNo status amount provider apiVersion tradeType transactionId paidAt refundedAmount"
CREATE_ORDER = (
    "mutation C($input: CreateWechatPayOrderInput!) { createWechatPayOrder(input: $input) {"
    f" order {{ {ORDER_FIELDS} }}"
    " payParams { appId timeStamp nonceStr package signType paySign }"
    " appParams { appid partnerid prepayid package noncestr timestamp sign } codeUrl h5Url } }"
)


class GraphQLClient:
    """POSTs GraphQL documents through Django's test client, with the JWT of the last login."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.token: str | None = None

    def raw(self, query: str, variables: dict[str, Any] | None = None, **extra: Any) -> Any:
        headers = {}
        if self.token:
            headers["HTTP_AUTHORIZATION"] = f"JWT {self.token}"
        headers.update(extra)
        body = json.dumps({"query": query, "variables": variables or {}})
        return self.client.post("/graphql/", body, content_type="application/json", **headers)

    def __call__(self, query: str, variables: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        response = self.raw(query, variables, **extra)
        return response.json()  # type: ignore[no-any-return]

    def login(self, code: str) -> dict[str, Any]:
        result = self(LOGIN, {"code": code})
        assert "errors" not in result, result
        self.token = result["data"]["wechatLogin"]["token"]
        return result["data"]["wechatLogin"]  # type: ignore[no-any-return]


def graphql_over_http(
    url: str,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str = "",
    headers: dict[str, str] | None = None,
) -> Any:
    """POSTs to a running server's /graphql/ (with `token` as the JWT); the answer's data, which must
    come without errors."""
    sent = {**(headers or {}), **({"Authorization": f"JWT {token}"} if token else {})}
    answer = requests.post(
        f"{url}/graphql/", json={"query": query, "variables": variables or {}}, headers=sent, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert "errors" not in answer.json(), answer.json()
    return answer.json()["data"]


def error_code(result: dict[str, Any]) -> str:
    assert result.get("errors"), result
    return result["errors"][0]["extensions"]["code"]  # type: ignore[no-any-return]


def create_order_input(sku: str = "coffee", quantity: int = 1, version: str = "V3", **extra: Any) -> dict[str, Any]:
    return {"input": {"sku": sku, "quantity": quantity, "tradeType": "JSAPI", "apiVersion": version, **extra}}


def sandbox_notifies(base_url: str, out_trade_no: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The sandbox's pay notifies of an order and our server's answers, once `count` have been sent
    (the cashier sends them from a thread of its own, after answering the Pay press)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = requests.get(f"{base_url}/sandbox/pay/{out_trade_no}/notifies", timeout=10).json()
        if len(seen["deliveries"]) >= count:
            return seen["deliveries"]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{len(seen['deliveries'])} of {count} notifies sent: {seen}"
        time.sleep(0.1)


def fuzz_settings(default_examples: int) -> Any:
    """The fuzz suite's Hypothesis settings: bounded and the same examples every run (CI), unless
    FUZZ_EXAMPLES (examples per test) and FUZZ_RANDOM=1 (new ones each run) say otherwise."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", default_examples)),
        deadline=None,
        database=None,
        derandomize=not os.environ.get("FUZZ_RANDOM"),
        suppress_health_check=list(HealthCheck),
    )


def run_together(target: Callable[[], Any], n: int, timeout: float = 60) -> list[Any]:
    """Runs `target` in n threads released at once; the results (or the exceptions) in thread order. Each
    thread closes its own database connection, so a test sees n real connections race."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[i] = target()
        except Exception as exc:  # noqa: BLE001 (returned for the test to assert on)
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results
