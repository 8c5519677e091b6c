"""The sandbox's inbox: WeChat's three send paths as the sandbox answers them, and every message delivered.

`Inbox.answer` checks a template message (official account), a subscribe message (mini-program) or a
customer-service message as WeChat does and answers with WeChat's errcodes; what it delivers is kept in the
shared store, newest first: the latest RECENT of all, and the latest PER_USER of each user (rings of slots
numbered by an atomic counter, so concurrent senders never lock one another).

Who gets what, as on WeChat:
- users named `refuse*` refuse every message (43101); `unfollowed*` do not follow the account (43004, template and
  customer-service messages); `inactive*` have not written to the account for 48 hours (45015, customer-service);
- a subscribe message uses up one of the user's one-time subscriptions of its template (`grant_subscription`);
  without one: 43101;
- a template message with a `client_msg_id` already sent to the same openid in the last 10 minutes is answered
  as the first was and not delivered again (WeChat's documented de-duplication);
- a template id starting with `bad` is not the app's (40037); a data value breaking the documented limits of its
  type (thing <= 20 characters, phrase <= 5 Chinese characters, ...) is 47003 naming the field;
- faults of the send paths alone: `quota` (45009) and `busy` (-1) for the next N sends (`set_fault`), and a
  daily quota per app (`set_quota`); the sandbox-wide faults (timeout, http_500, malformed) apply as elsewhere.
An openid the sandbox cannot put a name to (a name is known once the user used the official account's pages or
got a subscription here) is still delivered, with `user` "".
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from providers.sandbox.core import Store, locked

logger = logging.getLogger(__name__)

# The real paths of the three kinds.
PUSH_PATHS = {
    "/cgi-bin/message/template/send": "template",
    "/cgi-bin/message/subscribe/send": "subscribe",
    "/cgi-bin/message/custom/send": "custom",
}
KINDS = ("template", "subscribe", "custom")
PUSH_FAULTS = ("quota", "busy")
RECENT = 200  # messages of all users kept
PER_USER = 50  # messages kept per user
KEEP = 7 * 24 * 3600
SUBSCRIPTION_TTL = 30 * 24 * 3600
ONCE_SECONDS = 600  # how long WeChat keeps a template message's client_msg_id
MAX_GRANT = 1000
MAX_TEXT_BYTES = 2048
MINIPROGRAM_STATES = ("developer", "trial", "formal")
LANGS = ("zh_CN", "en_US", "zh_HK", "zh_TW")
CUSTOM_TYPES: dict[str, tuple[str, ...]] = {
    "text": ("content",),
    "image": ("media_id",),
    "voice": ("media_id",),
    "news": ("articles",),
    "miniprogrampage": ("title", "appid", "pagepath", "thumb_media_id"),
}
USER_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")  # a sandbox user's name (providers.sandbox.wechat's)
OPENID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
TEMPLATE_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

# The documented limits of subscribe-message (and new template-message) values, by the key's type prefix.
_CJK = re.compile(r"[\u3400-\u9fff]")
_TYPED_KEY = re.compile(
    r"^(thing|number|letter|symbol|character_string|time|date|amount|phone_number|car_number|name|phrase)\d+$"
)
_RULES: dict[str, Callable[[str], bool]] = {
    "thing": lambda v: len(v) <= 20,
    "number": lambda v: len(v) <= 32 and re.fullmatch(r"[+-]?\d+(\.\d+)?", v) is not None,
    "letter": lambda v: len(v) <= 32 and re.fullmatch(r"[A-Za-z]+", v) is not None,
    "symbol": lambda v: len(v) <= 5 and re.fullmatch(r"[^\w\s]+", v) is not None,
    "character_string": lambda v: len(v) <= 32 and re.fullmatch(r"[!-~]+", v) is not None,
    "time": lambda v: len(v) <= 64 and re.search(r"\d{1,2}:\d{2}", v) is not None,
    "date": lambda v: len(v) <= 64 and re.search(r"\d", v) is not None,
    "amount": lambda v: re.fullmatch(r"[^\d\s.]?\d{1,10}(\.\d{1,2})?元?", v) is not None,
    "phone_number": lambda v: len(v) <= 17 and re.fullmatch(r"[\d+\-() ]+", v) is not None,
    "car_number": lambda v: len(v) <= 8,
    "name": lambda v: len(v) <= (10 if _CJK.search(v) else 20),
    "phrase": lambda v: re.fullmatch(r"[\u3400-\u9fff]{1,5}", v) is not None,
}


class Refusal(Exception):
    """WeChat's answer to a message it does not deliver."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errcode, errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


