"""The WeChat sandbox through our real WechatClient: in-process and over real HTTP."""

from __future__ import annotations

import time

import pytest
import requests
from django.conf import settings as django_settings

from config import providers
from providers.http import HttpConfig, ProviderError, ProviderUnavailable, make_session
from providers.sandbox.transport import SandboxTransport
from providers.sandbox.wechat import openid_for, unionid_for
from providers.wechat.api import DEFAULT_BASE_URL, WechatAppConfig, WechatClient
from providers.wechat.crypto import decrypt_user_data, user_data_signature
from providers.wechat.token import MemoryTokenStore


def _client_with(http: HttpConfig, *, secret: str | None = None) -> WechatClient:
    """A client built from the classes directly, answered in-process by the shared sandbox."""
    transport = SandboxTransport(providers.sandbox, {DEFAULT_BASE_URL: "wechat"})
    session = make_session(http, {DEFAULT_BASE_URL: transport})
    config = WechatAppConfig(
        appid=django_settings.WECHAT_MINIPROGRAM_APPID,
        secret=django_settings.WECHAT_MINIPROGRAM_SECRET if secret is None else secret,
    )
    return WechatClient(config, session, http, MemoryTokenStore())


def _errcode(call, *args):
    with pytest.raises(ProviderError) as info:
        call(*args)
    return info.value.errcode


# --- login codes -------------------------------------------------------------------------


def test_codes_of_one_user_share_ids_and_rotate_session_key(wechat_sandbox):
    client = providers.wechat_miniprogram()
    appid = client.config.appid
    sessions = [client.code2session(code) for code in ("alice", "alice:2", "alice:3")]
    assert {s.openid for s in sessions} == {openid_for(appid, "alice")}
    assert {s.unionid for s in sessions} == {unionid_for("alice")}
    assert len({s.session_key for s in sessions}) == 3
    # the sandbox keeps only the latest session_key
    assert wechat_sandbox.session_key(appid, sessions[0].openid) == sessions[-1].session_key
    # another user is another openid and unionid
    bob = client.code2session("bob")
    assert bob.openid != sessions[0].openid and bob.unionid != sessions[0].unionid


def test_code_is_single_use():
    client = providers.wechat_miniprogram()
    first = client.code2session("carol")
    assert _errcode(client.code2session, "carol") == 40163
    # the failed reuse did not rotate the session_key
    assert providers.sandbox().providers["wechat"].session_key(client.config.appid, first.openid) == first.session_key


@pytest.mark.parametrize(
    ("code", "errcode"),
    [("invalid", 40029), ("invalid-code-1", 40029), ("ratelimit", 45011), ("ratelimit:7", 45011), ("bad code!", 40029)],
)
def test_special_codes(code, errcode):
    client = providers.wechat_miniprogram()
    assert _errcode(client.code2session, code) == errcode


def test_wrong_secret_is_40125():
    client = _client_with(HttpConfig(), secret="wrong-secret")
    assert _errcode(client.code2session, "dave") == 40125
    # the code was not burnt by the refused call
    assert providers.wechat_miniprogram().code2session("dave").openid


# --- phone numbers ----------------------------------------------------------------------


def test_phone_code_returns_the_number():
    client = providers.wechat_miniprogram()
    phone = client.get_phone_number("phone:13800138000")
    assert phone.pure_phone_number == "13800138000"
    assert phone.phone_number == "13800138000"
    assert phone.country_code == "86"


@pytest.mark.parametrize("code", ["alice", "phone:12", "phone:abc", "13800138000"])
def test_other_phone_codes_are_40029(code):
    client = providers.wechat_miniprogram()
    assert _errcode(client.get_phone_number, code) == 40029


def test_phone_code_is_single_use():
    client = providers.wechat_miniprogram()
    assert client.get_phone_number("phone:13800138000").pure_phone_number == "13800138000"
    assert _errcode(client.get_phone_number, "phone:13800138000") == 40163
    # a distinct code for the same number works
    assert client.get_phone_number("phone:13800138000:2").pure_phone_number == "13800138000"


