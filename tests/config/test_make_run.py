"""`make run`, as a new user runs it: only this machine can reach it unless HOST says otherwise."""

from __future__ import annotations

import pytest
import requests

from tests.helpers import CREATE_ORDER, LOGIN, create_order_input, graphql_over_http, sandbox_notifies
from tests.processes import make_run


@pytest.mark.parametrize(
    ("args", "address", "warned"),
    [((), "127.0.0.1", False), (("HOST=0.0.0.0",), "0.0.0.0", True)],  # noqa: S104
    ids=["default", "exposed"],
)
def test_make_run_binds_this_machine_unless_told_otherwise(tmp_path, args, address, warned):
    output = make_run(tmp_path, *args)
    assert f"Starting development server at http://{address}:" in output, output
    assert ("WARNING: serving on" in output) is warned, output


def test_make_run_on_another_port_gets_its_notifies(tmp_path):
    # PORT=18300 make run: the sandbox once sent notifies to :8000 (502 "notify not delivered", order PENDING).
    def pay(url: str) -> None:
        token = graphql_over_http(url, LOGIN, {"code": "port"})["wechatLogin"]["token"]
        order = graphql_over_http(url, CREATE_ORDER, create_order_input(sku="coffee", version="V2"), token)[
            "createWechatPayOrder"
        ]
        number = order["order"]["outTradeNo"]
        assert requests.post(f"{url}/sandbox/pay/{number}", timeout=30).status_code == 202
        assert [d["status"] for d in sandbox_notifies(url, number)] == [200]
        status = graphql_over_http(url, "query($n: String!) { order(outTradeNo: $n) { status } }", {"n": number}, token)
        assert status == {"order": {"status": "PAID"}}

    make_run(tmp_path, while_running=pay)