def _rid() -> str:
    # WeChat ends its errmsgs with a request id: two identical refusals never have identical errmsgs.
    return f"rid: {secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


def _invalid(field: str, problem: str = "invalid") -> Refusal:
    return Refusal(47003, f"argument invalid! {field} {problem}")


def _text(body: Mapping[str, Any], key: str, *, within: str = "", required: bool = True) -> str:
    """body[key] as a string; the 47003 names it as `within`.key."""
    value = body.get(key, "")
    if not isinstance(value, str):
        raise _invalid(within + key)
    if required and not value:
        raise _invalid(within + key, "is empty")
    return value


def check_data(data: Any) -> dict[str, str]:
    """The values of a message's `data` ({key: {"value": ...}}), or the 47003 naming the first bad field."""
    if not isinstance(data, dict) or not data:
        raise _invalid("data", "is empty")
    values = {}
    for key, item in data.items():
        value = item.get("value") if isinstance(item, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise _invalid(f"data.{key}.value", "is empty")
        typed = _TYPED_KEY.match(str(key))
        if typed and not _RULES[typed.group(1)](value):
            raise _invalid(f"data.{key}.value")
        values[str(key)] = value
    return values


def _template_id(body: Mapping[str, Any]) -> str:
    template_id = body.get("template_id")
    if not isinstance(template_id, str) or not TEMPLATE_ID_RE.match(template_id) or template_id.startswith("bad"):
        raise Refusal(40037, "invalid template_id")
    return template_id


def _template(body: Mapping[str, Any]) -> dict[str, Any]:
    template_id = _template_id(body)
    url = _text(body, "url", required=False)
    miniprogram = body.get("miniprogram")
    if miniprogram is not None:
        if not isinstance(miniprogram, dict):
            raise _invalid("miniprogram")
        miniprogram = {name: _text(miniprogram, name, within="miniprogram.") for name in ("appid", "pagepath")}
    client_msg_id = _text(body, "client_msg_id", required=False)
    if len(client_msg_id.encode()) > 64:
        raise _invalid("client_msg_id", "size out of limit")
    return {
        "template_id": template_id,
        "data": check_data(body.get("data")),
        "url": url,
        "miniprogram": miniprogram,
        "client_msg_id": client_msg_id,
    }


def _subscribe(body: Mapping[str, Any]) -> dict[str, Any]:
    template_id = _template_id(body)
    page = _text(body, "page", required=False)
    if body.get("miniprogram_state", "formal") not in MINIPROGRAM_STATES:
        raise _invalid("miniprogram_state")
    if body.get("lang", "zh_CN") not in LANGS:
        raise _invalid("lang")
    return {"template_id": template_id, "data": check_data(body.get("data")), "page": page}


def _custom(body: Mapping[str, Any]) -> dict[str, Any]:
    msgtype = body.get("msgtype")
    if not isinstance(msgtype, str) or msgtype not in CUSTOM_TYPES:
        raise Refusal(40008, "invalid message type")
    content = body.get(msgtype)
    if not isinstance(content, dict):
        raise _invalid(msgtype, "is empty")
    if msgtype == "news":
        articles = content.get("articles")
        if not isinstance(articles, list) or not articles or not all(isinstance(a, dict) for a in articles):
            raise _invalid("news.articles", "is empty")
        if len(articles) > 1:  # one article per news message since 2018
            raise Refusal(45008, "article size out of limit")
        text = _text(articles[0], "title", within="news.articles.")
    else:
        fields = {name: _text(content, name, within=f"{msgtype}.") for name in CUSTOM_TYPES[msgtype]}
        text = fields.get("content") or fields.get("title") or ""
        if len(text.encode()) > MAX_TEXT_BYTES:
            raise Refusal(45002, "content size out of limit")
    return {"msgtype": msgtype, "text": text, "message": content}


_CHECKS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "template": _template,
    "subscribe": _subscribe,
    "custom": _custom,
}


def _refused_by_user(kind: str, user: str) -> Refusal | None:
    if user.startswith("refuse"):
        return Refusal(43101, "user refuse to accept the msg")
    if user.startswith("unfollowed") and kind in ("template", "custom"):
        return Refusal(43004, "require subscribe")
    if user.startswith("inactive") and kind == "custom":
        return Refusal(45015, "response out of time limit or subscription is canceled")
    return None


