"""Fixtures of the schema tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def _nested(depth: int, leaf: str = "id", field: str = "f") -> str:
    body = leaf
    for _ in range(depth - 1):
        body = f"{field} {{ {body} }}"
    return "{ " + body + " }"


@pytest.fixture
def nested() -> Callable[..., str]:
    """nested(depth, leaf="id", field="f"): `{ f { f { ... leaf } } }` with `depth` levels of fields (the leaf
    is the deepest one)."""
    return _nested
