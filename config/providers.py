"""The one place that turns settings into provider clients (providers/ never reads settings)."""

from __future__ import annotations

import atexit
import functools
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

import requests
from Crypto.PublicKey import RSA
from django.conf import settings
from django.core.cache import cache

from providers.alipay.client import AlipayClient, AlipayConfig
from providers.http import HttpConfig, make_session
from providers.sandbox.alipay import AlipaySimulator, SandboxAlipayApp
from providers.sandbox.core import Sandbox
from providers.sandbox.transport import SandboxTransport
from providers.sandbox.wechat import SandboxApp, WechatSimulator
from providers.sandbox.wechatpay import SandboxMerchant, WechatPaySimulator, merchant_api_certificate
from providers.wechat.api import DEFAULT_BASE_URL, WechatAppConfig, WechatClient
from providers.wechat.messages import MessageCrypto
from providers.wechat.official_account import OfficialAccountClient, OfficialAccountConfig
from providers.wechat.push import PushClient
from providers.wechat.token import MemoryTokenStore, RedisTokenStore, TokenStore
from providers.wechatpay.keys import certificate_serial, pem_text, public_key_pem
from providers.wechatpay.types import BASE_URL as WECHATPAY_BASE_URL
from providers.wechatpay.types import WechatPayConfig
from providers.wechatpay.v2_client import WechatPayV2Client
from providers.wechatpay.v3_client import WechatPayV3Client

logger = logging.getLogger(__name__)


def http_config() -> HttpConfig:
    return HttpConfig(
        connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
        read_timeout=settings.PROVIDER_READ_TIMEOUT,
        proxy=settings.PROVIDER_HTTP_PROXY,
    )


@functools.cache
def sandbox() -> Sandbox:
    """The simulators, sharing state through the default cache (Redis across processes)."""
    box = Sandbox(cache, timeout_delay=min(settings.PROVIDER_READ_TIMEOUT + 1.0, 30.0))
    apps = [SandboxApp(miniprogram_appid(), settings.WECHAT_MINIPROGRAM_SECRET)]
    if official_account_ready():
        apps.append(SandboxApp(settings.WECHAT_OA_APPID, settings.WECHAT_OA_SECRET))
    box.register(WechatSimulator(cache, apps))
    merchant_key, platform_key = _wechatpay_sandbox_keys()
    box.register(
        WechatPaySimulator(
            cache,
            SandboxMerchant(
                appid=settings.WECHATPAY_APPID,
                appids=wechatpay_config().appids,  # the apps bound to the merchant, and only those
                mchid=settings.WECHATPAY_MCH_ID,
                api_key=settings.WECHATPAY_API_KEY,
                api_v3_key=settings.WECHATPAY_API_V3_KEY,
                merchant_public_key=public_key_pem(merchant_key),
                platform_private_key=platform_key,
                platform_key_id=settings.WECHATPAY_PUBLIC_KEY_ID,
            ),
            box,
            deliver_http,
            retry_seconds=settings.SANDBOX_NOTIFY_RETRY_SECONDS,
        )
    )
    app_key, alipay_key = alipay_sandbox_keys()
    alipay_app = alipay_config()  # certificate mode: the SNs Alipay knows the app's certificates by
    box.register(
        AlipaySimulator(
            cache,
            SandboxAlipayApp(
                app_id=settings.ALIPAY_APPID,
                seller_id=settings.ALIPAY_SELLER_ID,
                # Alipay verifies with the key the app uploaded: its certificate's in certificate mode.
                app_public_key=public_key_pem(pem_text(settings.ALIPAY_APP_CERT) or app_key),
                alipay_private_key=alipay_key,
                app_cert_sn=alipay_app.app_cert_sn,
                alipay_root_cert_sn=alipay_app.alipay_root_cert_sn,
                alipay_cert_sn=alipay_app.alipay_cert_sn,
            ),
            box,
            deliver_http,
            pages_url=settings.PUBLIC_BASE_URL + "/sandbox/alipay",
            retry_seconds=settings.SANDBOX_NOTIFY_RETRY_SECONDS,
        )
    )
    return box


