"""The sandbox's request model, shared state and fault injection; providers plug in by name."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

FAULTS = ("timeout", "http_500", "malformed", "bad_signature")


class Store(Protocol):
    """What the sandbox needs of a shared cache (Django's cache API has exactly this)."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any, timeout: float | None = ...) -> None: ...
    def add(self, key: str, value: Any, timeout: float | None = ...) -> bool: ...
    def delete(self, key: str) -> Any: ...
    def incr(self, key: str, delta: int = 1) -> int: ...
    def decr(self, key: str, delta: int = 1) -> int: ...


@dataclass
class SandboxRequest:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw_query: str = ""  # as sent, for signatures over the URL

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            return None


@dataclass
class SandboxResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # set by the timeout fault: the transport or view stalls this long
    delay: float = 0.0

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> SandboxResponse:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8"})


class ProviderSimulator(Protocol):
    name: str

    def handle(self, request: SandboxRequest) -> SandboxResponse: ...


class Sandbox:
    def __init__(self, store: Store, *, timeout_delay: float = 6.0) -> None:
        self.store = store
        self.timeout_delay = timeout_delay
        self.providers: dict[str, ProviderSimulator] = {}

    def register(self, simulator: ProviderSimulator) -> None:
        self.providers[simulator.name] = simulator

    # --- faults --------------------------------------------------------------
    def set_fault(self, provider: str, fault: str, count: int) -> None:
        if provider not in self.providers:
            raise ValueError(f"unknown provider {provider!r}; one of {sorted(self.providers)}")
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {list(FAULTS)}")
        if not 0 <= count <= 1000:
            raise ValueError("count must be between 0 and 1000")
        self.store.set(f"sbx:fault:{provider}", fault, 3600)
        self.store.set(f"sbx:fault:{provider}:n", count, 3600)

    def faults(self) -> dict[str, dict[str, Any]]:
        pending = {}
        for name in self.providers:
            left = self.store.get(f"sbx:fault:{name}:n") or 0
            if left > 0:
                pending[name] = {"fault": self.store.get(f"sbx:fault:{name}"), "count": left}
        return pending

    def take_fault(self, provider: str, kinds: tuple[str, ...] = ("timeout", "http_500", "malformed")) -> str | None:
        """Consumes one pending fault of `provider` if it is one of `kinds`."""
        fault = self.store.get(f"sbx:fault:{provider}")
        if fault not in kinds:
            return None
        try:
            left = self.store.decr(f"sbx:fault:{provider}:n")
        except ValueError:
            return None
        if left < 0:
            self.store.delete(f"sbx:fault:{provider}:n")
            return None
        logger.info("sandbox: injecting %s into a %s answer", fault, provider)
        return str(fault)

    # --- dispatch ------------------------------------------------------------
    def handle(self, provider: str, request: SandboxRequest) -> SandboxResponse:
        simulator = self.providers.get(provider)
        if simulator is None:
            return SandboxResponse.json({"error": f"no sandbox for {provider!r}"}, status=404)
        fault = self.take_fault(provider)
        if fault == "timeout":
            return SandboxResponse(504, b"", delay=self.timeout_delay)
        if fault == "http_500":
            return SandboxResponse(500, b"<html>500 Internal Server Error</html>", {"Content-Type": "text/html"})
        response = simulator.handle(request)
        if fault == "malformed":
            response.body = b"<html>\x00not what you expected"
        return response