class Inbox:
    """`openid_for(appid, user)` is a sandbox user's openid in an app; `user_of(appid, openid)` the name the
    WeChat simulator knows for an openid (None: none)."""

    def __init__(
        self,
        store: Store,
        *,
        openid_for: Callable[[str, str], str],
        user_of: Callable[[str, str], str | None],
    ) -> None:
        self.store = store
        self._openid_for = openid_for
        self._user_of = user_of

    # --- the send paths ----------------------------------------------------------------------------
    def answer(self, kind: str, appid: str, body: Any) -> dict[str, Any]:
        """WeChat's answer to a message of `kind` (template, subscribe, custom) sent by `appid`; a message
        answered errcode 0 is in the inbox."""
        try:
            return self._deliver(kind, appid, body)
        except Refusal as refusal:
            logger.info("sandbox: %s message of %s refused: %s", kind, appid, refusal.errcode)
            return {"errcode": refusal.errcode, "errmsg": f"{refusal.errmsg} {_rid()}"}

    def _deliver(self, kind: str, appid: str, body: Any) -> dict[str, Any]:
        fault = self.take_fault()
        if fault == "busy":
            raise Refusal(-1, "system error")
        if fault == "quota":
            raise Refusal(45009, "reach max api daily quota limit")
        if not isinstance(body, dict):
            raise Refusal(47001, "data format error")
        openid = body.get("touser")
        if not isinstance(openid, str) or not OPENID_RE.match(openid):
            raise Refusal(40003, "invalid openid")
        fields = _CHECKS[kind](body)
        user = self.user_of(appid, openid)
        refusal = _refused_by_user(kind, user)
        if refusal:
            raise refusal
        subscription = self._subscription_key(appid, openid, fields["template_id"]) if kind == "subscribe" else ""
        if subscription and not self._take(subscription):
            raise Refusal(43101, "user refuse to accept the msg")
        quota = f"sbx:inbox:quota:{appid}"
        if not self._take(quota, missing=True):
            if subscription:
                self._give_back(subscription)  # the message was not sent: the subscription is still there
            raise Refusal(45009, "reach max api daily quota limit")
        msgid = "" if kind == "custom" else str(10**18 + secrets.randbelow(8 * 10**18))
        # One template message per openid and client_msg_id within ONCE_SECONDS: a resend is answered as the
        # first was, and delivered once.
        once = f"sbx:inbox:once:{appid}:{openid}:{fields['client_msg_id']}" if fields.get("client_msg_id") else ""
        if once and not self.store.add(once, msgid, ONCE_SECONDS):
            self._give_back(quota)
            logger.info("sandbox: %s message of %s already sent with this client_msg_id", kind, appid)
            return {"errcode": 0, "errmsg": "ok", "msgid": int(self.store.get(once) or msgid)}
        message = {
            "user": user,
            "openid": openid,
            "appid": appid,
            "kind": kind,
            "template_id": "",
            "data": {},
            "url": "",
            "page": "",
            "miniprogram": None,
            "msgtype": "",
            "text": "",
            "message": None,
            "client_msg_id": "",
            **fields,
            "msgid": msgid,
            "at": dt.datetime.now(_CHINA).isoformat(timespec="seconds"),
        }
        self._record(message)
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}
        if msgid:
            answer["msgid"] = int(msgid)
        return answer

    def user_of(self, appid: str, openid: str) -> str:
        """The sandbox user behind `openid` in `appid`, "" when the sandbox cannot name them."""
        name = self._user_of(appid, openid) or self.store.get(f"sbx:inbox:who:{appid}:{openid}")
        return name if isinstance(name, str) else ""

    def _take(self, key: str, *, missing: bool = False) -> bool:
        """Uses one unit of the counter `key`: False when none is left (`missing`: what a counter that does not
        exist means). Atomic: of two takers of the last unit one gets it."""
        try:
            left = self.store.decr(key)
        except ValueError:
            return missing
        if left < 0:
            self._give_back(key)
            return False
        return True

    def _give_back(self, key: str) -> None:
        try:
            self.store.incr(key)
        except ValueError:  # expired meanwhile: nothing to give back to
            pass

    # --- messages ----------------------------------------------------------------------------------
    def _next(self, key: str) -> int:
        self.store.add(key, 0, KEEP)
        return self.store.incr(key)

    def _record(self, message: dict[str, Any]) -> None:
        number = self._next("sbx:inbox:n")
        self.store.set(f"sbx:inbox:all:{number % RECENT}", {**message, "n": number}, KEEP)
        owner = message["user"] or message["openid"]
        number = self._next(f"sbx:inbox:n:{owner}")
        self.store.set(f"sbx:inbox:of:{owner}:{number % PER_USER}", {**message, "n": number}, KEEP)

    def messages(self, user: str = "", limit: int = RECENT) -> list[dict[str, Any]]:
        """The latest messages, newest first: of `user` (a name, or the openid of a user without one), or of all."""
        if user and not USER_RE.match(user):
            return []
        counter, slot, size = ("sbx:inbox:n", "sbx:inbox:all", RECENT)
        if user:
            counter, slot, size = (f"sbx:inbox:n:{user}", f"sbx:inbox:of:{user}", PER_USER)
        latest = self.store.get(counter) or 0
        found = []
        for number in range(latest, max(latest - min(size, limit), 0), -1):
            item = self.store.get(f"{slot}:{number % size}")
            # A slot still holding an older message (its new one is being written) is left out.
            if isinstance(item, dict) and item.get("n") == number:
                found.append({k: v for k, v in item.items() if k != "n"})
        return found

    # --- subscriptions -----------------------------------------------------------------------------
    def _subscription_key(self, appid: str, openid: str, template_id: str) -> str:
        return f"sbx:inbox:sub:{appid}:{openid}:{template_id}"

    def grant_subscription(self, appid: str, user: str, template_id: str, count: int = 1) -> int:
        """`user` accepts `count` one-time subscriptions of `template_id` in the mini-program `appid` (what
        wx.requestSubscribeMessage's "accept" gives); returns how many they have now. ValueError: bad input."""
        if not USER_RE.match(user):
            raise ValueError("a sandbox user is 1 to 64 letters, digits, '.', '_' or '-'")
        if not TEMPLATE_ID_RE.match(template_id):
            raise ValueError("a template id is 1 to 128 letters, digits, '_' or '-'")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_GRANT:
            raise ValueError(f"count must be between 1 and {MAX_GRANT}")
        openid = self._openid_for(appid, user)
        self.store.set(f"sbx:inbox:who:{appid}:{openid}", user, SUBSCRIPTION_TTL)
        key = self._subscription_key(appid, openid, template_id)
        self.store.add(key, 0, SUBSCRIPTION_TTL)
        left = self.store.incr(key, count)
        listed = f"sbx:inbox:subs:{appid}:{openid}"
        with locked(self.store, f"{listed}:lock"):
            templates = self.store.get(listed) or []
            if template_id not in templates:
                self.store.set(listed, [*templates, template_id], SUBSCRIPTION_TTL)
        logger.info("sandbox: %s may get %d subscribe message(s) of %s", user, left, template_id)
        return left

    def subscriptions(self, appid: str, user: str) -> dict[str, int]:
        """{template id: one-time subscriptions left} of `user` in `appid`."""
        if not USER_RE.match(user):
            return {}
        openid = self._openid_for(appid, user)
        templates = self.store.get(f"sbx:inbox:subs:{appid}:{openid}") or []
        left = {t: self.store.get(self._subscription_key(appid, openid, t)) for t in templates}
        return {t: max(int(n), 0) for t, n in left.items() if n is not None}

    # --- faults and the daily quota ----------------------------------------------------------------
    def set_fault(self, fault: str, count: int) -> None:
        """The next `count` sends (of any app) answer `quota` (45009) or `busy` (-1); 0 clears it."""
        if fault not in PUSH_FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {list(PUSH_FAULTS)}")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_GRANT:
            raise ValueError(f"count must be between 0 and {MAX_GRANT}")
        self.store.set("sbx:inbox:fault", fault, 3600)
        self.store.set("sbx:inbox:fault:n", count, 3600)

    def take_fault(self) -> str | None:
        fault = self.store.get("sbx:inbox:fault")
        if fault not in PUSH_FAULTS or not self._take("sbx:inbox:fault:n"):
            return None
        logger.info("sandbox: injecting %s into a push answer", fault)
        return str(fault)

    def fault(self) -> dict[str, Any] | None:
        """The pending fault of the send paths, {"fault", "count"}, or None."""
        fault, count = self.store.get("sbx:inbox:fault"), self.store.get("sbx:inbox:fault:n") or 0
        return {"fault": fault, "count": count} if fault in PUSH_FAULTS and count > 0 else None

    def set_quota(self, appid: str, left: int | None) -> None:
        """`appid` may send `left` more messages today (then 45009 until it is set again); None: no limit, as
        after the daily reset."""
        key = f"sbx:inbox:quota:{appid}"
        if left is None:
            self.store.delete(key)
            return
        if isinstance(left, bool) or not isinstance(left, int) or left < 0:
            raise ValueError("left must be a whole number of sends, at least 0, or null for no limit")
        self.store.set(key, left, 24 * 3600)

    def quota(self, appid: str) -> int | None:
        left = self.store.get(f"sbx:inbox:quota:{appid}")
        return None if left is None else max(int(left), 0)
