"""core.middleware: a request id on every request and response, and on every log line written while it runs."""

from __future__ import annotations

import logging
import re

import pytest
from django.http import HttpResponse

from core.middleware import RequestIdMiddleware, current_request_id

GENERATED = re.compile(r"^[0-9a-f]{32}$")  # uuid4().hex
logger = logging.getLogger("tests.core.request")


def test_healthz_carries_a_request_id(client, db):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="probe-12345678")
    assert response["X-Request-ID"] == "probe-12345678"


@pytest.mark.parametrize(
    "incoming",
    ["short", "x" * 65, "has space-1234", "line\nbreak-1234", "<script>alert(1)</script>"],
    ids=["too-short", "too-long", "space", "newline", "markup"],
)
def test_an_unsafe_incoming_request_id_is_replaced(client, db, incoming):
    # It is echoed in a header and written to every log line: only a plain token may pass through.
    response = client.get("/healthz", HTTP_X_REQUEST_ID=incoming)
    assert GENERATED.match(response["X-Request-ID"]), response["X-Request-ID"]


def test_each_request_without_one_gets_an_id_of_its_own(client, db):
    ids = {client.get("/healthz")["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert all(GENERATED.match(request_id) for request_id in ids)


def test_log_lines_carry_the_request_id_while_it_runs_and_a_dash_outside(rf, console_log):
    _handler, stream = console_log
    seen: list[str] = []

    def view(request):
        seen.append(current_request_id())
        logger.warning("inside the request")
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(rf.get("/", HTTP_X_REQUEST_ID="req-line-0123456789"))
    logger.warning("after the request")

    assert response["X-Request-ID"] == "req-line-0123456789"
    assert seen == ["req-line-0123456789"]
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(" WARNING tests.core.request [req-line-0123456789] inside the request"), lines
    assert lines[1].endswith(" WARNING tests.core.request [-] after the request"), lines


def test_the_request_id_is_dropped_when_the_view_raises(rf):
    def view(request):
        raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError, match="the view failed"):
        RequestIdMiddleware(view)(rf.get("/", HTTP_X_REQUEST_ID="req-raise-0123456789"))
    # The next thing this thread logs belongs to no request.
    assert current_request_id() == "-"
