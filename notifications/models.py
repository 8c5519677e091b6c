"""Push batches, their deliveries (one per user, claimed before the send), and one-time subscriptions."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class PushBatch(models.Model):
    """One push to many users. Its counts are counted from the deliveries as workers go (services.refresh_counts)."""

    class Channel(models.TextChoices):
        TEMPLATE = "TEMPLATE", "official-account template message"
        SUBSCRIBE = "SUBSCRIBE", "mini-program subscribe message"
        CUSTOM = "CUSTOM", "official-account customer-service message"

    class Status(models.TextChoices):
        DRAFT = "DRAFT", "draft"
        RUNNING = "RUNNING", "running"
        PAUSED = "PAUSED", "paused (daily quota)"
        DONE = "DONE", "done"
        STOPPED = "STOPPED", "stopped (bad data or template)"
        CANCELLED = "CANCELLED", "cancelled"

    channel = models.CharField(max_length=10, choices=Channel.choices)
    template_id = models.CharField(max_length=128, blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="{key: value} of the template's fields")
    page = models.CharField(max_length=256, blank=True, help_text="mini-program page (subscribe, template)")
    url = models.CharField(max_length=512, blank=True, help_text="web page a template message opens")
    message = models.JSONField(default=dict, blank=True, help_text="customer-service message body")
    # The paid-order push's "order-paid:<out_trade_no>": one batch per key, however often the task runs.
    key = models.CharField(max_length=64, null=True, blank=True, unique=True)  # noqa: DJ001
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    total = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    unknown = models.PositiveIntegerField(default=0, help_text="claimed by a worker that died: maybe sent")
    pending = models.PositiveIntegerField(default=0)
    stop_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    paused_until = models.DateTimeField(null=True, blank=True)
    # When its counts were last refreshed: a running batch whose counts stand still has no worker on it.
    counted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "push batches"
        indexes = [models.Index(fields=["status", "paused_until"], name="push_batch_status")]

    def __str__(self) -> str:
        return f"push {self.pk} ({self.channel}, {self.status})"


class PushDelivery(models.Model):
    """One message of a batch to one user: PENDING -> SENDING (claimed) -> SENT | SKIPPED | FAILED, or
    UNKNOWN when its worker died after the claim (never resent: WeChat has no idempotency key)."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "pending"
        SENDING = "SENDING", "sending"
        SENT = "SENT", "sent"
        SKIPPED = "SKIPPED", "skipped"
        FAILED = "FAILED", "failed"
        UNKNOWN = "UNKNOWN", "unknown"

    batch = models.ForeignKey(PushBatch, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    openid = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    errcode = models.IntegerField(default=0)
    errmsg = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    msgid = models.CharField(max_length=64, blank=True)
    # TEMPLATESENDJOBFINISH's Status: success, "failed:user block", "failed: system failed"
    report = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The first send whose answer was lost (it may have arrived): a template message is resent with its
    # client_msg_id only while WeChat still de-duplicates it; anything else that may have arrived is UNKNOWN.
    answer_lost_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "push deliveries"
        constraints = [models.UniqueConstraint(fields=["batch", "user"], name="push_delivery_batch_user")]
        indexes = [
            # fan-out pages (batch, PENDING, id > last) and the claim-timeout sweep (SENDING, claimed_at)
            models.Index(fields=["batch", "status", "id"], name="push_delivery_claim"),
            models.Index(fields=["status", "claimed_at"], name="push_delivery_stale"),
            models.Index(fields=["msgid"], name="push_delivery_msgid", condition=~models.Q(msgid="")),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} of push {self.batch_id}: {self.status}"


class Subscription(models.Model):
    """What wx.requestSubscribeMessage answered for one template: each accept is one send."""

    class Status(models.TextChoices):
        ACCEPTED = "accept", "accepted"
        REJECTED = "reject", "rejected"
        BANNED = "ban", "banned"
        FILTERED = "filter", "filtered"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    template_id = models.CharField(max_length=128)
    remaining = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "template_id"], name="push_subscription_user_template")]

    def __str__(self) -> str:
        return f"{self.user_id}/{self.template_id}: {self.status} ({self.remaining} left)"
