"""What the official account answers its followers, and what their messages and events change.

`reply_to` is the server URL's one entry: WeChat retries a message 3 times when 5 s pass without an answer,
so each message (MsgId + FromUserName + CreateTime) or event (FromUserName + CreateTime + Event + EventKey)
is claimed on the shared cache, handled once, and its rendered reply kept for a retry to get again.
Slow work (cgi-bin/user/info for a new follower) goes to Celery after the commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypedDict, cast

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import User, WechatIdentity
from accounts.services import BIND_QR_SECONDS, BIND_SCENE_PREFIX, bind_official_account_openid, bind_scene_key
from config import providers
from core.errors import AppError
from notifications.services import record_template_report
from officialaccount.models import REPLIES_KEY, Follower, KeywordReply, TemplateSendReport
from providers.http import ProviderError, ProviderUnavailable
from providers.wechat.messages import image_reply, news_reply, text_reply
from providers.wechat.official_account import MAX_SCENE_STR

logger = logging.getLogger(__name__)

# Nothing to say: WeChat shows the follower nothing and does not retry.
SUCCESS = "success"
WELCOME = "Thanks for following! Tap the menu below, or send us a message."
DEFAULT_REPLY = "Thanks for your message. Tap the menu below to see what we can do."
BOUND = "Your account is now bound: its notifications will come here."
SCENE_EXPIRED = "This QR code has expired: show a new one and scan it again."
SCENE_USED = "This QR code was already used: show a new one and scan it again."
BIND_RETRY = "WeChat did not answer just now: scan the QR code again in a moment."
SCENE_PREFIX = "qrscene_"  # a subscribe's EventKey from a scene QR code; a SCAN's EventKey is the bare scene

# A retry comes within about 15 s (three 5 s waits); the reply is kept a little longer than that.
REPLY_SECONDS = 300
# How long a claim holds when its holder dies before answering (then a retry handles the message).
CLAIM_SECONDS = 30
# A copy arriving while the first is handled waits this long for its reply, below WeChat's 5 s.
WAIT_SECONDS = 4.0
POLL_SECONDS = 0.05
_PENDING = "pending"

Message = Mapping[str, str]

# Every active keyword reply, as plain data, on the shared cache: a message is matched in Python, no query.
# Emptied after each commit that saves or deletes one (KeywordReply.save/delete, the admin's bulk delete);
# the timeout only bounds an edit that bypasses them (QuerySet.update, a data migration).
REPLIES_SECONDS = 300
_REPLY_FIELDS = ("pk", "match", "keyword", "reply_type", "content", "media_id", "articles")


class Reply(TypedDict):
    pk: int
    match: KeywordReply.Match  # the str stored (a TextChoices member equals it)
    keyword: str
    reply_type: KeywordReply.ReplyType
    content: str
    media_id: str
    articles: Any


# --- once per message ------------------------------------------------------------------------


def dedup_key(appid: str, message: Message) -> str:
    """The shared-cache key of one message or event, the same for each of WeChat's retries."""
    if message.get("MsgType") == "event":
        parts = ["event", message.get("FromUserName", ""), message.get("CreateTime", "")]
        # MsgID too where an event has one (TEMPLATESENDJOBFINISH): two reports in one second stay two.
        parts += [message.get("Event", ""), message.get("EventKey", ""), message.get("MsgID", "")]
    else:  # MsgId alone has collided
        parts = ["msg", message.get("MsgId", ""), message.get("FromUserName", ""), message.get("CreateTime", "")]
    digest = hashlib.sha256("\x1f".join([appid, *parts]).encode("utf-8")).hexdigest()
    return f"oa:msg:{digest}"


def reply_to(*, appid: str, message: Message) -> str:
    """The passive reply (plain XML, or `success`) to a verified message: worked out once; a retry or a
    concurrent copy gets the first one's reply, or `success` if it is not ready within WAIT_SECONDS."""
    key = dedup_key(appid, message)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        if cache.add(key, _PENDING, CLAIM_SECONDS):
            try:
                reply = route(appid=appid, message=message)
            except BaseException:
                cache.delete(key)  # nothing was committed, or it is idempotent: let WeChat's retry do it again
                raise
            cache.set(key, {"reply": reply}, REPLY_SECONDS)
            return reply
        seen = cache.get(key)
        if isinstance(seen, dict):
            return str(seen["reply"])
        # Still pending (or just released by a failed first attempt: the next turn claims it).
        if time.monotonic() >= deadline:
            logger.info("official account: %s still being answered; this copy answers success", key)
            return SUCCESS
        time.sleep(POLL_SECONDS)


