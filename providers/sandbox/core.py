"""The sandbox's request model, shared state and fault injection; providers plug in by name."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

FAULTS = ("timeout", "http_500", "malformed", "bad_signature")
# (status, body) of our notify endpoint's answer
Deliver = Callable[[str, dict[str, str], bytes], tuple[int, str]]
DELIVERIES_TTL = 7 * 24 * 3600
_CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
# The faults that replace a whole answer (bad_signature spoils a signed one instead).
ANSWER_FAULTS = ("timeout", "http_500", "malformed")


class Store(Protocol):
    """What the sandbox needs of a shared cache (Django's cache API has exactly this)."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any, timeout: float | None = ...) -> None: ...
    def add(self, key: str, value: Any, timeout: float | None = ...) -> bool: ...
    def delete(self, key: str) -> Any: ...
    def incr(self, key: str, delta: int = 1) -> int: ...
    def decr(self, key: str, delta: int = 1) -> int: ...


@dataclass(frozen=True)
class Write:
    key: str
    value: Any
    ttl: int


def _fault_keys(provider: str) -> tuple[str, str]:
    return f"sbx:fault:{provider}", f"sbx:fault:{provider}:n"


def take_fault(store: Store, provider: str, kinds: Sequence[str] = ANSWER_FAULTS) -> str | None:
    """Consumes one pending fault of `provider` if it is one of `kinds`."""
    fault_key, count_key = _fault_keys(provider)
    fault = store.get(fault_key)
    if fault not in kinds:
        return None
    try:
        left = store.decr(count_key)
    except ValueError:
        return None
    if left < 0:
        store.delete(count_key)
        return None
    logger.info("sandbox: injecting %s into a %s answer", fault, provider)
    return str(fault)


def claim(
    store: Store, provider: str, once: Write, then: Sequence[Write] = (), kinds: Sequence[str] = ANSWER_FAULTS
) -> str | bool:
    """For an answer that uses something up (a login code): a pending fault of `kinds` is taken and
    returned, and nothing is used up; otherwise `once.key` is marked used, and True means it was
    unused until now (then `then` is written too), False that it was used before. `add` is atomic
    on every Django cache, so of two concurrent claims of one key exactly one wins."""
    fault = take_fault(store, provider, kinds)
    if fault is not None:
        return fault
    if not store.add(once.key, once.value, once.ttl):
        return False
    for write in then:
        store.set(write.key, write.value, write.ttl)
    return True


@contextlib.contextmanager
def locked(store: Store, key: str, *, ttl: int = 10, wait: float = 10.0) -> Iterator[None]:
    """A lock on the shared cache around a read-modify-write of sandbox state (an order paid by
    two cashiers at once gets one transaction id). It expires after `ttl` seconds if its holder dies."""
    owner = secrets.token_hex(8)
    deadline = time.monotonic() + wait
    while not store.add(key, owner, ttl):
        if time.monotonic() > deadline:
            raise TimeoutError(f"sandbox lock {key} is held")
        time.sleep(0.005)
    try:
        yield
    finally:
        if store.get(key) == owner:
            store.delete(key)


@dataclass(frozen=True)
class OutgoingNotify:
    """One notify on its way: where it goes, what it says, and when our endpoint has taken it."""

    record: str  # the cache key its attempts are recorded under
    url: str
    body: bytes
    headers: Callable[[], dict[str, str]]
    accepted: Callable[[int, str], bool]
    alive: Callable[[], bool]  # False once the sandbox forgot the order or refund: no more retries


class NotifySender:
    """How a simulator sends its notifies, as the providers do: the first attempt now and, until our endpoint
    accepts one, the next ones from a thread after each of `retry_seconds`; every attempt is recorded.
    A simulator inheriting it sets `store`, `deliver` and `retry_seconds`."""

    store: Store
    deliver: Deliver
    retry_seconds: tuple[float, ...]

    def _attempt(self, notify: OutgoingNotify, attempt: int, copy: int) -> tuple[int, str]:
        try:
            answer = self.deliver(notify.url, notify.headers(), notify.body)
        except (OSError, ValueError) as exc:  # our notify URL did not answer (requests' errors are OSErrors)
            answer = (0, f"not delivered: {exc}")
        self._record_delivery(notify.record, answer, attempt=attempt, copy=copy)
        return answer

    def _deliver_with_retries(self, notify: OutgoingNotify, copy: int) -> tuple[int, str]:
        """The first attempt now; if it is not answered with success, the next ones on a thread after each
        of `retry_seconds`, until one is (or the sandbox forgot the order)."""
        first = self._attempt(notify, 1, copy)
        if not notify.accepted(*first) and self.retry_seconds:
            threading.Thread(target=self._retry, args=(notify, copy), daemon=True).start()
        return first

    def _retry(self, notify: OutgoingNotify, copy: int) -> None:
        for attempt, pause in enumerate(self.retry_seconds, start=2):
            time.sleep(pause)
            if not notify.alive():
                return
            if notify.accepted(*self._attempt(notify, attempt, copy)):
                return
        logger.warning("sandbox: notify to %s given up after %d attempts", notify.url, len(self.retry_seconds) + 1)

    def _record_delivery(self, record: str, answer: tuple[int, str], *, attempt: int, copy: int) -> None:
        with locked(self.store, f"{record}:lock"):
            value = self.store.get(record)
            delivered = list(value) if isinstance(value, list) else []
            delivered.append(
                {
                    "status": answer[0],
                    "body": answer[1],
                    "attempt": attempt,
                    "copy": copy,
                    "at": dt.datetime.now(_CHINA).replace(microsecond=0).isoformat(),
                }
            )
            self.store.set(record, delivered, DELIVERIES_TTL)


class InjectedFault(Exception):
    """Raised by a simulator that took a fault itself (see `claim`): the sandbox answers with it."""

    def __init__(self, fault: str) -> None:
        super().__init__(fault)
        self.fault = fault


@dataclass
class SandboxRequest:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw_query: str = ""  # as sent, for signatures over the URL
    # The client certificate (PEM) the caller presented over TLS; None: none. In-process the transport
    # hands over requests' `cert`; over plain HTTP there is no TLS, so `cert_visible` is False.
    client_cert: str | None = None
    cert_visible: bool = True

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

    def takes_own_faults(self, request: SandboxRequest) -> bool:
        """True when handle() takes any pending fault itself (raising InjectedFault)."""
        ...


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
        fault_key, count_key = _fault_keys(provider)
        self.store.set(fault_key, fault, 3600)
        self.store.set(count_key, count, 3600)

    def faults(self) -> dict[str, dict[str, Any]]:
        pending = {}
        for name in self.providers:
            fault_key, count_key = _fault_keys(name)
            left = self.store.get(count_key) or 0
            if left > 0:
                pending[name] = {"fault": self.store.get(fault_key), "count": left}
        return pending

    def take_fault(self, provider: str, kinds: Sequence[str] = ANSWER_FAULTS) -> str | None:
        """Consumes one pending fault of `provider` if it is one of `kinds`."""
        return take_fault(self.store, provider, kinds)

    def fault_answer(self, fault: str, answer: SandboxResponse | None = None) -> SandboxResponse:
        if fault == "timeout":
            return SandboxResponse(504, b"", delay=self.timeout_delay)
        if fault == "http_500":
            return SandboxResponse(500, b"<html>500 Internal Server Error</html>", {"Content-Type": "text/html"})
        answer = answer or SandboxResponse(200, b"", {"Content-Type": "application/json; charset=utf-8"})
        answer.body = b"<html>\x00not what you expected"
        return answer

    # --- dispatch ------------------------------------------------------------
    def handle(self, provider: str, request: SandboxRequest) -> SandboxResponse:
        simulator = self.providers.get(provider)
        if simulator is None:
            return SandboxResponse.json({"error": f"no sandbox for {provider!r}"}, status=404)
        if simulator.takes_own_faults(request):
            try:
                return simulator.handle(request)
            except InjectedFault as injected:
                return self.fault_answer(injected.fault)
        fault = self.take_fault(provider)
        if fault in ("timeout", "http_500"):
            return self.fault_answer(fault)
        response = simulator.handle(request)
        return self.fault_answer(fault, response) if fault == "malformed" else response
