"""providers.http: the provider session over real HTTP (no cookies, no redirects) and `send`'s errors."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3
from requests.adapters import BaseAdapter

from providers.http import HttpConfig, ProviderUnavailable, json_body, make_session, send


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, dict(self.headers), body))
        if self.path.startswith("/cookie"):
            self.send_response(200)
            self.send_header("Set-Cookie", "sid=abc; Path=/")
            payload = b'{"ok": true}'
        elif self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/echo")
            payload = b""
        elif self.path.startswith("/slow"):
            time.sleep(1.0)
            self.send_response(200)
            payload = b"{}"
        else:
            self.send_response(200)
            payload = b'{"errcode": 0}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # /slow answers after its client timed out and hung up: the broken pipe is expected, not news.
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[Any]]]:
    _Handler.seen = []
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_make_session_is_a_plain_requests_session_that_ignores_the_environment(server, monkeypatch):
    url, seen = server
    # A proxy from the environment would swallow the call (nothing listens on port 9): it is not read.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):  # nothing exempts our server from that proxy
        monkeypatch.delenv(name, raising=False)
    session = make_session(HttpConfig())
    assert type(session) is requests.Session and session.trust_env is False
    send(session, "test", "GET", url + "/echo", HttpConfig())
    assert [path for _, path, _, _ in seen] == ["/echo"]


def test_sends_params_json_and_default_headers(server):
    url, seen = server
    session = make_session(HttpConfig())
    answer = send(session, "test", "POST", url + "/api", HttpConfig(), params={"a": "1 2", "b": "é"}, json={"k": "v"})
    assert json_body(answer, "test") == {"errcode": 0}
    method, path, headers, body = seen[0]
    assert (method, path) == ("POST", "/api?a=1+2&b=%C3%A9")
    assert headers["User-Agent"] == "wxbackend/1.0"
    assert headers["Content-Type"] == "application/json"
    assert body == b'{"k": "v"}'


def test_keeps_no_cookies(server):
    url, seen = server
    session = make_session(HttpConfig())
    send(session, "test", "GET", url + "/cookie", HttpConfig())
    send(session, "test", "GET", url + "/echo", HttpConfig())
    assert "Cookie" not in seen[1][2]
    assert not session.cookies


def test_follows_no_redirect_and_the_answer_is_unusable(server):
    url, seen = server
    session = make_session(HttpConfig())
    answer = send(session, "test", "GET", url + "/redirect", HttpConfig())
    assert answer.status_code == 302
    assert [path for _, path, _, _ in seen] == ["/redirect"]
    with pytest.raises(ProviderUnavailable, match="HTTP 302") as unusable:
        json_body(answer, "test")
    assert unusable.value.maybe_received  # it answered, but not whether it acted


def test_read_timeout_is_provider_unavailable(server):
    url, _ = server
    config = HttpConfig(connect_timeout=1.0, read_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match=r"127\.0\.0\.1:\d+ did not answer within 0\.2 s") as slow:
        send(make_session(config), "test", "GET", url + "/slow", config)
    assert time.monotonic() - started < 0.9
    assert slow.value.maybe_received  # the request went out


def test_connection_refused_is_provider_unavailable_and_says_so():
    with pytest.raises(ProviderUnavailable) as refused:
        send(make_session(HttpConfig()), "test", "GET", "http://127.0.0.1:9/", HttpConfig())
    assert refused.value.message == "connection to 127.0.0.1:9 refused"
    assert not refused.value.maybe_received


def test_a_dns_failure_is_provider_unavailable_and_says_so():
    # .invalid never resolves (RFC 6761), online or not.
    with pytest.raises(ProviderUnavailable) as unresolved:
        send(make_session(HttpConfig()), "test", "GET", "https://api.nowhere.invalid/x", HttpConfig())
    assert unresolved.value.message == "DNS lookup of api.nowhere.invalid failed"
    assert not unresolved.value.maybe_received


def test_a_connect_timeout_says_so(monkeypatch):
    def stalls(*args: Any, **kwargs: Any) -> Any:
        raise requests.ConnectTimeout("connect timed out")

    session = make_session(HttpConfig())
    monkeypatch.setattr(session, "request", stalls)
    with pytest.raises(ProviderUnavailable) as stalled:
        send(session, "test", "GET", "https://api.mch.weixin.qq.com/v3/x", HttpConfig(connect_timeout=3))
    assert stalled.value.message == "no connection to api.mch.weixin.qq.com within 3 s"
    assert not stalled.value.maybe_received


class _Recorder(BaseAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.calls.append({"url": request.url, "headers": dict(request.headers), "request": request, **kwargs})
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        return response

    def close(self) -> None:
        pass


def test_mounted_transport_gets_the_certificate_timeout_and_proxies():
    recorder = _Recorder()
    session = make_session(HttpConfig(proxy="http://proxy.internal:3128"), {"https://api.example.com": recorder})
    send(session, "test", "POST", "https://api.example.com/pay", HttpConfig(), data=b"<xml/>", cert=("c.pem", "k.pem"))
    call = recorder.calls[0]
    assert call["cert"] == ("c.pem", "k.pem")
    assert call["timeout"] == (3.0, 5.0)
    assert call["proxies"] == {"http": "http://proxy.internal:3128", "https": "http://proxy.internal:3128"}
    assert call["verify"] is True
    assert call["stream"] is False
    session.cert = "default.pem"
    send(session, "test", "GET", "https://api.example.com/q", HttpConfig())
    assert recorder.calls[1]["cert"] == "default.pem"


def test_an_https_proxy_in_the_environment_reaches_no_transport(monkeypatch):
    # Provider APIs are HTTPS: HTTPS_PROXY is the variable that would reroute them; only HttpConfig.proxy may.
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    recorder = _Recorder()
    session = make_session(HttpConfig(), {"https://api.example.com": recorder})
    send(session, "test", "GET", "https://api.example.com/q", HttpConfig())
    assert "env-proxy.internal" not in str(recorder.calls[0]["proxies"])


@pytest.mark.parametrize(("status", "maybe_received"), [(500, False), (503, False), (502, True), (504, True)])
def test_a_5xx_is_provider_unavailable_and_a_gateways_may_have_been_received(status, maybe_received):
    """500 and 503: the provider says it failed. 502 and 504: a gateway's, the service behind it may have acted."""

    class Failing(_Recorder):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            response = super().send(request, **kwargs)
            response.status_code = status
            return response

    session = make_session(HttpConfig(), {"https://api.example.com": Failing()})
    with pytest.raises(ProviderUnavailable, match=f"HTTP {status}") as failed:
        send(session, "test", "POST", "https://api.example.com/x", HttpConfig())
    assert failed.value.maybe_received is maybe_received


def test_an_unreachable_network_is_never_sent(monkeypatch):
    """urllib3's NewConnectionError (here "Network is unreachable"): no connection, so nothing was sent."""
    pool = urllib3.HTTPSConnectionPool("api.weixin.qq.com")
    unreachable = urllib3.exceptions.NewConnectionError(pool, "Failed to establish a new connection: [Errno 101]")

    def fails(*args: Any, **kwargs: Any) -> Any:
        raise requests.ConnectionError(urllib3.exceptions.MaxRetryError(pool, "/cgi-bin/x", reason=unreachable))

    session = make_session(HttpConfig())
    monkeypatch.setattr(session, "request", fails)
    with pytest.raises(ProviderUnavailable) as failed:
        send(session, "test", "POST", "https://api.weixin.qq.com/cgi-bin/x", HttpConfig())
    assert not failed.value.maybe_received