def deliver_http(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """How the sandbox sends notifies: a real POST to our notify URL, and to nowhere else."""
    if not url.startswith(settings.PUBLIC_BASE_URL + "/notify/"):
        # notify_url comes from whoever created the sandbox order: never let it aim the server elsewhere.
        raise ValueError(f"the sandbox only notifies {settings.PUBLIC_BASE_URL}/notify/...")
    response = requests.post(url, data=body, headers=headers, timeout=(3, 10))
    return response.status_code, response.text


_KEYS_CACHE_KEY = "sbx:wxp:keys"


@functools.cache
def _generated_keys(name: str = _KEYS_CACHE_KEY) -> tuple[str, str]:
    """A pair of test keys, shared by every process through the cache."""
    shared = cache.get(name)
    if not shared:
        fresh = tuple(RSA.generate(2048).export_key().decode() for _ in range(2))
        cache.add(name, fresh, None)  # the first process to store its pair wins
        shared = cache.get(name) or fresh
    return shared[0], shared[1]


def _wechatpay_sandbox_keys() -> tuple[str, str]:
    """(merchant private key, platform private key) the sandbox works with."""
    merchant = pem_text(settings.WECHATPAY_PRIVATE_KEY)
    platform = pem_text(settings.SANDBOX_WECHATPAY_PLATFORM_PRIVATE_KEY)
    if merchant and platform:
        return merchant, platform
    generated = _generated_keys()
    return merchant or generated[0], platform or generated[1]


@functools.cache
def _sandbox_cert_folder() -> Path:
    """This process's folder (mode 0700) for the certificate files the sandbox issues; gone at exit."""
    folder = Path(tempfile.mkdtemp(prefix="wxb-sandbox-certs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def _sandbox_client_cert_files(merchant_private_key: str, mchid: str) -> tuple[str, str]:
    """(apiclient_cert.pem, apiclient_key.pem) paths: the merchant API certificate the sandbox issues
    for the merchant key, which v2 refunds present as they would to the real /secapi/ host."""
    certificate = merchant_api_certificate(merchant_private_key, mchid)
    digest = hashlib.sha256(certificate.pem.encode()).hexdigest()[:16]
    paths = []
    for name, text in (("apiclient_cert.pem", certificate.pem), ("apiclient_key.pem", merchant_private_key)):
        path = _sandbox_cert_folder() / f"{digest}-{name}"
        # Written whole then renamed: a thread reading it never sees half a file.
        partial = path.with_suffix(f".{threading.get_ident()}")
        partial.write_text(text, encoding="ascii")
        partial.chmod(0o600)
        os.replace(partial, path)
        paths.append(str(path))
    return paths[0], paths[1]


@functools.cache
def wechatpay_config() -> WechatPayConfig:
    private_key = pem_text(settings.WECHATPAY_PRIVATE_KEY)
    platform_keys: dict[str, str] = {}
    if settings.WECHATPAY_PUBLIC_KEY and settings.WECHATPAY_PUBLIC_KEY_ID:
        platform_keys[settings.WECHATPAY_PUBLIC_KEY_ID] = public_key_pem(pem_text(settings.WECHATPAY_PUBLIC_KEY))
    for cert in settings.WECHATPAY_PLATFORM_CERTS:
        pem = pem_text(cert)
        platform_keys[certificate_serial(pem)] = public_key_pem(pem)
    client_cert, client_key = settings.WECHATPAY_CLIENT_CERT, settings.WECHATPAY_CLIENT_KEY
    if settings.SANDBOX:
        merchant, platform = _wechatpay_sandbox_keys()
        private_key = private_key or merchant
        if settings.WECHATPAY_PUBLIC_KEY_ID:
            platform_keys.setdefault(settings.WECHATPAY_PUBLIC_KEY_ID, public_key_pem(platform))
        if not client_cert:
            client_cert, client_key = _sandbox_client_cert_files(private_key, settings.WECHATPAY_MCH_ID)
    # The apps bound to the merchant: the mini-program's and, when it is configured, the official account's.
    appids = [settings.WECHATPAY_APPID, settings.WECHAT_OA_APPID if official_account_ready() else ""]
    return WechatPayConfig(
        appid=settings.WECHATPAY_APPID,
        appids=tuple(dict.fromkeys(appid for appid in appids if appid)),
        mchid=settings.WECHATPAY_MCH_ID,
        api_key=settings.WECHATPAY_API_KEY,
        api_v3_key=settings.WECHATPAY_API_V3_KEY,
        private_key_pem=private_key,
        cert_serial_no=settings.WECHATPAY_CERT_SERIAL_NO,
        platform_keys=platform_keys,
        client_cert=client_cert or None,
        client_key=client_key or None,
        base_url=settings.WECHATPAY_BASE_URL,
    )


@functools.cache
def _wechatpay_session() -> requests.Session:
    return make_session(http_config(), _sandbox_mounts({WECHATPAY_BASE_URL: "wechatpay"}))


def wechatpay(version: str) -> WechatPayV2Client | WechatPayV3Client:
    """The client for API version "V2" or "V3"."""
    if version == "V2":
        return WechatPayV2Client(
            wechatpay_config(), _wechatpay_session(), http_config(), settings.WECHATPAY_V2_SIGN_TYPE
        )
    return WechatPayV3Client(wechatpay_config(), _wechatpay_session(), http_config())


def wechatpay_ready(version: str) -> bool:
    """Whether this API version has the keys it needs (an empty key would make signatures forgeable)."""
    config = wechatpay_config()
    if not config.mchid or not config.appid:
        return False
    if version == "V2":
        return len(config.api_key) == 32
    return len(config.api_v3_key) == 32 and bool(config.private_key_pem) and bool(config.platform_keys)


def wechatpay_refunds_ready(version: str) -> bool:
    """v2 refunds travel with the merchant's client certificate (the sandbox issues one)."""
    if version == "V2" and not settings.SANDBOX:
        return bool(settings.WECHATPAY_CLIENT_CERT and settings.WECHATPAY_CLIENT_KEY)
    return wechatpay_ready(version)


def notify_url(name: str) -> str:
    paths = {
        "wechatpay_v2": "/notify/wechatpay/v2/",
        "wechatpay_v2_refund": "/notify/wechatpay/v2/refund/",
        "wechatpay_v3": "/notify/wechatpay/v3/",
        "alipay": "/notify/alipay/",
    }
    return settings.PUBLIC_BASE_URL + paths[name]


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


def miniprogram_appid() -> str:
    """The mini-program's appid: its openids log users in, and `User.openid` is the one in it."""
    return str(settings.WECHAT_MINIPROGRAM_APPID)


@functools.cache
def wechat_miniprogram() -> WechatClient:
    config = WechatAppConfig(
        appid=miniprogram_appid(),
        secret=settings.WECHAT_MINIPROGRAM_SECRET,
        base_url=settings.WECHAT_API_BASE_URL,
        use_stable_token=settings.WECHAT_USE_STABLE_TOKEN,
    )
    http = http_config()
    # In sandbox mode the real host is answered in-process; any other base URL
    # (e.g. this server's own /sandbox/wechat) goes over real HTTP.
    session = make_session(http, _sandbox_mounts({DEFAULT_BASE_URL: "wechat"}))
    return WechatClient(config, session, http, token_store())


# --- Alipay -------------------------------------------------------------------------------------------


def alipay_sandbox_keys() -> tuple[str, str]:
    """(the app's private key, the key the sandbox signs as Alipay with) in sandbox mode."""
    app = pem_text(settings.ALIPAY_PRIVATE_KEY)
    alipay_key = pem_text(settings.SANDBOX_ALIPAY_PRIVATE_KEY)
    if app and alipay_key:
        return app, alipay_key
    generated = _generated_keys("sbx:alipay:keys")
    return app or generated[0], alipay_key or generated[1]


@functools.cache
def alipay_config() -> AlipayConfig:
    private_key = pem_text(settings.ALIPAY_PRIVATE_KEY)
    public_key = pem_text(settings.ALIPAY_PUBLIC_KEY)
    cert_fields = {}
    if settings.ALIPAY_APP_CERT:
        from providers.alipay import certs

        public_cert = pem_text(settings.ALIPAY_PUBLIC_CERT)
        public_key = public_key_pem(public_cert)
        cert_fields = {
            "app_cert_sn": certs.cert_sn(pem_text(settings.ALIPAY_APP_CERT)),
            "alipay_cert_sn": certs.cert_sn(public_cert),
            "alipay_root_cert_sn": certs.root_cert_sn(pem_text(settings.ALIPAY_ROOT_CERT)),
        }
    if settings.SANDBOX:
        app_key, alipay_key = alipay_sandbox_keys()
        private_key = private_key or app_key
        public_key = public_key or public_key_pem(alipay_key)
    return AlipayConfig(
        app_id=settings.ALIPAY_APPID,
        private_key_pem=private_key,
        alipay_public_key_pem=public_key,
        seller_id=settings.ALIPAY_SELLER_ID,
        gateway=settings.ALIPAY_GATEWAY,
        **cert_fields,
    )


def alipay_ready() -> bool:
    config = alipay_config()
    # The seller id too: every notify is matched against it, and without it none would be applied.
    return bool(config.app_id and config.private_key_pem and config.alipay_public_key_pem and config.seller_id)


@functools.cache
def alipay() -> AlipayClient:
    http = http_config()
    # In sandbox mode the gateway is the sandbox's page on this server: our calls to it are answered in-process.
    gateway = urlsplit(settings.ALIPAY_GATEWAY)
    session = make_session(http, _sandbox_mounts({f"{gateway.scheme}://{gateway.netloc}": "alipay"}))
    return AlipayClient(alipay_config(), session, http)


def official_account_ready() -> bool:
    return bool(settings.WECHAT_OA_APPID and settings.WECHAT_OA_SECRET)


@functools.cache
def official_account() -> OfficialAccountClient:
    """The official account's client. In sandbox mode its API host is answered in-process, and the
    pages a person opens (OAuth consent, QR code images) are the sandbox's on this server."""
    pages = f"{settings.PUBLIC_BASE_URL}/sandbox/wechat" if settings.SANDBOX else ""
    config = OfficialAccountConfig(
        appid=settings.WECHAT_OA_APPID,
        secret=settings.WECHAT_OA_SECRET,
        base_url=settings.WECHAT_API_BASE_URL,
        use_stable_token=settings.WECHAT_USE_STABLE_TOKEN,
        **({"open_base_url": pages, "mp_base_url": pages} if pages else {}),
    )
    http = http_config()
    session = make_session(http, _sandbox_mounts({DEFAULT_BASE_URL: "wechat"}))
    return OfficialAccountClient(config, session, http, token_store())


@functools.cache
def push_client(app: str) -> PushClient:
    """The sender of pushes of "miniprogram" (subscribe messages) or "official_account" (template and
    customer-service messages): the app's WechatClient, its access token shared with every other client."""
    if app == "miniprogram":
        return PushClient(wechat_miniprogram())
    if app != "official_account":
        raise ValueError(f"no push client for {app!r}")
    config = WechatAppConfig(
        appid=settings.WECHAT_OA_APPID,
        secret=settings.WECHAT_OA_SECRET,
        base_url=settings.WECHAT_API_BASE_URL,
        use_stable_token=settings.WECHAT_USE_STABLE_TOKEN,
    )
    http = http_config()
    session = make_session(http, _sandbox_mounts({DEFAULT_BASE_URL: "wechat"}))
    return PushClient(WechatClient(config, session, http, token_store()))


@functools.cache
def message_crypto() -> MessageCrypto | None:
    """Safe-mode messages of the server URL; None without an EncodingAESKey (plain mode only)."""
    if not settings.WECHAT_OA_AES_KEY:
        return None
    return MessageCrypto(settings.WECHAT_OA_TOKEN, settings.WECHAT_OA_AES_KEY, settings.WECHAT_OA_APPID)


def reset() -> None:
    """Forget built clients (tests that change settings call this)."""
    for built in (
        sandbox,
        token_store,
        wechat_miniprogram,
        wechatpay_config,
        _wechatpay_session,
        alipay_config,
        alipay,
        official_account,
        message_crypto,
        push_client,
    ):
        built.cache_clear()
