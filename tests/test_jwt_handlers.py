"""schema/tokens.py: graphql_jwt's handlers on a PyJWT whose HMAC keeps the prepared secret."""

from __future__ import annotations

import datetime
from typing import Any

import jwt
import pytest
from graphql_jwt import utils as graphql_jwt_utils
from graphql_jwt.settings import jwt_settings

from accounts.models import User
from schema import tokens

# At least 64 bytes, which PyJWT asks of HS512 secrets.
KEYS = ["k" * 64, "a secret with spaces and 漢字, long enough for HS512: 0123456789abcdef", b"\x00\xff" * 40]
PAYLOADS: list[dict[str, Any]] = [
    {},
    {"username": "wx_0123456789abcdef01234567", "exp": 1_900_000_000},
    {"username": '漢字 "quoted" \\ </script>', "exp": 1_900_000_000, "origIat": 1_899_999_000},
    {"username": "u", "exp": datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), "aud": "app", "iss": "us"},
    {"nested": {"b": [1, 2.5, None, True]}, "a": "z"},
]


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_tokens_are_pyjwts_bytes(algorithm):
    for key in KEYS:
        for payload in PAYLOADS:
            ours = tokens._API.encode(payload, key, algorithm)
            assert ours == jwt.encode(payload, key, algorithm)
            assert tokens._API.decode(ours, key, algorithms=[algorithm], options={"verify_aud": False}) == (
                jwt.decode(ours, key, algorithms=[algorithm], options={"verify_aud": False})
            )


def test_the_handlers_are_graphql_jwts_own_on_the_configured_secret():
    assert jwt_settings.JWT_ENCODE_HANDLER is tokens.jwt_encode
    assert jwt_settings.JWT_DECODE_HANDLER is tokens.jwt_decode
    user = User(username="wx_handler")
    payload = graphql_jwt_utils.jwt_payload(user)
    token = tokens.jwt_encode(payload)
    assert token == graphql_jwt_utils.jwt_encode(payload)
    assert tokens.jwt_decode(token) == graphql_jwt_utils.jwt_decode(token) == payload


def test_a_token_signed_with_another_secret_or_none_is_refused():
    payload = graphql_jwt_utils.jwt_payload(User(username="wx_handler"))
    with pytest.raises(jwt.InvalidSignatureError):
        tokens.jwt_decode(jwt.encode(payload, "x" * 40, "HS256"))
    unsigned = jwt.encode(payload, None, "none")
    with pytest.raises(jwt.InvalidAlgorithmError):
        tokens.jwt_decode(unsigned)
    expired = {**payload, "exp": 1_000_000_000}
    with pytest.raises(jwt.ExpiredSignatureError):
        tokens.jwt_decode(tokens.jwt_encode(expired))


def test_an_asymmetric_key_as_the_secret_is_refused_every_time():
    pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
    for _ in range(2):  # a refusal is never kept as a prepared key
        with pytest.raises(jwt.InvalidKeyError):
            tokens._API.encode({"a": 1}, pem, "HS256")


def test_only_a_few_secrets_are_kept():
    for n in range(20):
        key = f"secret number {n:02d} of this test, long enough for any HMAC: 0123456789"
        token = tokens._API.encode({"n": n}, key, "HS256")
        assert jwt.decode(token, key, algorithms=["HS256"]) == {"n": n}
    algorithm = tokens._API._jws.get_algorithm_by_name("HS256")
    assert isinstance(algorithm, tokens._PreparedKeyHMAC)
    assert len(algorithm._prepared) <= 8
