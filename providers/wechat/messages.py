"""Official-account (公众号) messages: the server URL's signatures, safe-mode crypto, XML in and passive replies out.

Safe mode (EncodingAESKey set) wraps each message and reply in AES-256-CBC with key = base64(EncodingAESKey + "="),
IV = key[:16], PKCS#7 padded to 32 bytes, over 16 random bytes + 4-byte big-endian length + xml + appid; its
`msg_signature` is sha1 of the sorted [token, timestamp, nonce, Encrypt], never the plain `signature`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat
from xml.parsers.expat import ExpatError

import xmltodict
from Crypto.Cipher import AES

from providers.wechat.crypto import DecryptError, pkcs7_pad, pkcs7_unpad

# Safe-mode plaintext is padded to 32 bytes, not to the AES block of 16.
MESSAGE_BLOCK = 32
RANDOM_PREFIX = 16
# WeChat's messages are a few KiB; anything near this is not from WeChat.
MAX_MESSAGE_BYTES = 64 * 1024
# Passive news replies: 1 article when answering a user's message, up to 8 otherwise.
MAX_NEWS_ARTICLES = 8

_AES_KEY = re.compile(r"[A-Za-z0-9+/]{43}")
# Characters XML 1.0 cannot carry at all, CDATA or not.
_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class MessageCryptoError(ValueError):
    """A safe-mode message or reply cannot be trusted or built: signature, key, base64, padding, length or appid."""


class MessageSignatureError(MessageCryptoError):
    """The msg_signature does not match: the request is not from WeChat (answer 403)."""


class MessageXmlError(ValueError):
    """The body is not a flat, small, entity-free <xml> document."""


class NestedMessageError(MessageXmlError):
    """Well-formed, but with nested or repeated elements: real events (scancode_*'s ScanCodeInfo,
    pic_*'s SendPicsInfo, location_select, subscribe_msg_popup_event's List) have them."""


def _sha1_of_sorted(*parts: str) -> str:
    joined = "".join(sorted(parts)).encode("utf-8")
    return hashlib.sha1(joined, usedforsecurity=False).hexdigest()  # noqa: S324 (the protocol)


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def server_signature(token: str, timestamp: str, nonce: str) -> str:
    """The server URL's `signature`: sha1 of the sorted [token, timestamp, nonce], lower-case hex."""
    return _sha1_of_sorted(token, str(timestamp), nonce)


def check_server_signature(token: str, signature: str, timestamp: str, nonce: str) -> bool:
    """True when `signature` (GET verification, and every plain POST) was made with our token."""
    return _same(server_signature(token, timestamp, nonce), signature)


def message_signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """Safe mode's `msg_signature`: sha1 of the sorted [token, timestamp, nonce, Encrypt]."""
    return _sha1_of_sorted(token, str(timestamp), nonce, encrypted)


