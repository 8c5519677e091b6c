"""Comparing untrusted text with a secret or an id."""

from __future__ import annotations

import hmac


def constant_time_equal(given: object, expected: str) -> bool:
    """Constant-time equality, on UTF-8 bytes: any text (non-ASCII, a lone surrogate) that differs is
    just unequal, never an error (hmac.compare_digest refuses non-ASCII str), and a non-string is unequal."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))
