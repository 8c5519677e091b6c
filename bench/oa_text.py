"""The oa_text scenario of bench/run.sh: a follower's text message to the official account's server URL, in
safe mode, as WeChat posts it; the keyword replies it is routed to; the check of the replies the server kept.

Imported by bench/fixtures.py after django.setup(), in a process with exactly the workers' settings (so the
same WECHAT_OA_TOKEN, WECHAT_OA_AES_KEY and WECHAT_OA_APPID: the sandbox defaults under SANDBOX=1).

The server refuses a `timestamp` more than 5 minutes off, so setup only counts each phase's messages
(WORK/oa_text-PHASE.plan) and `fixtures.py messages` builds and signs them right before the phase.
Each request is one line of WORK/oa_text-PHASE.lines: MsgId TAB the path with its query (signature,
timestamp, nonce, openid, encrypt_type=aes, msg_signature) TAB the envelope body (ToUserName, Encrypt).
WORK/oa_text-PHASE.keys has, per MsgId, the shared-cache key the server claims it under, the follower and
which text was sent, for `check`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache

from config import providers
from officialaccount import services
from officialaccount.models import KeywordReply
from providers.wechat.messages import (
    MessageCrypto,
    MessageCryptoError,
    MessageXmlError,
    cdata,
    parse_message,
    server_signature,
)

PATH = "/wechat/official-account/"
ACCOUNT = "gh_bench0000001"  # the account's original id: ToUserName of what WeChat posts
FOLLOWERS = 1000
PHASE_NUMBERS = {"warmup": 0, "probe": 99}  # r1 -> 1, r2 -> 2, ...

Match = KeywordReply.Match
HOURS = "We answer from 9:00 to 18:00, Monday to Friday."
REFUND = "To ask for a refund, open the order under Account > My orders and tap Refund."
DEFAULT = "Thanks for your message: we will answer here within a working day."
# What a small account's staff keep in the admin: (match, keyword, content).
REPLIES = (
    (Match.EXACT, "hours", HOURS),
    (Match.EXACT, "address", "Find us at 1 Bench Road, Shanghai."),
    (Match.CONTAINS, "refund", REFUND),
    (Match.CONTAINS, "invoice", "Invoices are under Account > My orders > Invoice."),
    (Match.DEFAULT, "", DEFAULT),
)
# What followers send, in turn, and the reply each gets: a keyword (any case, spaces around it), a keyword
# inside a sentence, and a text no keyword matches.
TEXTS = (
    ("  Hours ", HOURS),
    ("I would like a refund for my last order", REFUND),
    ("hello, is anyone there?", DEFAULT),
)


def crypto() -> MessageCrypto:
    """The server's own safe-mode crypto, from the same settings as the workers'."""
    built = providers.message_crypto()
    if built is None:
        raise SystemExit("oa_text: no WECHAT_OA_AES_KEY in the workers' settings (SANDBOX=1 sets one)")
    return built


def create_replies() -> None:
    for match, keyword, content in REPLIES:
        KeywordReply.objects.get_or_create(match=match, keyword=keyword, defaults={"content": content})


def msg_id(run: str, phase: str, n: int) -> str:
    """A fresh MsgId per request and run, 19 digits (WeChat's is a 64-bit number)."""
    number = PHASE_NUMBERS.get(phase)
    if number is None:
        number = int(phase[1:])
    return f"{int(run, 16):010d}{number:02d}{n:07d}"


def message(msgid: str, openid: str, content: str, create_time: int) -> dict[str, str]:
    return {
        "ToUserName": ACCOUNT,
        "FromUserName": openid,
        "CreateTime": str(create_time),
        "MsgType": "text",
        "Content": content,
        "MsgId": msgid,
    }


def request(box: MessageCrypto, fields: dict[str, str]) -> tuple[str, str]:
    """(the path with its query, the body) of a safe-mode POST of one message, as WeChat signs it."""
    xml = "<xml>" + "".join(f"<{name}>{_value(name, value)}</{name}>" for name, value in fields.items()) + "</xml>"
    sealed = box.encrypt(xml)  # a fresh timestamp and nonce; msg_signature over them and the Encrypt
    query = {
        "signature": server_signature(box.token, sealed.timestamp, sealed.nonce),
        "timestamp": sealed.timestamp,
        "nonce": sealed.nonce,
        "openid": fields["FromUserName"],
        "encrypt_type": "aes",
        "msg_signature": sealed.msg_signature,
    }
    body = f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName><Encrypt>{cdata(sealed.encrypt)}</Encrypt></xml>"
    return f"{PATH}?{urlencode(query)}", body


def _value(name: str, value: str) -> str:
    return value if name in ("CreateTime", "MsgId") else cdata(value)


def messages(run: str, phase: str, count: int) -> Iterator[tuple[int, dict[str, str]]]:
    """(which text, the message) of each request of a phase: followers and texts in turn."""
    now = int(time.time())
    for n in range(count):
        openid = f"o{run}bench{n % FOLLOWERS:04d}"
        which = n % len(TEXTS)
        yield which, message(msg_id(run, phase, n), openid, TEXTS[which][0], now)


def plan_phase(work: Path, run: str, phase: str, count: int) -> None:
    """At setup: how many messages PHASE takes (WORK/oa_text-PHASE.plan), for `build_phase` to build."""
    (work / f"oa_text-{phase}.plan").write_text(f"{run} {count}\n", encoding="utf-8")


def build_phase(work: Path, phase: str) -> None:
    """Right before PHASE runs: its messages, signed now (the server refuses a timestamp 5 minutes off)."""
    started = time.monotonic()
    run, count = (work / f"oa_text-{phase}.plan").read_text(encoding="utf-8").split()
    write_phase(work, run, phase, int(count))
    print(f"[bench] built {count} oa_text messages for {phase} in {time.monotonic() - started:.1f} s", file=sys.stderr)


def write_phase(work: Path, run: str, phase: str, count: int) -> None:
    box = crypto()
    with (
        open(work / f"oa_text-{phase}.lines", "w", encoding="utf-8") as lines,
        open(work / f"oa_text-{phase}.keys", "w", encoding="utf-8") as keys,
    ):
        for which, fields in messages(run, phase, count):
            path, body = request(box, fields)
            assert "\t" not in body and "\n" not in body
            key = services.dedup_key(settings.WECHAT_OA_APPID, fields)
            lines.write(f"{fields['MsgId']}\t{path}\t{body}\n")
            keys.write(f"{fields['MsgId']}\t{key}\t{fields['FromUserName']}\t{which}\n")


def read_reply(box: MessageCrypto, body: bytes) -> dict[str, str] | None:
    """The passive reply inside an encrypted answer, its msg_signature and appid checked as WeChat does;
    None when it does not decrypt or verify."""
    try:
        envelope = parse_message(body)
        plain = box.decrypt(envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"])
        return parse_message(plain.encode("utf-8"))
    except (MessageCryptoError, MessageXmlError, KeyError):
        return None


def expected_reply(reply: dict[str, str], openid: str, which: int) -> bool:
    return (
        reply.get("ToUserName") == openid
        and reply.get("FromUserName") == ACCOUNT
        and reply.get("MsgType") == "text"
        and reply.get("Content") == TEXTS[which][1]
    )


# --- after a phase ------------------------------------------------------------------------------


def _answers(path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"ok": set(), "bad": set(), "inflight": set()}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            kind, _, number = line.strip().partition(" ")
            out[kind].add(number)
    return out


def _stored(keys: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for start in range(0, len(keys), 1000):
        found.update(cache.get_many(keys[start : start + 1000]))
    return found


def check(work: Path, phase: str, good: int) -> str:
    """One VERIFY line: every message answered well has its rendered reply kept under its dedup key (the
    reply to this follower, with the text its message asked for), no message never sent has a key, and
    the in-flight ones (sent, no answer read when wrk stopped) are counted. Run right after the phase:
    the replies are kept services.REPLY_SECONDS (300 s)."""
    sent: dict[str, tuple[str, str, int]] = {}
    with open(work / f"oa_text-{phase}.keys", encoding="utf-8") as fh:
        for line in fh:
            msgid, key, openid, text = line.rstrip("\n").split("\t")
            sent[msgid] = (key, openid, int(text))
    problems: list[str] = []
    try:
        answers = _answers(work / f"{phase}-oa_text.txt.ids")
    except OSError:
        answers = {"ok": set(), "bad": set(), "inflight": set()}
        problems.append("no answers file")
    stored = _stored([key for key, _, _ in sent.values()])
    ok, inflight = answers["ok"], answers["inflight"]
    if len(ok) != good:
        problems.append(f"{len(ok)} good answers in the answers file, wrk counted {good}")
    kept = wrong = 0
    for msgid in ok:
        key, openid, which = sent[msgid]
        value = stored.get(key)
        if isinstance(value, dict):
            kept += 1
            if not expected_reply(parse_message(str(value["reply"]).encode("utf-8")), openid, which):
                wrong += 1
    if kept != len(ok):
        problems.append(f"{len(ok) - kept} well-answered messages have no reply kept")
    if wrong:
        problems.append(f"{wrong} kept replies are not the expected text reply")
    inflight_kept = sum(isinstance(stored.get(sent[msgid][0]), dict) for msgid in inflight)
    unsent = set(sent) - ok - answers["bad"] - inflight
    unsent_kept = sum(sent[msgid][0] in stored for msgid in unsent)
    if unsent_kept:
        problems.append(f"{unsent_kept} messages never sent have a key")
    figures = {
        "mode": "oa_text",
        "phase": phase,
        "ok": int(not problems),
        "good": len(ok),
        "kept": kept,
        "bad": len(answers["bad"]),
        "inflight": len(inflight),
        "inflight_kept": inflight_kept,
        "unsent": len(unsent),
        "unsent_kept": unsent_kept,
    }
    line = "VERIFY " + " ".join(f"{k}={v}" for k, v in figures.items())
    return line + (" problems=" + ";".join(p.replace(" ", "_") for p in problems) if problems else "")
