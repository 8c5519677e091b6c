"""Pooled HTTP sessions with explicit timeouts, and the one error hierarchy of providers/."""

from __future__ import annotations

import http.cookiejar
import json
import logging
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
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
    """No usable answer: timeout, connection failure, 5xx or an unparsable body.

    `maybe_received`: the request went out and no answer says what became of it (a read timeout, a
    connection lost after sending, a gateway's 502 or 504, a body that is not an answer), so the provider may
    have acted on it. False when no connection was made, or the provider said it failed (500, 503).
    """

    def __init__(self, provider: str, message: str, *, maybe_received: bool = False) -> None:
        super().__init__(provider, message)
        self.maybe_received = maybe_received


@dataclass(frozen=True)
class HttpConfig:
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    pool_size: int = 20
    # Explicit, e.g. "http://proxy:3128"; the environment's HTTPS_PROXY is not read.
    proxy: str = ""

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Provider APIs authenticate every call themselves: a cookie one of them sets is never sent back."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def make_session(config: HttpConfig, mounts: dict[str, BaseAdapter] | None = None) -> requests.Session:
    """One pooled session per provider; `mounts` routes host prefixes to other transports (the sandbox).

    The environment (HTTPS_PROXY, .netrc, REQUESTS_CA_BUNDLE) is not consulted: only `config.proxy`.
    """
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(_NoCookies())
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
    """Sends one request; any transport failure or 5xx becomes ProviderUnavailable.

    Redirects are not followed: an API answer that redirects is no answer (it fails as a body that
    is not JSON or XML does).
    """
    try:
        response = session.request(method, url, timeout=config.timeout, allow_redirects=False, **kwargs)
    except requests.RequestException as exc:
        message = _unreachable(exc, url, config)
        raise ProviderUnavailable(provider, message, maybe_received=not _never_sent(exc)) from exc
    if response.status_code >= 500:
        gateway = response.status_code in (502, 504)  # the service behind the gateway may have acted
        raise ProviderUnavailable(provider, f"HTTP {response.status_code}", maybe_received=gateway)
    return response


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: requests wraps urllib3's MaxRetryError, whose `reason` wraps the socket's."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        todo += [item for item in linked if isinstance(item, BaseException)]


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the failure came before any byte of the request could reach the provider: no connection
    (timed out, refused, unreachable, no DNS answer) or the proxy could not reach it."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.ProxyError):
        return True
    never = urllib3.exceptions.NewConnectionError | socket.gaierror | ConnectionRefusedError
    return any(isinstance(cause, never) for cause in _causes(exc))


def _unreachable(exc: requests.RequestException, url: str, config: HttpConfig) -> str:
    """What went wrong, for the log: an operator fixes a DNS failure or a refused port differently from
    a provider that is slow."""
    where = urlsplit(url).netloc
    causes = list(_causes(exc))
    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection to {where} within {config.connect_timeout:g} s"
    if isinstance(exc, requests.Timeout):
        return f"{where} did not answer within {config.read_timeout:g} s"
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"the proxy failed to reach {where} ({type(causes[-1]).__name__})"
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return f"DNS lookup of {urlsplit(url).hostname} failed"
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return f"connection to {where} refused"
    if any(isinstance(cause, ssl.SSLError) for cause in causes):
        return f"TLS with {where} failed"
    if any(isinstance(cause, ConnectionResetError) for cause in causes):
        return f"connection to {where} reset"
    return f"connection to {where} failed ({type(exc).__name__})"


def json_body(response: requests.Response, provider: str) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        message = f"unparsable body (HTTP {response.status_code})"
        raise ProviderUnavailable(provider, message, maybe_received=True) from exc
    if not isinstance(body, dict):
        raise ProviderUnavailable(provider, "unexpected body shape", maybe_received=True)
    return body
