"""A requests transport that answers from the sandbox in-process: no sockets, same client code."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from providers.sandbox.core import Sandbox, SandboxRequest, SandboxResponse

logger = logging.getLogger(__name__)


def _read_timeout(timeout: float | tuple[float, float] | tuple[float, None] | None) -> float | None:
    if isinstance(timeout, tuple):
        return timeout[1]
    return timeout


class SandboxTransport(BaseAdapter):
    """Mount on a session for each real host, e.g. {"https://api.weixin.qq.com": "wechat"}."""

    def __init__(self, get_sandbox: Callable[[], Sandbox], hosts: Mapping[str, str]) -> None:
        super().__init__()
        self._get_sandbox = get_sandbox
        self._hosts = dict(hosts)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = urlsplit(request.url or "")
        provider = self._hosts.get(f"{url.scheme}://{url.netloc}")
        if provider is None:
            raise requests.ConnectionError(f"no sandbox route for {url.netloc}", request=request)
        body = request.body or b""
        headers = {k: v for k, v in request.headers.items()}
        sandbox_request = SandboxRequest(
            method=(request.method or "GET").upper(),
            path=url.path or "/",
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=headers,
            body=body.encode("utf-8") if isinstance(body, str) else body,
            raw_query=url.query,
        )
        try:
            answer = self._get_sandbox().handle(provider, sandbox_request)
        except Exception:  # noqa: BLE001 (the simulated provider is down, e.g. its cache: as a real one would be)
            logger.warning("sandbox: %s failed to answer %s", provider, url.path, exc_info=True)
            answer = SandboxResponse(503, b"", {"Content-Type": "text/plain"})
        if answer.delay:
            limit = _read_timeout(timeout)
            if limit is not None and limit <= answer.delay:
                time.sleep(limit)
                raise requests.ReadTimeout("sandbox: read timed out", request=request)
            time.sleep(answer.delay)
        response = requests.Response()
        response.status_code = answer.status
        response._content = answer.body
        response.headers = CaseInsensitiveDict(answer.headers)
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        response.reason = "OK" if answer.status < 400 else "Error"
        return response

    def close(self) -> None:
        pass