def jssdk_signature(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """wx.config's signature over the page URL exactly as the browser has it (no `#` fragment, not escaped)."""
    string1 = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(string1.encode("utf-8"), usedforsecurity=False).hexdigest()  # noqa: S324 (the protocol)


# --- safe-mode crypto --------------------------------------------------------------------------


@dataclass(frozen=True)
class EncryptedReply:
    """A safe-mode reply: the parts, and `to_xml()` the body WeChat expects."""

    encrypt: str
    msg_signature: str
    timestamp: str
    nonce: str

    def to_xml(self) -> str:
        return (
            f"<xml><Encrypt>{cdata(self.encrypt)}</Encrypt>"
            f"<MsgSignature>{cdata(self.msg_signature)}</MsgSignature>"
            f"<TimeStamp>{self.timestamp}</TimeStamp>"
            f"<Nonce>{cdata(self.nonce)}</Nonce></xml>"
        )


class MessageCrypto:
    """Safe mode of one official account: `decrypt` what WeChat posts, `encrypt` our passive replies."""

    def __init__(self, token: str, encoding_aes_key: str, appid: str) -> None:
        if len(encoding_aes_key) != 43:
            raise MessageCryptoError("EncodingAESKey must be 43 characters")
        if not _AES_KEY.fullmatch(encoding_aes_key):
            raise MessageCryptoError("EncodingAESKey must be base64 characters (a-z, A-Z, 0-9, +, /)")
        key = base64.b64decode(encoding_aes_key + "=")  # 43 such characters and one "=": always 32 bytes
        self.token = token
        self.appid = appid
        self._key = key

    def __repr__(self) -> str:  # the token and key never reach a log line
        return f"MessageCrypto(appid={self.appid!r})"

    def _cipher(self) -> Any:
        return AES.new(self._key, AES.MODE_CBC, self._key[:16])

    def decrypt(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> str:
        """The plaintext XML inside `encrypted` (the Encrypt element), after checking msg_signature and appid."""
        if not _same(message_signature(self.token, timestamp, nonce, encrypted), msg_signature):
            raise MessageSignatureError("msg_signature does not match")
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MessageCryptoError("Encrypt is not valid base64") from exc
        if not data or len(data) % AES.block_size:
            raise MessageCryptoError("Encrypt length is not a whole number of AES blocks")
        try:
            plain = pkcs7_unpad(self._cipher().decrypt(data), MESSAGE_BLOCK)
        except DecryptError as exc:
            raise MessageCryptoError("bad padding (wrong EncodingAESKey or tampered data)") from exc
        if len(plain) < RANDOM_PREFIX + 4:
            raise MessageCryptoError("decrypted message too short")
        (length,) = struct.unpack(">I", plain[RANDOM_PREFIX : RANDOM_PREFIX + 4])
        start = RANDOM_PREFIX + 4
        if start + length > len(plain):
            raise MessageCryptoError("message length runs past the decrypted data")
        xml, appid = plain[start : start + length], plain[start + length :]
        if not hmac.compare_digest(appid, self.appid.encode("utf-8")):
            raise MessageCryptoError("the message is for another appid")
        try:
            return xml.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageCryptoError("decrypted message is not UTF-8") from exc

    def encrypt_text(self, xml: str, random16: bytes | None = None) -> str:
        """The Encrypt element's text for `xml` (base64 of the AES-256-CBC ciphertext)."""
        prefix = os.urandom(RANDOM_PREFIX) if random16 is None else random16
        if len(prefix) != RANDOM_PREFIX:
            raise MessageCryptoError("random16 must be 16 bytes")
        body = xml.encode("utf-8")
        plain = prefix + struct.pack(">I", len(body)) + body + self.appid.encode("utf-8")
        return base64.b64encode(self._cipher().encrypt(pkcs7_pad(plain, MESSAGE_BLOCK))).decode("ascii")

    def encrypt(
        self,
        xml: str,
        nonce: str | None = None,
        timestamp: int | str | None = None,
        random16: bytes | None = None,
    ) -> EncryptedReply:
        """Encrypts a passive reply; `EncryptedReply.to_xml()` is the response body.

        Pass the request's nonce and timestamp (or none, for fresh ones); `random16` only for fixed test vectors.
        """
        try:
            stamp = str(int(time.time()) if timestamp is None else int(timestamp))
        except ValueError as exc:
            raise MessageCryptoError("timestamp is not an integer") from exc
        nonce = nonce if nonce is not None else str(secrets.randbelow(10**10))
        encrypted = self.encrypt_text(xml, random16)
        return EncryptedReply(
            encrypt=encrypted,
            msg_signature=message_signature(self.token, stamp, nonce, encrypted),
            timestamp=stamp,
            nonce=nonce,
        )


# --- XML in ------------------------------------------------------------------------------------


def _refuse_doctype(*_args: Any) -> None:
    raise MessageXmlError("XML with a DTD or entities is refused")


class _NoDoctypeExpat:
    """What xmltodict's `expat` parameter takes: the stdlib parser, refusing any DOCTYPE as soon as it starts."""

    @staticmethod
    def ParserCreate(*args: Any, **kwargs: Any) -> Any:  # expat's own name
        parser = expat.ParserCreate(*args, **kwargs)
        parser.StartDoctypeDeclHandler = _refuse_doctype
        return parser


def parse_message(body: bytes) -> dict[str, str]:
    """The children of a flat <xml> message (or safe-mode envelope) as strings, in document order.

    Refused with MessageXmlError: more than MAX_MESSAGE_BYTES, not UTF-8, a DOCTYPE or entity declaration
    (XXE, billion laughs), nested or repeated elements, attributes, text outside the elements. Values keep
    their whitespace (a follower's text is theirs); an empty element is "".
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise MessageXmlError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageXmlError("message is not UTF-8") from exc
    try:
        # Parsed as UTF-8 whatever the declaration says. The parser refuses a DOCTYPE, and with it every entity
        # declaration (disable_entities refuses those too); a text search would refuse a follower typing "<!DOCTYPE".
        doc = xmltodict.parse(
            text, encoding="utf-8", expat=_NoDoctypeExpat, disable_entities=True, strip_whitespace=False
        )
    except MessageXmlError:
        raise
    except (ExpatError, ValueError, LookupError) as exc:
        raise MessageXmlError("malformed XML") from exc
    if not isinstance(doc, dict) or list(doc) != ["xml"]:
        raise MessageXmlError("expected an <xml> document")
    root = doc["xml"]
    if not isinstance(root, dict):  # <xml/> (None) or only text inside <xml>
        if root is not None and root.strip():
            raise MessageXmlError("text outside the elements of <xml>")
        return {}
    flat: dict[str, str] = {}
    for name, value in root.items():
        if name == "#text":
            if value.strip():
                raise MessageXmlError("text outside the elements of <xml>")
            continue
        if name.startswith("@"):
            raise MessageXmlError("attributes are not expected")
        if isinstance(value, (dict, list)):
            raise NestedMessageError(f"unexpected nested or repeated element <{name}>")
        flat[name] = "" if value is None else str(value)
    return flat


# --- passive replies out -----------------------------------------------------------------------


def cdata(value: str) -> str:
    """`value` as CDATA; a `]]>` inside is split across two sections so it survives the round trip."""
    text = str(value)
    if _NOT_XML_CHARS.search(text):
        raise ValueError("reply contains a character XML cannot carry")
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _header(to_user: str, from_user: str, create_time: int, msg_type: str) -> str:
    return (
        f"<ToUserName>{cdata(to_user)}</ToUserName>"
        f"<FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time)}</CreateTime>"
        f"<MsgType>{cdata(msg_type)}</MsgType>"
    )


def text_reply(to_user: str, from_user: str, content: str, create_time: int) -> str:
    """A passive text reply; `to_user` is the follower's openid (the message's FromUserName)."""
    return f"<xml>{_header(to_user, from_user, create_time, 'text')}<Content>{cdata(content)}</Content></xml>"


def image_reply(to_user: str, from_user: str, media_id: str, create_time: int) -> str:
    """A passive image reply; `media_id` comes from the media upload API."""
    return (
        f"<xml>{_header(to_user, from_user, create_time, 'image')}"
        f"<Image><MediaId>{cdata(media_id)}</MediaId></Image></xml>"
    )


def news_reply(
    to_user: str,
    from_user: str,
    articles: Sequence[Mapping[str, str]],
    create_time: int,
) -> str:
    """A passive news reply; each article is {title, description, pic_url, url}.

    WeChat shows only 1 article in a reply to a follower's message, and at most 8 otherwise.
    """
    if not 1 <= len(articles) <= MAX_NEWS_ARTICLES:
        raise ValueError(f"a news reply has 1 to {MAX_NEWS_ARTICLES} articles")
    items = "".join(
        "<item>"
        f"<Title>{cdata(article.get('title', ''))}</Title>"
        f"<Description>{cdata(article.get('description', ''))}</Description>"
        f"<PicUrl>{cdata(article.get('pic_url', ''))}</PicUrl>"
        f"<Url>{cdata(article.get('url', ''))}</Url>"
        "</item>"
        for article in articles
    )
    return (
        f"<xml>{_header(to_user, from_user, create_time, 'news')}"
        f"<ArticleCount>{len(articles)}</ArticleCount><Articles>{items}</Articles></xml>"
    )
