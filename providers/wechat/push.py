"""Pushes to WeChat users: official-account template messages, mini-program subscribe messages and
customer-service messages.

One call, one answer: every WeChat answer and every transport failure becomes a SendResult whose outcome
says what a batch does next (send on, skip the user, stop, pause for the quota, retry later, or leave a
message that may have arrived alone). The calls go
through WechatClient's plumbing: one pooled session, explicit timeouts, and on 40001/40014/42001 the shared
token store's expire-if-same and one retry.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from providers.http import ProviderError, ProviderUnavailable
from providers.wechat.api import WechatClient
from providers.wechat.token import TOKEN_ERRCODES

logger = logging.getLogger(__name__)

TEMPLATE_PATH = "/cgi-bin/message/template/send"
SUBSCRIBE_PATH = "/cgi-bin/message/subscribe/send"
CUSTOM_PATH = "/cgi-bin/message/custom/send"


class PushOutcome(enum.Enum):
    SENT = "SENT"  # errcode 0 (msgid kept)
    SKIPPED = "SKIPPED"  # the user cannot get it (refused, no subscription left, not following, 48 h over)
    STOP = "STOP"  # the message itself is wrong (bad data or template): the batch stops after a few identical
    QUOTA = "QUOTA"  # the daily quota is used up: the batch pauses until the reset
    RETRY = "RETRY"  # busy, per-minute limit, timeouts, 5xx, an unusable answer: retried with backoff
    # Sent, and no answer says what became of it (a read timeout, a lost connection, a garbled answer): WeChat
    # may have delivered it, and only template messages carry a key (client_msg_id) that makes a resend safe.
    UNKNOWN = "UNKNOWN"
    FAILED = "FAILED"  # any other errcode: not retried


# 43101: refused / no one-time subscription left; 43004: not following; 45015: customer-service message
# outside the 48 hours after the user's last interaction.
SKIP_ERRCODES = frozenset({43101, 43004, 45015})
# 47003: bad data or argument (errmsg names the field); 40037: bad template id.
STOP_ERRCODES = frozenset({47003, 40037})
QUOTA_ERRCODES = frozenset({45009})
# -1: system busy; 45011: per-minute frequency limit.
RETRY_ERRCODES = frozenset({-1, 45011})

# "argument invalid! data.thing1.value is empty rid: ..." -> "thing1"
_DATA_FIELD = re.compile(r"\bdata\.([A-Za-z0-9_]+)")


@dataclass(frozen=True)
class SendResult:
    outcome: PushOutcome
    errcode: int = 0
    errmsg: str = ""
    msgid: str = ""
    field: str = ""  # for STOP: the data field WeChat named, when its errmsg names one
    maybe_received: bool = False  # sent, and the answer lost: WeChat may have delivered it


def outcome_for(errcode: int) -> PushOutcome:
    """What a batch does after WeChat answered `errcode`."""
    if errcode == 0:
        return PushOutcome.SENT
    if errcode in SKIP_ERRCODES:
        return PushOutcome.SKIPPED
    if errcode in STOP_ERRCODES:
        return PushOutcome.STOP
    if errcode in QUOTA_ERRCODES:
        return PushOutcome.QUOTA
    # A token still rejected after the one retry: nothing was sent, and the next try fetches a new one.
    if errcode in RETRY_ERRCODES or errcode in TOKEN_ERRCODES:
        return PushOutcome.RETRY
    return PushOutcome.FAILED


def field_named(errmsg: str) -> str:
    """The data field a 47003 errmsg names ("argument invalid! data.thing1.value ..." -> "thing1"), or ""."""
    match = _DATA_FIELD.search(errmsg)
    return match.group(1) if match else ""


def _utf8_json(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Request kwargs for a JSON body in plain UTF-8 (not \\uXXXX escapes), as WeChat's examples send it."""
    return {
        "data": json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        "headers": {"Content-Type": "application/json; charset=utf-8"},
    }


def _values(data: Mapping[str, str]) -> dict[str, dict[str, str]]:
    return {key: {"value": value} for key, value in data.items()}


