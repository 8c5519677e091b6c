"""The official account's server URL: WeChat's GET check, and the messages and events it POSTs.

Every request carries `signature` (sha1 of our token, timestamp and nonce), checked first, POSTs too. Safe mode
(`encrypt_type=aes`) is then decrypted with `msg_signature` over the Encrypt element, never trusting the plain
signature for the ciphertext. The answer is the passive reply, encrypted in safe mode, or `success`.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from config import providers
from officialaccount import services
from providers.wechat.messages import (
    MessageCryptoError,
    MessageSignatureError,
    MessageXmlError,
    NestedMessageError,
    check_server_signature,
    parse_message,
)

logger = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
XML = "text/xml; charset=utf-8"


def _plain(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, content_type=TEXT, status=status)


def _too_big(request: HttpRequest) -> bool:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return True
    return length > int(settings.NOTIFY_MAX_BYTES)


@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def server(request: HttpRequest) -> HttpResponse:
    try:
        return _answer(request)
    except Exception:  # noqa: BLE001 (WeChat retries an error; the log has the rest)
        logger.exception("official account: a message failed; WeChat will retry it")
        return _plain("try again later", 503)


MAX_SKEW = 300  # seconds


def _fresh(timestamp: str) -> bool:
    # Seconds as WeChat writes them: at most 12 digits (longer ones would not even fit a float).
    return (
        timestamp.isascii()
        and timestamp.isdigit()
        and len(timestamp) <= 12
        and abs(time.time() - int(timestamp)) <= MAX_SKEW
    )


def _answer(request: HttpRequest) -> HttpResponse:
    query = request.GET
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    if request.method == "POST" and _too_big(request):
        return _plain("body too large", 413)
    token = settings.WECHAT_OA_TOKEN
    # An empty token would make every signature computable by anyone.
    if not token or not check_server_signature(token, query.get("signature", ""), timestamp, nonce):
        return _plain("signature does not verify", 403)
    if request.method == "GET":
        echostr = query.get("echostr")
        return _plain(echostr) if echostr is not None else _plain("echostr missing", 400)

    # The plain signature covers no body: only a fresh one is taken, and dedup makes its retries harmless.
    if not _fresh(timestamp):
        return _plain("timestamp is not within 5 minutes of now", 403)
    crypto = None
    if query.get("encrypt_type", "raw").lower() == "aes":
        crypto = providers.message_crypto()
        if crypto is None:
            return _plain("safe mode is not configured here", 403)
    elif providers.message_crypto() is not None:
        # With an EncodingAESKey the account is in safe (or compatible) mode: WeChat always encrypts, so a
        # plaintext body, whose signature covers nothing of it, is not WeChat's.
        return _plain("this account takes safe-mode messages only", 403)
    try:
        message = parse_message(request.body)
        if crypto is not None:
            encrypted = message.get("Encrypt")
            if not encrypted:
                return _plain("Encrypt missing", 400)
            message = parse_message(
                crypto.decrypt(query.get("msg_signature", ""), timestamp, nonce, encrypted).encode("utf-8")
            )
    except MessageSignatureError:
        return _plain("msg_signature does not verify", 403)
    except MessageCryptoError as exc:  # bad padding, another appid, not base64
        logger.warning("official account: safe-mode message refused: %s", exc)
        return _plain("cannot decrypt", 400)
    except NestedMessageError:
        # Signed by WeChat (checked above), an event of a kind we do not handle: acknowledged, not retried.
        logger.info("official account: a message with nested elements answered success")
        return _plain(services.SUCCESS)
    except MessageXmlError:
        return _plain("not a WeChat message", 400)

    reply = services.reply_to(appid=settings.WECHAT_OA_APPID, message=message)
    if reply == services.SUCCESS:
        return _plain(reply)
    if crypto is None:
        return HttpResponse(reply, content_type=XML)
    # A retry gets the same reply XML, encrypted afresh (another random prefix: the same plaintext).
    encrypted_reply = crypto.encrypt(reply, nonce=nonce, timestamp=timestamp if timestamp.isdigit() else None)
    return HttpResponse(encrypted_reply.to_xml(), content_type=XML)