# --- routing ---------------------------------------------------------------------------------


def route(*, appid: str, message: Message) -> str:
    """The reply to one message, its side effects done (committed, or queued to run after the commit)."""
    kind = message.get("MsgType", "")
    if kind == "event":
        handler = EVENTS.get(message.get("Event", "").lower())
        return handler(appid, message) if handler else SUCCESS
    if kind == "text":
        return _text(appid, message)
    return SUCCESS


def _event_time(message: Message) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(int(message.get("CreateTime", "")), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        now: dt.datetime = timezone.now()
        return now


def _render(reply: Reply, message: Message) -> str:
    to_user, from_user, now = message.get("FromUserName", ""), message.get("ToUserName", ""), int(time.time())
    try:
        if reply["reply_type"] == KeywordReply.ReplyType.IMAGE:
            return image_reply(to_user, from_user, reply["media_id"], now)
        if reply["reply_type"] == KeywordReply.ReplyType.NEWS:
            # A passive reply carries one article since 2018 (WeChat drops the rest): the first is sent.
            return news_reply(to_user, from_user, reply["articles"][:1], now)
        return text_reply(to_user, from_user, reply["content"], now)
    except (ValueError, TypeError, AttributeError):
        # Saved around the admin's checks (a control character, articles of the wrong shape): say nothing
        # rather than fail the message for WeChat to retry in vain.
        logger.error("official account: keyword reply %s cannot be sent: fix it in the admin", reply["pk"])
        return SUCCESS


def _text_to(message: Message, content: str) -> str:
    return text_reply(message.get("FromUserName", ""), message.get("ToUserName", ""), content, int(time.time()))


def active_replies() -> list[Reply]:
    """Every active keyword reply, highest priority first, then oldest: from the shared cache, filled on a miss."""
    replies: list[Reply] | None = cache.get(REPLIES_KEY)
    if replies is None:
        rows = KeywordReply.objects.filter(active=True).order_by("-priority", "pk").values(*_REPLY_FIELDS)
        replies = cast(list[Reply], list(rows))
        cache.set(REPLIES_KEY, replies, REPLIES_SECONDS)
    return replies


def _welcome() -> Reply | None:
    """The admin's welcome for a new follower: the active one of highest priority, then the oldest."""
    return next((reply for reply in active_replies() if reply["match"] == KeywordReply.Match.SUBSCRIBE), None)


def _text(appid: str, message: Message) -> str:
    """A keyword's reply (the whole message ignoring case and surrounding spaces, before a keyword contained
    in it, then by priority, then age), else the admin's default reply, else ours."""
    text = message.get("Content", "").strip().upper()
    contained = default = None
    for reply in active_replies():  # by priority, then age: the first of each kind wins
        match = reply["match"]
        if match == KeywordReply.Match.EXACT:
            if reply["keyword"].upper() == text:
                return _render(reply, message)
        elif match == KeywordReply.Match.CONTAINS:
            if contained is None and reply["keyword"].upper() in text:
                contained = reply
        elif match == KeywordReply.Match.DEFAULT and default is None:
            default = reply
    chosen = contained or default
    return _render(chosen, message) if chosen else _text_to(message, DEFAULT_REPLY)


def _click(appid: str, message: Message) -> str:
    key = message.get("EventKey", "")
    clicks = (reply for reply in active_replies() if reply["match"] == KeywordReply.Match.CLICK)
    reply = next((reply for reply in clicks if reply["keyword"] == key), None)  # the key exactly, case too
    if reply is None:
        logger.warning("official account: menu key %r has no reply (add one in the admin)", key)
        return SUCCESS
    return _render(reply, message)


def _subscribe(appid: str, message: Message) -> str:
    openid = message.get("FromUserName", "")
    follower = _set_following(appid, openid, subscribed=True, at=_event_time(message))
    welcome = _welcome()
    event_key = message.get("EventKey", "")
    bound = None
    if event_key.startswith(SCENE_PREFIX):
        bound = bind_by_scene(event_key[len(SCENE_PREFIX) :], appid, openid, follower.unionid)
    if bound is None:
        return _render(welcome, message) if welcome else _text_to(message, WELCOME)
    # The binding's outcome is what the follower came for; a text welcome goes first.
    if welcome is None or welcome["reply_type"] == KeywordReply.ReplyType.TEXT:
        return _text_to(message, f"{welcome['content'] if welcome else WELCOME}\n\n{bound}")
    return _text_to(message, bound)


def _scan(appid: str, message: Message) -> str:
    """An existing follower scanned a scene QR code (EventKey is the bare scene)."""
    openid = message.get("FromUserName", "")
    follower = _seen_following(appid, openid)
    scene = message.get("EventKey", "")
    bound = bind_by_scene(scene, appid, openid, follower.unionid)
    if bound is None and not scene.startswith(BIND_SCENE_PREFIX):
        return SUCCESS  # another kind of scene code (a campaign's, a channel's): not ours to answer here
    return _text_to(message, bound or SCENE_EXPIRED)


def _unsubscribe(appid: str, message: Message) -> str:
    _set_following(appid, message.get("FromUserName", ""), subscribed=False, at=_event_time(message))
    return SUCCESS


def _template_send_finished(appid: str, message: Message) -> str:
    msg_id = message.get("MsgID") or message.get("MsgId", "")  # WeChat spells it MsgID here
    if not msg_id or len(msg_id) > 64:
        logger.warning("official account: TEMPLATESENDJOBFINISH without a usable MsgID")
        return SUCCESS
    # A retried event (or a copy) finds the row: recorded once.
    TemplateSendReport.objects.bulk_create(
        [
            TemplateSendReport(
                msg_id=msg_id,
                appid=appid,
                openid=message.get("FromUserName", "")[:64],
                status=message.get("Status", "")[:64],
                sent_at=_event_time(message),
            )
        ],
        ignore_conflicts=True,
    )
    # The push delivery that got this msgid keeps WeChat's word on it (a retry writes the same).
    record_template_report(openid=message.get("FromUserName", "")[:64], msg_id=msg_id, status=message.get("Status", ""))
    return SUCCESS


def _nothing(appid: str, message: Message) -> str:
    return SUCCESS


EVENTS: dict[str, Callable[[str, Message], str]] = {
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "scan": _scan,
    "click": _click,
    "view": _nothing,
    "templatesendjobfinish": _template_send_finished,
}


# --- followers -------------------------------------------------------------------------------


def _set_following(appid: str, openid: str, *, subscribed: bool, at: dt.datetime) -> Follower:
    """Records a subscribe or unsubscribe at `at`; an event older than the last one recorded (they can
    arrive out of order) changes nothing. A new follower's unionid is fetched after the commit."""
    follower: Follower
    with transaction.atomic():
        follower, created = Follower.objects.select_for_update().get_or_create(
            appid=appid,
            openid=openid,
            defaults={
                "subscribed": subscribed,
                "subscribed_at": at if subscribed else None,
                "unsubscribed_at": None if subscribed else at,
            },
        )
        last = max((t for t in (follower.subscribed_at, follower.unsubscribed_at) if t is not None), default=None)
        if not created and (last is None or at >= last):
            follower.subscribed = subscribed
            changed = "subscribed_at" if subscribed else "unsubscribed_at"
            setattr(follower, changed, at)
            follower.save(update_fields=["subscribed", changed, "updated_at"])
        if subscribed and not follower.unionid:
            _fetch_follower_info_after_commit(appid, openid)
    return follower


def _seen_following(appid: str, openid: str) -> Follower:
    """The follower behind a SCAN (who follows, even if they did so before we recorded followers)."""
    follower: Follower
    with transaction.atomic():
        follower, created = Follower.objects.get_or_create(appid=appid, openid=openid, defaults={"subscribed": True})
        if created:
            _fetch_follower_info_after_commit(appid, openid)
    return follower


def _fetch_follower_info_after_commit(appid: str, openid: str) -> None:
    from officialaccount.tasks import fetch_follower_info  # the task module imports this one

    # robust: a broker that is down costs the unionid (logged), never the follower's reply.
    transaction.on_commit(functools.partial(fetch_follower_info.delay, appid, openid), robust=True)


def fill_follower_info(*, appid: str, openid: str) -> str | None:
    """cgi-bin/user/info's unionid on the follower, and on their official-account identity when it has none
    and no other user's identity holds that unionid; the unionid, or None when WeChat gave none."""
    if appid != settings.WECHAT_OA_APPID or not providers.official_account_ready():
        return None
    try:
        info = providers.official_account().user_info(openid)
    except (ProviderError, ProviderUnavailable) as exc:
        logger.warning("official account: user info of openid=%s failed: %s", openid, exc)
        return None
    if not info.unionid:
        return None
    with transaction.atomic():
        Follower.objects.filter(appid=appid, openid=openid).update(unionid=info.unionid, updated_at=timezone.now())
        identity = WechatIdentity.objects.filter(appid=appid, openid=openid, unionid="").first()
        if identity is not None:
            # Another user's identity with this unionid, or one of this user's with another unionid: the
            # follower is not (only) who the binding says; the identity keeps no unionid to join by.
            others = WechatIdentity.objects.filter(unionid=info.unionid).exclude(user_id=identity.user_id)
            theirs = WechatIdentity.objects.filter(user_id=identity.user_id).exclude(unionid="")
            if others.exists() or theirs.exclude(unionid=info.unionid).exists():
                logger.warning(
                    "official account: openid=%s has the unionid of another user's identity: left unset", openid
                )
            else:
                WechatIdentity.objects.filter(pk=identity.pk).update(unionid=info.unionid)
    return info.unionid


# --- binding by QR code ----------------------------------------------------------------------


def bind_by_scene(scene: str, appid: str, openid: str, unionid: str) -> str | None:
    """Binds the follower who scanned a bind QR code to the user who asked for it; what to tell them.

    The scene's user id is in the cache under `oa:bind:<scene>` (put there by officialAccountBindQrCode for
    the code's lifetime). None: no such scene (unknown or expired). Otherwise BOUND (also for the same
    follower scanning again) or the reason nothing changed: another follower used this code first, this
    WeChat is bound to someone else, or the user is bound to another WeChat.
    """
    if not scene.startswith(BIND_SCENE_PREFIX) or len(scene) > MAX_SCENE_STR or appid != settings.WECHAT_OA_APPID:
        return None
    key = bind_scene_key(scene)
    user_id = cache.get(key)
    if user_id is None:
        return None
    # One follower per code: whoever sees someone else's code must not bind their WeChat to that account.
    claim = f"{key}:openid"
    fresh = cache.add(claim, openid, BIND_QR_SECONDS)  # as long as the code lives
    if not fresh and cache.get(claim) != openid:
        return SCENE_USED
    try:
        user = User.objects.filter(pk=int(user_id), is_active=True).first()
    except (TypeError, ValueError):
        user = None
    if user is None:
        return SCENE_EXPIRED
    if not unionid:
        # Who the scanner is, before binding: a unionid that is not the user's refuses the bind (someone
        # else scanning the code). WeChat not answering: nothing is bound, and the code stays usable.
        try:
            unionid = providers.official_account().user_info(openid).unionid or ""
        except (ProviderError, ProviderUnavailable) as exc:
            logger.warning("official account: user info of openid=%s for a bind failed: %s", openid, exc)
            if fresh:
                cache.delete(claim)
            return BIND_RETRY
    try:
        bind_official_account_openid(user=user, openid=openid, unionid=unionid or None)
    except AppError as exc:
        if fresh:
            cache.delete(claim)  # the code stays usable by the follower it was meant for
        logger.info("official account: scene bind of openid=%s to user=%s refused: %s", openid, user.pk, exc.code)
        return exc.message
    logger.info("official account: openid=%s bound to user=%s by QR code", openid, user.pk)
    return BOUND