class PushClient:
    """Sends one message per call to one user of `api`'s app (its access token shared with every client)."""

    def __init__(self, api: WechatClient) -> None:
        self.api = api

    def __repr__(self) -> str:
        return f"PushClient(appid={self.api.config.appid!r})"

    def prepare(self) -> None:
        """Has the app's access token at hand (the shared store's, or a new one from WeChat) before a run of
        sends, so that their rate-limit slots are not spent waiting for it. A failure here is the first
        send's to report."""
        try:
            self.api.tokens.get()
        except (ProviderError, ProviderUnavailable, TimeoutError) as exc:
            logger.info("push: no access token of %s yet: %s", self.api.config.appid, exc)

    def send_template(
        self,
        *,
        openid: str,
        template_id: str,
        data: Mapping[str, str],
        url: str = "",
        miniprogram: tuple[str, str] | None = None,
        client_msg_id: str = "",
    ) -> SendResult:
        """An official-account template message; `miniprogram` is (appid, pagepath) and wins over `url`.
        WeChat sends one message per openid and `client_msg_id` within 10 minutes, so a send whose answer
        was lost is retried with the same id (RETRY); without one it is UNKNOWN."""
        body: dict[str, Any] = {"touser": openid, "template_id": template_id}
        if url:
            body["url"] = url
        if miniprogram is not None:
            body["miniprogram"] = {"appid": miniprogram[0], "pagepath": miniprogram[1]}
        if client_msg_id:
            body["client_msg_id"] = client_msg_id
        body["data"] = _values(data)
        return self._send("template", TEMPLATE_PATH, body, resendable=bool(client_msg_id))

    def send_subscribe(
        self,
        *,
        openid: str,
        template_id: str,
        data: Mapping[str, str],
        page: str = "",
        miniprogram_state: str = "formal",
        lang: str = "zh_CN",
    ) -> SendResult:
        """A mini-program subscribe message: it uses up one of the user's one-time subscriptions."""
        body: dict[str, Any] = {"touser": openid, "template_id": template_id}
        if page:
            body["page"] = page
        body.update(data=_values(data), miniprogram_state=miniprogram_state, lang=lang)
        return self._send("subscribe", SUBSCRIBE_PATH, body)

    def send_custom(self, *, openid: str, message: Mapping[str, Any]) -> SendResult:
        """A customer-service message, e.g. {"msgtype": "text", "text": {"content": "..."}}; WeChat takes it only
        within 48 hours of the user's last interaction (45015 after)."""
        msgtype = message.get("msgtype")
        if not isinstance(msgtype, str) or not isinstance(message.get(msgtype), Mapping):
            raise ValueError('a customer-service message is {"msgtype": T, T: {...}}')
        body = {"touser": openid, "msgtype": msgtype, msgtype: dict(message[msgtype])}
        return self._send("custom", CUSTOM_PATH, body)

    def _send(self, kind: str, path: str, body: dict[str, Any], *, resendable: bool = False) -> SendResult:
        try:
            answer = self.api._call_with_token("POST", path, **_utf8_json(body))
        except ProviderError as exc:
            result = self._refused(exc)
        except ProviderUnavailable as exc:
            outcome = PushOutcome.UNKNOWN if exc.maybe_received and not resendable else PushOutcome.RETRY
            result = SendResult(outcome, errmsg=exc.message, maybe_received=exc.maybe_received)
        else:
            msgid = answer.get("msgid")
            result = SendResult(
                PushOutcome.SENT, errmsg=str(answer.get("errmsg", "ok")), msgid="" if msgid is None else str(msgid)
            )
        level = logging.DEBUG if result.outcome is PushOutcome.SENT else logging.INFO
        logger.log(
            level,
            "push %s to %s of %s: %s errcode=%s errmsg=%s",
            kind,
            body["touser"],
            self.api.config.appid,
            result.outcome.value,
            result.errcode,
            result.errmsg,
        )
        return result

    @staticmethod
    def _refused(exc: ProviderError) -> SendResult:
        try:
            errcode = int(exc.errcode)
        except (TypeError, ValueError):
            return SendResult(PushOutcome.RETRY, errmsg=f"unusable errcode {exc.errcode!r}: {exc.errmsg}")
        outcome = outcome_for(errcode)
        field = field_named(exc.errmsg) if outcome is PushOutcome.STOP else ""
        return SendResult(outcome, errcode=errcode, errmsg=exc.errmsg, field=field)
