"""A requests transport that answers from the sandbox in-process: no sockets, same client code."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

import requests
from Crypto.PublicKey import RSA
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from providers.sandbox.core import Sandbox, SandboxRequest, SandboxResponse

logger = logging.getLogger(__name__)


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)

CertArgument = bytes | str | tuple[bytes | str, bytes | str] | None


def _pem_block(text: str, kind: str) -> str:
    return next((m.group(0) for m in _PEM_BLOCK.finditer(text) if m.group(1).endswith(kind)), "")


def client_certificate(cert: CertArgument) -> str | None:
    """The certificate (PEM) requests would present for its `cert` argument (a path, or the paths of
    the certificate and its key), checked as its TLS layer checks it: the files exist (OSError, as
    requests raises) and the key is the certificate's (SSLError, as the handshake fails)."""
    if not cert:
        return None
    paths = [os.fsdecode(cert)] if isinstance(cert, (str, bytes)) else [os.fsdecode(path) for path in cert]
    for path in paths:
        if not os.path.exists(path):
            raise OSError(f"Could not find the TLS certificate file, invalid path: {path}")
    texts = []
    for path in paths:
        with open(path, encoding="ascii", errors="replace") as handle:
            texts.append(handle.read())
    certificate, key = _pem_block(texts[0], "CERTIFICATE"), _pem_block(texts[-1], "PRIVATE KEY")
    try:
        matches = bool(certificate and key) and RSA.import_key(certificate).n == RSA.import_key(key).n
    except (ValueError, IndexError, TypeError):
        matches = False
    if not matches:
        raise requests.exceptions.SSLError("sandbox: the client certificate and its private key do not match")
    return certificate


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
        cert: CertArgument = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = urlsplit(request.url or "")
        provider = self._hosts.get(f"{url.scheme}://{url.netloc}")
        if provider is None:
            raise requests.ConnectionError(f"no sandbox route for {url.netloc}", request=request)
        try:
            presented = client_certificate(cert)
        except requests.exceptions.SSLError as exc:
            raise requests.exceptions.SSLError(str(exc), request=request) from None
        body = request.body or b""
        headers = {k: v for k, v in request.headers.items()}
        sandbox_request = SandboxRequest(
            method=(request.method or "GET").upper(),
            path=url.path or "/",
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=headers,
            body=body.encode("utf-8") if isinstance(body, str) else body,
            raw_query=url.query,
            client_cert=presented,
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
