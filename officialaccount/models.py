"""What the official account's server URL keeps: its followers, the replies staff edit, template deliveries."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import models, transaction

from providers.wechat.messages import MAX_NEWS_ARTICLES

# A passive text reply is at most 2048 bytes (WeChat cuts or refuses longer ones).
MAX_TEXT_REPLY_BYTES = 2048
# Characters XML 1.0 cannot carry at all: a reply holding one could never be sent.
_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
ARTICLE_FIELDS = ("title", "description", "pic_url", "url")


class Follower(models.Model):
    """Someone who follows (or followed) the official account, as its subscribe and unsubscribe events say.

    The user they are bound to is their WechatIdentity (accounts), not a column here: one place to unbind.
    """

    appid = models.CharField(max_length=32)
    openid = models.CharField(max_length=64)
    # From cgi-bin/user/info (a Celery task after the first subscribe): the same person in our other apps.
    unionid = models.CharField(max_length=64, blank=True)
    subscribed = models.BooleanField(default=False)
    subscribed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["appid", "openid"], name="oa_follower_app_openid")]

    def __str__(self) -> str:
        return f"{self.appid}/{self.openid}"


# The server URL matches messages against a cached copy of every active keyword reply
# (officialaccount.services.active_replies); each change empties it once its transaction commits.
REPLIES_KEY = "oa:keyword-replies"


def forget_cached_replies() -> None:
    """Empties the cached replies: the next message reads them from the database again."""
    cache.delete(REPLIES_KEY)


class KeywordReply(models.Model):
    """A passive reply staff edit in the admin: to a follower's text, a menu button's CLICK, a new follower,
    or any text no keyword matched. Of several that apply, the highest priority wins (an exact match
    before a contained one)."""

    class Match(models.TextChoices):
        EXACT = "exact", "the whole message (ignoring case and surrounding spaces)"
        CONTAINS = "contains", "anywhere in the message"
        CLICK = "click", "a menu button's key (CLICK)"
        SUBSCRIBE = "subscribe", "welcome a new follower (keyword unused)"
        DEFAULT = "default", "a text no keyword matched (keyword unused)"

    class ReplyType(models.TextChoices):
        TEXT = "text", "text"
        IMAGE = "image", "image"
        NEWS = "news", "news (articles)"

    KEYWORD_MATCHES = (Match.EXACT, Match.CONTAINS, Match.CLICK)

    keyword = models.CharField(max_length=128, blank=True)
    match = models.CharField(max_length=10, choices=Match.choices, default=Match.EXACT)
    reply_type = models.CharField(max_length=8, choices=ReplyType.choices, default=ReplyType.TEXT)
    content = models.TextField(blank=True, help_text="The text of a text reply (at most 2048 bytes).")
    media_id = models.CharField(max_length=128, blank=True, help_text="An image reply's media_id (media upload).")
    articles = models.JSONField(
        default=list,
        blank=True,
        help_text=(
            f"A news reply: 1 to {MAX_NEWS_ARTICLES} objects with title, description, pic_url and url "
            "(WeChat shows only the first in a reply to a message)."
        ),
    )
    active = models.BooleanField(default=True)
    priority = models.IntegerField(default=0, help_text="Higher first when several replies apply.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "keyword replies"
        ordering = ["-priority", "pk"]
        indexes = [models.Index(fields=["match", "active"], name="oa_keyword_reply_match")]

    def __str__(self) -> str:
        return f"{self.get_match_display()}: {self.keyword}" if self.keyword else self.get_match_display()

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        # After the commit: emptied earlier, a message could cache the old rows again; a rollback changes nothing.
        transaction.on_commit(forget_cached_replies)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        deleted: tuple[int, dict[str, int]] = super().delete(*args, **kwargs)
        transaction.on_commit(forget_cached_replies)
        return deleted

    def clean(self) -> None:
        errors: dict[str, str] = {}
        self.keyword = self.keyword.strip()
        if self.match in self.KEYWORD_MATCHES and not self.keyword:
            errors["keyword"] = "A keyword (or, for a CLICK, the button's key) is needed for this match."
        if self.reply_type == self.ReplyType.TEXT:
            if not self.content.strip():
                errors["content"] = "A text reply needs its text."
            elif len(self.content.encode("utf-8")) > MAX_TEXT_REPLY_BYTES:
                errors["content"] = f"At most {MAX_TEXT_REPLY_BYTES} bytes (a Chinese character takes 3)."
            elif _NOT_XML_CHARS.search(self.content):
                errors["content"] = "Remove the control characters: WeChat cannot carry them."
        elif self.reply_type == self.ReplyType.IMAGE and not self.media_id.strip():
            errors["media_id"] = "An image reply needs the media_id of an uploaded image."
        elif self.reply_type == self.ReplyType.NEWS:
            problem = articles_problem(self.articles)
            if problem:
                errors["articles"] = problem
        if errors:
            raise ValidationError(errors)


def articles_problem(articles: Any) -> str | None:
    """What is wrong with a news reply's articles, or None."""
    if not isinstance(articles, list) or not 1 <= len(articles) <= MAX_NEWS_ARTICLES:
        return f"A list of 1 to {MAX_NEWS_ARTICLES} articles."
    for i, article in enumerate(articles, start=1):
        if not isinstance(article, dict) or set(article) - set(ARTICLE_FIELDS):
            return f"Article {i}: an object with only {', '.join(ARTICLE_FIELDS)}."
        if any(not isinstance(value, str) or _NOT_XML_CHARS.search(value) for value in article.values()):
            return f"Article {i}: every value is text, without control characters."
        if not article.get("title"):
            return f"Article {i}: a title is needed."
        for field in ("pic_url", "url"):
            if article.get(field) and urlsplit(article[field]).scheme not in ("http", "https"):
                return f"Article {i}: {field} must be an http(s) address."
    return None


class TemplateSendReport(models.Model):
    """WeChat's TEMPLATESENDJOBFINISH: whether a template message reached the follower. Recorded once per
    message (a retried event changes nothing); read-only."""

    msg_id = models.CharField(max_length=64, unique=True, help_text="MsgID, as the send answered msgid.")
    appid = models.CharField(max_length=32)
    openid = models.CharField(max_length=64)
    # success, "failed:user block" or "failed: system failed"
    status = models.CharField(max_length=64)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="The event's CreateTime.")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["openid"], name="oa_template_report_openid")]

    def __str__(self) -> str:
        return f"template message {self.msg_id}: {self.status}"
