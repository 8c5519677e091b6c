"""providers/wechat/messages.py against WeChat's published examples, wechatpy as a second implementation, and
hostile input."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
import xmltodict
from Crypto.Cipher import AES
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException

from providers.wechat.crypto import pkcs7_pad
from providers.wechat.messages import (
    MAX_MESSAGE_BYTES,
    EncryptedReply,
    MessageCrypto,
    MessageCryptoError,
    MessageSignatureError,
    MessageXmlError,
    cdata,
    check_server_signature,
    image_reply,
    jssdk_signature,
    message_signature,
    news_reply,
    parse_message,
    server_signature,
    text_reply,
)

# The official WXBizMsgCrypt sample (Tencent's cryptoDemo: Sample.py / Sample.java, 2014): decrypt.
SAMPLE_TOKEN = "spamtest"
SAMPLE_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SAMPLE_APPID = "wx2c2769f8efd9abc2"
SAMPLE_TIMESTAMP = "1409735669"
SAMPLE_NONCE = "1320562132"
SAMPLE_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
SAMPLE_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2Ld"
    "JF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux"
    "5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJp"
    "XgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzp"
    "u9GhglF2PE="
)
SAMPLE_POST = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"
    "<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>"
    "<CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[abcdteT]]></Content><MsgId>6054768590064713728</MsgId>"
    f"<Encrypt><![CDATA[{SAMPLE_ENCRYPT}]]></Encrypt></xml>"
).encode()
SAMPLE_PLAINTEXT = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
    "<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
    "<CreateTime>1409735668</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[abcdteT]]></Content>\n"
    "<MsgId>6054768590064713728</MsgId>\n"
    "</xml>"
)

# The official encrypt example (cryptoDemo Java/src/com/qq/weixin/mp/aes/WXBizMsgCryptTest.java): fixed random.
EXAMPLE_TOKEN = "pamtest"
EXAMPLE_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
EXAMPLE_APPID = "wxb11529c136998cb6"
EXAMPLE_TIMESTAMP = "1409304348"
EXAMPLE_NONCE = "xxxxxx"
EXAMPLE_RANDOM = b"aaaabbbbccccdddd"
EXAMPLE_REPLY = "我是中文abcd123"
EXAMPLE_ENCRYPT = "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
EXAMPLE_REPLY2 = (
    "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName>"
    "<FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1407743423</CreateTime>"
    "<MsgType><![CDATA[video]]></MsgType><Video><MediaId>"
    "<![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId>"
    "<Title><![CDATA[testCallBackReplyVideo]]></Title>"
    "<Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>"
)
EXAMPLE_ENCRYPT2 = (
    "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+w"
    "LMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9e"
    "nGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ"
    "38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka04"
    "2OlUb1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ"
    "9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb"
)

# JS-SDK signature: the official example (JS-SDK docs, appendix 1; WeCom's "JS-SDK 签名算法" page).
JSSDK_TICKET = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
JSSDK_SIGNATURE = "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


def independent_sha1_of_sorted(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def sample_crypto() -> MessageCrypto:
    return MessageCrypto(SAMPLE_TOKEN, SAMPLE_KEY, SAMPLE_APPID)


def example_crypto() -> MessageCrypto:
    return MessageCrypto(EXAMPLE_TOKEN, EXAMPLE_KEY, EXAMPLE_APPID)


def raw_encrypt(key43: str, plain: bytes) -> str:
    """AES-256-CBC exactly as WeChat does it, with no padding added: the tests choose the padding."""
    key = base64.b64decode(key43 + "=")
    return base64.b64encode(AES.new(key, AES.MODE_CBC, key[:16]).encrypt(plain)).decode()


def signed(crypto: MessageCrypto, encrypted: str) -> tuple[str, str, str, str]:
    """(msg_signature, timestamp, nonce, encrypted) that pass the signature check, to reach the checks after it."""
    timestamp, nonce = "1700000000", "424242"
    return message_signature(crypto.token, timestamp, nonce, encrypted), timestamp, nonce, encrypted


# --- published vectors -------------------------------------------------------------------------


def test_server_signature_published_example():
    # wechatpy's tests/test_utils.py: token "test", timestamp 1410685589, nonce "test"
    assert server_signature("test", "1410685589", "test") == "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"
    assert check_server_signature("test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff", "1410685589", "test")


@pytest.mark.parametrize(
    "signature",
    ["f21891de399b4e33a1a93c9a7b8a8fffb5a443fe", "", "F21891DE399B4E33A1A93C9A7B8A8FFFB5A443FF", "签名"],
)
def test_server_signature_refuses_anything_else(signature):
    assert not check_server_signature("test", signature, "1410685589", "test")


def test_server_signature_is_over_the_sorted_parts():
    assert server_signature("t", "2", "1") == independent_sha1_of_sorted("t", "2", "1")
    assert not check_server_signature(
        "other-token", server_signature("test", "1410685589", "test"), "1410685589", "test"
    )


def test_jssdk_signature_official_example():
    assert (
        jssdk_signature(JSSDK_TICKET, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value")
        == JSSDK_SIGNATURE
    )
    assert (
        jssdk_signature(JSSDK_TICKET, "Wm3WZYTPz0wzccnW", "1414587457", "http://mp.weixin.qq.com?params=value")
        == JSSDK_SIGNATURE
    )


def test_wxbizmsgcrypt_sample_msg_signature():
    assert message_signature(SAMPLE_TOKEN, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT) == SAMPLE_MSG_SIGNATURE


def test_wxbizmsgcrypt_sample_decrypts_byte_for_byte():
    envelope = parse_message(SAMPLE_POST)
    plain = sample_crypto().decrypt(SAMPLE_MSG_SIGNATURE, SAMPLE_TIMESTAMP, SAMPLE_NONCE, envelope["Encrypt"])
    assert plain == SAMPLE_PLAINTEXT
    message = parse_message(plain.encode())
    assert message == {
        "ToUserName": "gh_10f6c3c3ac5a",
        "FromUserName": "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
        "CreateTime": "1409735668",
        "MsgType": "text",
        "Content": "abcdteT",
        "MsgId": "6054768590064713728",
    }


@pytest.mark.parametrize(
    ("reply", "published"),
    [(EXAMPLE_REPLY, EXAMPLE_ENCRYPT), (EXAMPLE_REPLY2, EXAMPLE_ENCRYPT2)],
    ids=["afterAesEncrypt", "afterAesEncrypt2"],
)
def test_official_encrypt_example_byte_for_byte(reply, published):
    result = example_crypto().encrypt(reply, EXAMPLE_NONCE, EXAMPLE_TIMESTAMP, random16=EXAMPLE_RANDOM)
    assert result.encrypt == published
    # The example publishes no MsgSignature: it is the protocol's sha1, computed here independently.
    assert result.msg_signature == independent_sha1_of_sorted(
        EXAMPLE_TOKEN, EXAMPLE_TIMESTAMP, EXAMPLE_NONCE, published
    )
    assert (result.timestamp, result.nonce) == (EXAMPLE_TIMESTAMP, EXAMPLE_NONCE)
    assert example_crypto().decrypt(result.msg_signature, EXAMPLE_TIMESTAMP, EXAMPLE_NONCE, published) == reply


def test_encrypted_reply_xml():
    result = example_crypto().encrypt(EXAMPLE_REPLY, EXAMPLE_NONCE, EXAMPLE_TIMESTAMP, random16=EXAMPLE_RANDOM)
    assert result.to_xml() == (
        f"<xml><Encrypt><![CDATA[{EXAMPLE_ENCRYPT}]]></Encrypt>"
        f"<MsgSignature><![CDATA[{result.msg_signature}]]></MsgSignature>"
        f"<TimeStamp>{EXAMPLE_TIMESTAMP}</TimeStamp><Nonce><![CDATA[{EXAMPLE_NONCE}]]></Nonce></xml>"
    )
    assert parse_message(result.to_xml().encode()) == {
        "Encrypt": EXAMPLE_ENCRYPT,
        "MsgSignature": result.msg_signature,
        "TimeStamp": EXAMPLE_TIMESTAMP,
        "Nonce": EXAMPLE_NONCE,
    }


def test_encrypt_defaults_are_fresh():
    crypto = example_crypto()
    first, second = crypto.encrypt("<xml/>"), crypto.encrypt("<xml/>")
    assert first.encrypt != second.encrypt  # a random prefix each time
    assert first.timestamp.isdigit() and first.nonce.isdigit()
    assert crypto.decrypt(first.msg_signature, first.timestamp, first.nonce, first.encrypt) == "<xml/>"
    assert isinstance(first, EncryptedReply)


# --- wechatpy as a second implementation --------------------------------------------------------


def test_wechatpy_decrypts_what_we_encrypt():
    xml = text_reply("oyORnuP8q7ou2gfYjqLzSIWZf0rs", "gh_10f6c3c3ac5a", "你好 ]]> & <b>", 1409735669)
    reply = sample_crypto().encrypt(xml, "1320562132", "1409735669")
    theirs = WeChatCrypto(SAMPLE_TOKEN, SAMPLE_KEY, SAMPLE_APPID)
    assert theirs.decrypt_message(reply.to_xml(), reply.msg_signature, reply.timestamp, reply.nonce) == xml


def test_we_decrypt_what_wechatpy_encrypts():
    xml = "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Content><![CDATA[中文]]></Content></xml>"
    body = WeChatCrypto(SAMPLE_TOKEN, SAMPLE_KEY, SAMPLE_APPID).encrypt_message(xml, "987654", "1700000000")
    envelope = parse_message(body.encode())
    assert sample_crypto().decrypt(envelope["MsgSignature"], "1700000000", "987654", envelope["Encrypt"]) == xml


def test_wechatpy_refuses_our_reply_under_another_token():
    reply = sample_crypto().encrypt("<xml/>", "1", "2")
    with pytest.raises(InvalidSignatureException):
        WeChatCrypto("not-the-token", SAMPLE_KEY, SAMPLE_APPID).decrypt_message(
            reply.to_xml(), reply.msg_signature, reply.timestamp, reply.nonce
        )


# --- hostile or broken input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg_signature",
    [SAMPLE_MSG_SIGNATURE[:-1] + "0", "", "5D197AAFFBA7E9B25A30732F161A50DEE96BD5FA", "签名"],
)
def test_bad_msg_signature(msg_signature):
    with pytest.raises(MessageSignatureError):
        sample_crypto().decrypt(msg_signature, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT)


def test_plain_signature_is_not_a_msg_signature():
    # Safe mode signs the Encrypt element too: the URL's plain `signature` must not pass.
    plain_signature = server_signature(SAMPLE_TOKEN, SAMPLE_TIMESTAMP, SAMPLE_NONCE)
    with pytest.raises(MessageSignatureError):
        sample_crypto().decrypt(plain_signature, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT)


def test_another_appid_inside_the_ciphertext():
    other = MessageCrypto(SAMPLE_TOKEN, SAMPLE_KEY, "wx0000000000000000")
    encrypted = other.encrypt_text("<xml><Content>hi</Content></xml>")
    with pytest.raises(MessageCryptoError, match="another appid"):
        sample_crypto().decrypt(*signed(sample_crypto(), encrypted))
    # the sample itself, read as another account's message
    with pytest.raises(MessageCryptoError, match="another appid"):
        other.decrypt(SAMPLE_MSG_SIGNATURE, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT)


def test_appid_prefix_is_not_enough():
    crypto = sample_crypto()
    encrypted = MessageCrypto(SAMPLE_TOKEN, SAMPLE_KEY, SAMPLE_APPID + "x").encrypt_text("<xml/>")
    with pytest.raises(MessageCryptoError, match="another appid"):
        crypto.decrypt(*signed(crypto, encrypted))


@pytest.mark.parametrize(
    "tail",
    [bytes([0]) * 32, bytes([33]) * 32, b"\x01" * 31 + b"\x03", b"x" * 29 + b"\x02\x03\x03"],
    ids=["zero", "over-32", "inconsistent", "short-run"],
)
def test_bad_padding(tail):
    crypto = sample_crypto()
    body = b"<xml/>" + SAMPLE_APPID.encode()
    plain = b"r" * 16 + struct.pack(">I", 6) + body
    plain += b"p" * (-len(plain) % 32)  # whole blocks, then a last block with bad padding
    encrypted = raw_encrypt(SAMPLE_KEY, plain + tail)
    with pytest.raises(MessageCryptoError, match="bad padding"):
        crypto.decrypt(*signed(crypto, encrypted))


def test_sixteen_byte_padding_is_not_wechats():
    crypto = sample_crypto()
    plain = b"r" * 16 + struct.pack(">I", 6) + b"<xml/>" + SAMPLE_APPID.encode()  # 44 bytes
    padded = pkcs7_pad(plain, 16)
    assert len(padded) == 48  # whole AES blocks, but not whole 32-byte blocks
    with pytest.raises(MessageCryptoError, match="bad padding"):
        crypto.decrypt(*signed(crypto, raw_encrypt(SAMPLE_KEY, padded)))


def test_length_running_past_the_data():
    crypto = sample_crypto()
    plain = b"r" * 16 + struct.pack(">I", 10_000) + b"<xml/>" + SAMPLE_APPID.encode()
    encrypted = raw_encrypt(SAMPLE_KEY, pkcs7_pad(plain, 32))
    with pytest.raises(MessageCryptoError, match="length"):
        crypto.decrypt(*signed(crypto, encrypted))


def test_too_short_after_padding():
    crypto = sample_crypto()
    encrypted = raw_encrypt(SAMPLE_KEY, pkcs7_pad(b"r" * 10, 32))
    with pytest.raises(MessageCryptoError, match="too short"):
        crypto.decrypt(*signed(crypto, encrypted))


@pytest.mark.parametrize(
    ("encrypted", "match"),
    [("not base64!", "base64"), (base64.b64encode(b"x" * 20).decode(), "blocks"), ("", "base64|blocks")],
)
def test_broken_ciphertext(encrypted, match):
    crypto = sample_crypto()
    with pytest.raises(MessageCryptoError, match=match):
        crypto.decrypt(*signed(crypto, encrypted))


def test_not_utf8_inside():
    crypto = sample_crypto()
    plain = b"r" * 16 + struct.pack(">I", 2) + b"\xff\xfe" + SAMPLE_APPID.encode()
    encrypted = raw_encrypt(SAMPLE_KEY, pkcs7_pad(plain, 32))
    with pytest.raises(MessageCryptoError, match="UTF-8"):
        crypto.decrypt(*signed(crypto, encrypted))


@pytest.mark.parametrize(
    "key",
    [SAMPLE_KEY[:-1], SAMPLE_KEY + "A", "", SAMPLE_KEY[:-1] + "!", SAMPLE_KEY[:-1] + "="],
    ids=["42-chars", "44-chars", "empty", "not-base64", "padding-char"],
)
def test_encoding_aes_key_must_be_43_base64_chars(key):
    with pytest.raises(MessageCryptoError, match="EncodingAESKey"):
        MessageCrypto(SAMPLE_TOKEN, key, SAMPLE_APPID)


def test_repr_hides_token_and_key():
    assert SAMPLE_TOKEN not in repr(sample_crypto()) and SAMPLE_KEY not in repr(sample_crypto())


def test_encrypt_refuses_bad_arguments():
    with pytest.raises(MessageCryptoError, match="random16"):
        example_crypto().encrypt("<xml/>", "1", "2", random16=b"short")
    with pytest.raises(MessageCryptoError, match="timestamp"):
        example_crypto().encrypt("<xml/>", "1", "12:00")


# --- XML in -------------------------------------------------------------------------------------

DOC_TEXT_MESSAGE = (
    b"<xml>\n  <ToUserName><![CDATA[toUser]]></ToUserName>\n  <FromUserName><![CDATA[fromUser]]></FromUserName>\n"
    b"  <CreateTime>1348831860</CreateTime>\n  <MsgType><![CDATA[text]]></MsgType>\n"
    b"  <Content><![CDATA[this is a test]]></Content>\n  <MsgId>1234567890123456</MsgId>\n"
    b"  <MsgDataId>xxxx</MsgDataId>\n  <Idx>xxxx</Idx>\n</xml>"
)


def test_parse_documented_text_message():
    assert parse_message(DOC_TEXT_MESSAGE) == {
        "ToUserName": "toUser",
        "FromUserName": "fromUser",
        "CreateTime": "1348831860",
        "MsgType": "text",
        "Content": "this is a test",
        "MsgId": "1234567890123456",
        "MsgDataId": "xxxx",
        "Idx": "xxxx",
    }


def test_parse_keeps_values_as_sent():
    body = "<xml><Content><![CDATA[  两个空格 & <b> ]]></Content><EventKey></EventKey><A/></xml>".encode()
    assert parse_message(body) == {"Content": "  两个空格 & <b> ", "EventKey": "", "A": ""}
    assert parse_message(b"<xml><Content>a &amp; b</Content></xml>") == {"Content": "a & b"}
    assert parse_message(b"<xml/>") == {}
    assert parse_message(b"<xml>\n</xml>") == {}


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x "boom">]><xml><Content>&x;</Content></xml>',
        b'<!DOCTYPE xml SYSTEM "http://evil.example/x.dtd"><xml><Content>hi</Content></xml>',
        b'<!doctype xml [<!entity x SYSTEM "file:///etc/passwd">]><xml><Content>&x;</Content></xml>',
        b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><xml><a>&lol2;</a></xml>',
        b"<xml><!ENTITY x 'y'><a>1</a></xml>",
    ],
    ids=["internal-entity", "external-dtd", "lower-case-xxe", "billion-laughs", "stray-entity"],
)
def test_parse_refuses_doctype_and_entities(body):
    with pytest.raises(MessageXmlError):
        parse_message(body)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<xml><ScanCodeInfo><ScanType>qrcode</ScanType></ScanCodeInfo></xml>", "nested"),
        (b"<xml><a>1</a><a>2</a></xml>", "repeated"),
        (b'<xml><a x="1">1</a></xml>', "nested"),
        (b'<xml id="1"><a>1</a></xml>', "attributes"),
        (b"<xml>stray<a>1</a></xml>", "text outside"),
        (b"<xml>only text</xml>", "text outside"),
        (b"<root><a>1</a></root>", "expected an <xml>"),
        (b"<xml><a>1</a>", "malformed"),
        (b"", "malformed"),
        (b"not xml", "malformed"),
        ("<xml><a>é</a></xml>".encode("latin-1"), "UTF-8"),
        (b"<xml><a>" + b"x" * MAX_MESSAGE_BYTES + b"</a></xml>", "larger"),
    ],
)
def test_parse_refuses_what_wechat_never_sends(body, match):
    with pytest.raises(MessageXmlError, match=match):
        parse_message(body)


def test_parse_takes_doctype_lookalikes_in_a_followers_text():
    body = "<xml><MsgType>text</MsgType><Content><![CDATA[<!DOCTYPE html><!ENTITY x>]]></Content></xml>"
    assert parse_message(body.encode()) == {"MsgType": "text", "Content": "<!DOCTYPE html><!ENTITY x>"}


def test_parse_names_the_doctype():
    with pytest.raises(MessageXmlError, match="DTD"):
        parse_message(b"<!DOCTYPE xml><xml><a>1</a></xml>")


def test_parse_ignores_a_lying_encoding_declaration():
    body = '<?xml version="1.0" encoding="ISO-8859-1"?><xml><a>中文</a></xml>'.encode()
    assert parse_message(body) == {"a": "中文"}


# --- passive replies ------------------------------------------------------------------------------


def test_text_reply_documented_shape():
    assert text_reply("toUser", "fromUser", "你好", 12345678) == (
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName>"
        "<CreateTime>12345678</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[你好]]></Content></xml>"
    )


def test_image_reply_documented_shape():
    assert image_reply("toUser", "fromUser", "media_id", 12345678) == (
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName>"
        "<CreateTime>12345678</CreateTime><MsgType><![CDATA[image]]></MsgType>"
        "<Image><MediaId><![CDATA[media_id]]></MediaId></Image></xml>"
    )


def test_news_reply_documented_shape():
    article = {"title": "title1", "description": "description1", "pic_url": "picurl", "url": "url"}
    assert news_reply("toUser", "fromUser", [article], 12345678) == (
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName>"
        "<CreateTime>12345678</CreateTime><MsgType><![CDATA[news]]></MsgType><ArticleCount>1</ArticleCount>"
        "<Articles><item><Title><![CDATA[title1]]></Title><Description><![CDATA[description1]]></Description>"
        "<PicUrl><![CDATA[picurl]]></PicUrl><Url><![CDATA[url]]></Url></item></Articles></xml>"
    )


def test_news_reply_article_count():
    article = {"title": "t", "description": "d", "pic_url": "https://p", "url": "https://u"}
    assert "<ArticleCount>8</ArticleCount>" in news_reply("to", "from", [article] * 8, 1)
    for articles in ([], [article] * 9):
        with pytest.raises(ValueError, match="1 to 8"):
            news_reply("to", "from", articles, 1)


def test_cdata_splits_the_terminator():
    assert cdata("a]]>b") == "<![CDATA[a]]]]><![CDATA[>b]]>"
    assert cdata("]]>]]>") == "<![CDATA[]]]]><![CDATA[>]]]]><![CDATA[>]]>"


@pytest.mark.parametrize("content", ["a]]>b", "]]>", "x]]]]>y", "<![CDATA[nested]]>", "]]", "end]]"])
def test_cdata_escape_round_trip(content):
    parsed = parse_message(text_reply("to]]>", "from", content, 1).encode())
    assert parsed["Content"] == content
    assert parsed["ToUserName"] == "to]]>"


def test_news_escape_round_trip_through_xmltodict():
    article = {"title": "a]]>b", "description": "<script>", "pic_url": "https://p/?a=1&b=2", "url": "]]>"}
    doc = xmltodict.parse(news_reply("to", "from", [article], 1))["xml"]["Articles"]["item"]
    assert (doc["Title"], doc["Description"], doc["PicUrl"], doc["Url"]) == (
        "a]]>b",
        "<script>",
        article["pic_url"],
        "]]>",
    )


def test_reply_refuses_characters_xml_cannot_carry():
    with pytest.raises(ValueError, match="XML cannot carry"):
        text_reply("to", "from", "bell\x07", 1)


def test_safe_mode_reply_round_trip():
    crypto = sample_crypto()
    xml = text_reply("oyOR", "gh_10f6c3c3ac5a", "收到 ]]> 了", 1409735669)
    envelope = parse_message(crypto.encrypt(xml, "55", "1409735669").to_xml().encode())
    plain = crypto.decrypt(envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"])
    assert parse_message(plain.encode())["Content"] == "收到 ]]> 了"
