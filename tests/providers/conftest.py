"""Fixtures of the provider tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest


def _run_together(target: Callable[[], Any], n: int) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results


@pytest.fixture
def run_together() -> Callable[[Callable[[], Any], int], list[Any]]:
    """run_together(target, n): runs `target` in n threads released at once; returns the results (or the
    exceptions) in thread order."""
    return _run_together
