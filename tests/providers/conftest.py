"""Fixtures of the provider tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests import helpers


@pytest.fixture
def run_together() -> Callable[[Callable[[], Any], int], list[Any]]:
    """run_together(target, n): runs `target` in n threads released at once; returns the results (or the
    exceptions) in thread order."""
    return helpers.run_together
