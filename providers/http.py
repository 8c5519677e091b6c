"""Pooled HTTP sessions with explicit timeouts, and the one error hierarchy of providers/."""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter

logger = logging.getLogger(__name__)


class ProviderFailure(Exception):
    """Base of every provider failure."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message


class ProviderError(ProviderFailure):
    """The provider answered and said no; its errcode and errmsg are kept."""

    def __init__(self, provider: str, errcode: int | str, errmsg: str) -> None:
        super().__init__(provider, f"errcode={errcode} errmsg={errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class ProviderUnavailable(ProviderFailure):
    """No usable answer: timeout, connection failure, 5xx or an unparsable body."""


@dataclass(frozen=True)
class HttpConfig:
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    pool_size: int = 20
    # Explicit, e.g. "http://proxy:3128"; the environment (HTTPS_PROXY, .netrc) is not consulted
    # on every call, which costs more than the in-process sandbox call itself.
    proxy: str = ""

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


@functools.lru_cache(maxsize=256)
def _prepared_base(url: str) -> str | None:
    """requests' own preparation of a URL that carries no query (IDNA host, quoting, a "/" path);
    None for one with credentials, a query or a fragment, which requests prepares on each call."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    parts = urlsplit(prepared.url or "")
    if parts.query or parts.fragment or "@" in parts.netloc:
        return None
    return prepared.url


def _url(url: str, params: Any) -> str | None:
    """The prepared URL of a call whose parameters are a dict of plain values, without requests'
    per-call re-parsing and its typing-protocol checks of the dict (a third of a sandbox call);
    None for anything else. Same bytes as requests gives (tests/providers/test_http.py)."""
    if params is not None and type(params) is not dict:
        return None
    base = _prepared_base(url)
    if base is None or not params:
        return base
    pairs = []
    for key, value in params.items():
        if value is None:  # requests leaves such a parameter out
            continue
        if type(key) is not str or type(value) not in (str, int):
            return None
        pairs.append((key, value))
    return f"{base}?{urlencode(pairs)}" if pairs else base


class ProviderSession(requests.Session):
    """A requests Session for provider APIs: no cookies, and no redirects followed (an API answer
    that redirects is not an answer: it fails as a non-JSON body would).

    Without them a call needs none of Session.request's per-call merging of cookies, hooks and
    settings, which costs more than the in-process sandbox's whole answer. Mounted transports,
    default headers, proxies, `verify` and client certificates work as on any Session.
    """

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        data: Any = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        timeout: Any = None,
        cert: Any = None,
    ) -> requests.Response:
        prepared = requests.PreparedRequest()
        all_headers = {**self.headers, **(headers or {})}
        fast_url = _url(url, params)
        if fast_url is None:
            prepared.prepare(method=method, url=url, headers=all_headers, params=params, data=data, json=json)
        else:
            # prepare() without the steps that have nothing to do here: no cookie jar, and no
            # credentials in the URL (_url refuses those) for prepare_auth to find.
            prepared.prepare_method(method)
            prepared.url = fast_url
            prepared.prepare_headers(all_headers)
            prepared.prepare_body(data, None, json)
        adapter = self.get_adapter(prepared.url or url)
        response = adapter.send(
            prepared,
            stream=False,
            timeout=timeout,
            verify=True if self.verify is None else self.verify,
            cert=cert if cert is not None else self.cert,
            proxies=self.proxies,
        )
        response.content  # noqa: B018 (reads the body now, which hands the connection back to the pool)
        return response


def make_session(config: HttpConfig, mounts: dict[str, BaseAdapter] | None = None) -> requests.Session:
    """One pooled session per provider; `mounts` routes host prefixes to other transports (the sandbox)."""
    session = ProviderSession()
    session.trust_env = False
    if config.proxy:
        session.proxies = {"http": config.proxy, "https": config.proxy}
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=config.pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    for prefix, transport in (mounts or {}).items():
        session.mount(prefix, transport)
    session.headers["User-Agent"] = "wxbackend/1.0"
    return session


def send(
    session: requests.Session,
    provider: str,
    method: str,
    url: str,
    config: HttpConfig,
    **kwargs: Any,
) -> requests.Response:
    """Sends one request; any transport failure or 5xx becomes ProviderUnavailable."""
    try:
        response = session.request(method, url, timeout=config.timeout, **kwargs)
    except requests.Timeout as exc:
        raise ProviderUnavailable(provider, "timed out") from exc
    except requests.RequestException as exc:
        raise ProviderUnavailable(provider, f"connection failed ({type(exc).__name__})") from exc
    if response.status_code >= 500:
        raise ProviderUnavailable(provider, f"HTTP {response.status_code}")
    return response


def json_body(response: requests.Response, provider: str) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise ProviderUnavailable(provider, f"unparsable body (HTTP {response.status_code})") from exc
    if not isinstance(body, dict):
        raise ProviderUnavailable(provider, "unexpected body shape")
    return body