# --- check_session ----------------------------------------------------------------------


def test_check_session_follows_the_latest_login():
    client = providers.wechat_miniprogram()
    first = client.code2session("erin")
    assert client.check_session(first.openid, first.session_key) is True
    second = client.code2session("erin:2")
    assert client.check_session(first.openid, first.session_key) is False
    assert client.check_session(second.openid, second.session_key) is True
    # an openid the sandbox never saw
    assert client.check_session("o-nobody", second.session_key) is False


# --- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["http_500", "malformed"])
def test_fault_is_consumed_exactly_count_times(fault):
    client = providers.wechat_miniprogram()
    sandbox = providers.sandbox()
    sandbox.set_fault("wechat", fault, 2)
    assert sandbox.faults() == {"wechat": {"fault": fault, "count": 2}}
    for i in range(2):
        with pytest.raises(ProviderUnavailable):
            client.code2session(f"frank:{i + 1}")
    assert sandbox.faults() == {}
    assert client.code2session("frank:9").openid
    assert client.code2session("frank:10").openid


def test_set_fault_rejects_bad_arguments():
    sandbox = providers.sandbox()
    for args in (("paypal", "http_500", 1), ("wechat", "explode", 1), ("wechat", "http_500", -1)):
        with pytest.raises(ValueError):
            sandbox.set_fault(*args)
    assert sandbox.faults() == {}


def test_timeout_fault_within_read_timeout():
    read_timeout = 0.3
    client = _client_with(HttpConfig(connect_timeout=1.0, read_timeout=read_timeout))
    providers.sandbox().set_fault("wechat", "timeout", 1)
    start = time.monotonic()
    with pytest.raises(ProviderUnavailable, match=r"api\.weixin\.qq\.com did not answer within 0\.3 s"):
        client.code2session("grace")
    assert time.monotonic() - start < read_timeout + 1.0
    # consumed: the next call is answered normally
    assert client.code2session("grace:2").openid


# --- over real HTTP ---------------------------------------------------------------------


@pytest.fixture
def http_client(live_server, transactional_db) -> WechatClient:
    config = WechatAppConfig(
        appid=django_settings.WECHAT_MINIPROGRAM_APPID,
        secret=django_settings.WECHAT_MINIPROGRAM_SECRET,
        base_url=live_server.url + "/sandbox/wechat",
    )
    http = HttpConfig()
    return WechatClient(config, make_session(http), http, MemoryTokenStore())


def test_http_code2session_and_single_use(http_client):
    login = http_client.code2session("heidi")
    assert login.openid == openid_for(http_client.config.appid, "heidi")
    assert login.unionid == unionid_for("heidi")
    assert _errcode(http_client.code2session, "heidi") == 40163
    assert _errcode(http_client.code2session, "invalid") == 40029


def test_http_token_phone_and_check_session(http_client):
    login = http_client.code2session("ivan")
    assert http_client.get_phone_number("phone:13900139000").pure_phone_number == "13900139000"
    assert http_client.check_session(login.openid, login.session_key) is True


def test_http_fault_endpoint(http_client, live_server):
    url = live_server.url + "/sandbox/faults"
    answer = requests.post(url, json={"provider": "wechat", "fault": "http_500", "count": 1}, timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"pending": {"wechat": {"fault": "http_500", "count": 1}}}
    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        http_client.code2session("judy")
    assert http_client.code2session("judy:2").openid
    assert requests.get(url, timeout=10).json() == {"pending": {}}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"provider": "wechat", "fault": "explode", "count": 1}',
        b'{"provider": "nobody", "fault": "http_500", "count": 1}',
        b'{"provider": "wechat", "fault": "http_500", "count": "1"}',
        b'{"provider": "wechat", "fault": "http_500", "count": true}',
        b'{"provider": "wechat", "fault": "http_500", "count": 5000}',
    ],
)
def test_http_bad_fault_is_400(live_server, transactional_db, body):
    answer = requests.post(
        live_server.url + "/sandbox/faults", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert answer.status_code == 400
    assert "error" in answer.json()
    assert providers.sandbox().faults() == {}


def test_http_user_data_opens_with_the_session_key(http_client, live_server, wechat_sandbox):
    appid = http_client.config.appid
    login = http_client.code2session("kate")
    session_key = wechat_sandbox.session_key(appid, login.openid)
    assert session_key == login.session_key
    answer = requests.post(
        live_server.url + "/sandbox/wechat/user-data",
        json={"openid": login.openid, "data": {"nickName": "A"}},
        timeout=10,
    )
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"encryptedData", "iv", "rawData", "signature"}
    assert body["rawData"] == '{"nickName":"A"}'
    assert body["signature"] == user_data_signature(body["rawData"], session_key)
    data = decrypt_user_data(session_key, body["encryptedData"], body["iv"], appid=appid)
    assert data["nickName"] == "A"
    assert data["watermark"]["appid"] == appid
    assert isinstance(data["watermark"]["timestamp"], int)


