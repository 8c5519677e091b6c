"""The one place that turns settings into provider clients (providers/ never reads settings)."""

from __future__ import annotations

import functools

from django.conf import settings
from django.core.cache import cache

from providers.http import HttpConfig, make_session
from providers.sandbox.core import Sandbox
from providers.sandbox.transport import SandboxTransport
from providers.sandbox.wechat import SandboxApp, WechatSimulator
from providers.wechat.api import DEFAULT_BASE_URL, WechatAppConfig, WechatClient
from providers.wechat.token import MemoryTokenStore, RedisTokenStore, TokenStore


def http_config() -> HttpConfig:
    return HttpConfig(connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT, read_timeout=settings.PROVIDER_READ_TIMEOUT)


@functools.cache
def sandbox() -> Sandbox:
    """The simulators, sharing state through the default cache (Redis across processes)."""
    box = Sandbox(cache, timeout_delay=min(settings.PROVIDER_READ_TIMEOUT + 1.0, 30.0))
    box.register(
        WechatSimulator(cache, [SandboxApp(settings.WECHAT_MINIPROGRAM_APPID, settings.WECHAT_MINIPROGRAM_SECRET)])
    )
    return box


@functools.cache
def token_store() -> TokenStore:
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        return RedisTokenStore(get_redis_connection("default"), prefix=f"{settings.CACHE_KEY_PREFIX}:wxtoken:")
    return MemoryTokenStore()


def _sandbox_mounts(hosts: dict[str, str]) -> dict[str, SandboxTransport]:
    if not settings.SANDBOX:
        return {}
    transport = SandboxTransport(sandbox, hosts)
    return {host: transport for host in hosts}


@functools.cache
def wechat_miniprogram() -> WechatClient:
    config = WechatAppConfig(
        appid=settings.WECHAT_MINIPROGRAM_APPID,
        secret=settings.WECHAT_MINIPROGRAM_SECRET,
        base_url=settings.WECHAT_API_BASE_URL,
        use_stable_token=settings.WECHAT_USE_STABLE_TOKEN,
    )
    http = http_config()
    # In sandbox mode the real host is answered in-process; any other base URL
    # (e.g. this server's own /sandbox/wechat) goes over real HTTP.
    session = make_session(http, _sandbox_mounts({DEFAULT_BASE_URL: "wechat"}))
    return WechatClient(config, session, http, token_store())


def reset() -> None:
    """Forget built clients (tests that change settings call this)."""
    for built in (sandbox, token_store, wechat_miniprogram):
        built.cache_clear()
