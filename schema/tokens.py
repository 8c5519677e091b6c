"""graphql_jwt's encode and decode handlers: PyJWT's, with the HMAC key prepared once.

PyJWT prepares the key on every encode and decode: it checks that the secret is no PEM, SSH,
DER or JWK key, parsing it as JSON (and, with `cryptography` installed, as a DER key and a
certificate). That is a quarter of making a token, and it depends on the secret alone, never on
the token, so its outcome is kept. Everything else, the bytes of the
token included, is PyJWT's own (tests/test_jwt_handlers.py).
"""

from __future__ import annotations

from typing import Any

import jwt
from graphql_jwt.settings import jwt_settings
from jwt.algorithms import HMACAlgorithm


class _PreparedKeyHMAC(HMACAlgorithm):
    """PyJWT's HMAC, keeping the prepared form of the few secrets it sees."""

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self._prepared: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = super().prepare_key(key)  # an unusable secret raises, and is never kept
            if len(self._prepared) < 8:
                self._prepared[key] = prepared
        return prepared


def _api() -> jwt.PyJWT:
    api = jwt.PyJWT()
    for name, hash_alg in (
        ("HS256", HMACAlgorithm.SHA256),
        ("HS384", HMACAlgorithm.SHA384),
        ("HS512", HMACAlgorithm.SHA512),
    ):
        api._jws.unregister_algorithm(name)
        api._jws.register_algorithm(name, _PreparedKeyHMAC(hash_alg))
    return api


_API = _api()


def verifying_key() -> Any:
    """The key tokens are verified with (graphql_jwt's choice); schema/auth.py keys its cache on it."""
    return jwt_settings.JWT_PUBLIC_KEY or jwt_settings.JWT_SECRET_KEY


def jwt_encode(payload: dict[str, Any], context: Any = None) -> str:
    """graphql_jwt.utils.jwt_encode, on this module's PyJWT."""
    return _API.encode(
        payload,
        jwt_settings.JWT_PRIVATE_KEY or jwt_settings.JWT_SECRET_KEY,
        jwt_settings.JWT_ALGORITHM,
    )


def jwt_decode(token: str, context: Any = None) -> dict[str, Any]:
    """graphql_jwt.utils.jwt_decode, on this module's PyJWT."""
    return _API.decode(
        token,
        verifying_key(),
        options={
            "verify_exp": jwt_settings.JWT_VERIFY_EXPIRATION,
            "verify_aud": jwt_settings.JWT_AUDIENCE is not None,
            "verify_signature": jwt_settings.JWT_VERIFY,
        },
        leeway=jwt_settings.JWT_LEEWAY,
        audience=jwt_settings.JWT_AUDIENCE,
        issuer=jwt_settings.JWT_ISSUER,
        algorithms=[jwt_settings.JWT_ALGORITHM],
    )