def test_http_user_data_unknown_openid_is_404(live_server, transactional_db):
    answer = requests.post(
        live_server.url + "/sandbox/wechat/user-data",
        json={"openid": "o-never-logged-in", "data": {"nickName": "A"}},
        timeout=10,
    )
    assert answer.status_code == 404
    assert "error" in answer.json()


@pytest.mark.parametrize("body", [{"openid": 1, "data": {}}, {"openid": "x"}, {"openid": "x", "data": "y"}])
def test_http_user_data_bad_body_is_400(live_server, transactional_db, body):
    answer = requests.post(live_server.url + "/sandbox/wechat/user-data", json=body, timeout=10)
    assert answer.status_code == 400


# --- the sandbox's own bookkeeping -------------------------------------------------------


class _RacingStore:
    """Wraps the cache; right after this process's first operation on the fetch counter,
    another process's whole token fetch runs (the worst interleaving of two first fetches)."""

    def __init__(self, inner, counter_key: str, other_fetch) -> None:
        self._inner = inner
        self._counter_key = counter_key
        self._other_fetch = other_fetch
        self.fired = False

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name not in ("incr", "add", "set", "decr") or not callable(attr):
            return attr

        def wrapped(key, *args, **kwargs):
            if key != self._counter_key or self.fired:
                return attr(key, *args, **kwargs)
            self.fired = True
            try:
                return attr(key, *args, **kwargs)
            finally:
                self._other_fetch()

        return wrapped


def test_token_fetches_counts_two_concurrent_first_fetches(wechat_sandbox):
    """Two processes issuing the very first token at once must both be counted.

    _issue_token does `incr` and, on ValueError (no counter yet), `add(key, 1)`: if the
    other process's add lands in between, this add fails and the fetch is lost.
    `add(key, 0)` followed by `incr(key)` counts both.
    """
    from django.core.cache import cache

    from providers.sandbox.core import SandboxRequest
    from providers.sandbox.wechat import WechatSimulator

    appid = django_settings.WECHAT_MINIPROGRAM_APPID
    query = {"grant_type": "client_credential", "appid": appid, "secret": django_settings.WECHAT_MINIPROGRAM_SECRET}
    request = SandboxRequest("GET", "/cgi-bin/token", query=query)
    other_process = WechatSimulator(cache, list(wechat_sandbox.apps.values()))
    racing = _RacingStore(cache, f"sbx:wx:fetches:{appid}", lambda: other_process.handle(request))
    this_process = WechatSimulator(racing, list(wechat_sandbox.apps.values()))

    assert wechat_sandbox.token_fetches(appid) == 0
    answer = this_process.handle(request)
    assert answer.status == 200
    assert racing.fired
    assert wechat_sandbox.token_fetches(appid) == 2


@pytest.mark.parametrize("appid", [["wx1"], {"a": 1}])
def test_http_user_data_non_string_appid_is_400(live_server, transactional_db, appid):
    answer = requests.post(
        live_server.url + "/sandbox/wechat/user-data",
        json={"openid": "o-x", "data": {"nickName": "A"}, "appid": appid},
        timeout=10,
    )
    assert answer.status_code == 400
