"""providers.compare: untrusted text against a secret or an id."""

import pytest

from providers.compare import constant_time_equal


@pytest.mark.parametrize(
    ("given", "expected", "equal"),
    [
        ("wx123", "wx123", True),
        ("é", "é", True),
        ("é", "e", False),  # hmac.compare_digest("é", "e") raises TypeError
        ("\ud800", "x", False),  # a lone surrogate (from JSON) is just another text
        ("", "wx123", False),
        (None, "wx123", False),
        (123, "123", False),
    ],
)
def test_constant_time_equal(given, expected, equal):
    assert constant_time_equal(given, expected) is equal
