"""Alipay's RSA2 (SHA256withRSA) over the sorted `k=v&...` string of a request, a notify or a return,
and over the raw `..._response` text of an answer."""

from __future__ import annotations

import json
from collections.abc import Mapping

from providers.rsa import sign_sha256, verify_sha256

SIGN_TYPE = "RSA2"


def sign_content(params: Mapping[str, str], *, for_verification: bool = False) -> str:
    """The string Alipay signs: every non-empty parameter but `sign` (and, when verifying a notify or a
    return, `sign_type`), sorted by name, as `k=v` joined by `&`, values as they are (not URL-encoded)."""
    skipped = {"sign", "sign_type"} if for_verification else {"sign"}
    return "&".join(f"{key}={params[key]}" for key in sorted(params) if key not in skipped and params[key] != "")


def sign(params: Mapping[str, str], private_key_pem: str) -> str:
    """The `sign` of a request (every other parameter, `sign_type` included, is signed)."""
    return sign_sha256(private_key_pem, sign_content(params))


def verify(params: Mapping[str, str], public_key_pem: str) -> bool:
    """Whether a notify's or a return's `sign` is Alipay's over its other parameters (without `sign_type`)."""
    signature = params.get("sign", "")
    return bool(signature) and verify_sha256(public_key_pem, sign_content(params, for_verification=True), signature)


def compact_json(value: object) -> str:
    """`biz_content` as Alipay reads it: compact, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ResponseError(ValueError):
    """An answer whose signed part cannot be found."""


def _members(body: str) -> dict[str, tuple[object, int, int]]:
    """The top-level members of a JSON object: name -> (value, where its text begins, where it ends)."""
    decoder = json.JSONDecoder()
    whitespace = " \t\r\n"
    members: dict[str, tuple[object, int, int]] = {}
    at = len(body) - len(body.lstrip(whitespace))
    if body[at : at + 1] != "{":
        raise ResponseError("the answer is not a JSON object")
    at += 1
    try:
        while True:
            while body[at] in whitespace:
                at += 1
            if body[at] == "}":
                return members
            name, at = decoder.raw_decode(body, at)
            while body[at] in whitespace:
                at += 1
            if body[at] != ":":
                raise ResponseError("the answer is not a JSON object")
            at += 1
            while body[at] in whitespace:
                at += 1
            value, end = decoder.raw_decode(body, at)
            members[name] = (value, at, end)
            at = end
            while body[at] in whitespace:
                at += 1
            if body[at] == ",":
                at += 1
    except (ValueError, IndexError, RecursionError) as exc:
        raise ResponseError("the answer is not JSON") from exc


def signed_part(body: str, method: str) -> tuple[str, str]:
    """(the exact text of the `<method>_response` (or `error_response`) object, the answer's `sign`).

    Alipay signs that object's text as it sent it (it writes `/` as `\\/`, for one), so it is cut out of
    the raw body, not re-serialised."""
    members = _members(body)
    signature = members.get("sign", ("", 0, 0))[0]
    for name in (method.replace(".", "_") + "_response", "error_response"):
        if name in members:
            _, begin, end = members[name]
            return body[begin:end], signature if isinstance(signature, str) else ""
    raise ResponseError(f"no {method.replace('.', '_')}_response in the answer")


def verify_response(body: str, method: str, public_key_pem: str) -> dict[str, object]:
    """The `<method>_response` object of an answer whose signature is Alipay's; ResponseError otherwise.
    An answer without `sign` (Alipay leaves it off some gateway errors) does not verify either."""
    text, signature = signed_part(body, method)
    if not signature or not verify_sha256(public_key_pem, text, signature):
        raise ResponseError("the answer's signature does not verify")
    answer = json.loads(text)
    if not isinstance(answer, dict):
        raise ResponseError("the signed part is not an object")
    return answer
