"""core.errors: the error codes clients see as `extensions.code`."""

from core.errors import ErrorCode


def test_every_error_code_is_documented_in_the_enum():
    # Clients branch on these strings: one renamed, added or dropped here is an API change.
    assert [c.value for c in ErrorCode] == [
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "BAD_USER_INPUT",
        "NOT_FOUND",
        "CONFLICT",
        "RATE_LIMITED",
        "PROVIDER_ERROR",
        "PROVIDER_UNAVAILABLE",
        "SERVICE_UNAVAILABLE",
        "INTERNAL",
    ]
