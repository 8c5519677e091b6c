from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models


class Product(models.Model):
    """What can be bought. The price (fen) comes from here, never from the client."""

    sku = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=128)
    # WeChat Pay and Alipay refuse a total under 1 fen (and orders check amount > 0).
    price = models.PositiveIntegerField(validators=[MinValueValidator(1)], help_text="fen (1/100 yuan)")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} ({self.price} fen)"


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING"
        PAID = "PAID"
        CLOSED = "CLOSED"
        REFUNDED = "REFUNDED"

    class Provider(models.TextChoices):
        WECHATPAY = "WECHATPAY"
        ALIPAY = "ALIPAY"

    class ApiVersion(models.TextChoices):
        V2 = "V2"
        V3 = "V3"

    class TradeType(models.TextChoices):
        # WeChat Pay
        JSAPI = "JSAPI"
        NATIVE = "NATIVE"
        H5 = "H5"
        APP = "APP"  # and Alipay's app payment
        # Alipay
        PAGE = "PAGE"
        WAP = "WAP"
        QR = "QR"

    out_trade_no = models.CharField(max_length=32)
    # Indexed by order_user_recent, whose first column it is.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders", db_index=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField()
    amount = models.PositiveBigIntegerField(help_text="fen")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    # WeChat Pay's API version; empty for Alipay, which has one.
    api_version = models.CharField(max_length=4, choices=ApiVersion.choices, blank=True)
    trade_type = models.CharField(max_length=8, choices=TradeType.choices)
    # WeChat Pay: the app (appid) the order was placed for, whose openid pays it and whose id its notifies and
    # answers carry: the mini-program's or the official account's. "" (orders older than the field, and
    # Alipay's) means WECHATPAY_APPID.
    appid = models.CharField(max_length=32, blank=True, db_default="")
    # v2 notifies may omit sign_type: they are verified with the type the order was placed with.
    sign_type = models.CharField(max_length=16)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    refunded_amount = models.PositiveBigIntegerField(default=0, help_text="fen")
    # NULL until paid: the unique constraint admits many NULLs, not many empty strings.
    transaction_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # WeChat openids are 28 characters; Alipay documents buyer_open_id as up to 128.
    payer_openid = models.CharField(max_length=128, blank=True)
    # What the provider answered at creation, so a retry returns the same payment instead of a new one.
    prepay_id = models.CharField(max_length=128, blank=True)
    code_url = models.CharField(max_length=256, blank=True)
    h5_url = models.CharField(max_length=512, blank=True)
    # Alipay: where the payer's browser goes after the return page (an ALIPAY_RETURN_HOSTS address).
    return_url = models.CharField(max_length=512, blank=True, db_default="")
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    # Money moved that does not fit the order (another amount or merchant, a payment of an order that was
    # not payable): a human must look. Reconciliation leaves such an order alone.
    needs_attention = models.BooleanField(default=False, db_default=False)
    attention_reason = models.CharField(max_length=200, blank=True, db_default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        # Every index here is written on each payment (a new status and transaction id), so only
        # those a query uses: unique constraints rather than unique=True, which on PostgreSQL also
        # builds a LIKE index nothing here searches with; pending orders only for reconciliation.
        indexes = [
            models.Index(fields=["user", "-created_at"], name="order_user_recent"),
            models.Index(fields=["created_at"], condition=models.Q(status="PENDING"), name="order_pending_age"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["out_trade_no"], name="order_out_trade_no_unique"),
            models.UniqueConstraint(fields=["transaction_id"], name="order_transaction_id_unique"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="order_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(refunded_amount__lte=models.F("amount")), name="order_refund_within_amount"
            ),
        ]

    def __str__(self) -> str:
        return self.out_trade_no


class Refund(models.Model):
    class Status(models.TextChoices):
        PROCESSING = "PROCESSING"
        SUCCESS = "SUCCESS"
        CLOSED = "CLOSED"
        ABNORMAL = "ABNORMAL"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    out_refund_no = models.CharField(max_length=64, unique=True)
    amount = models.PositiveBigIntegerField(help_text="fen")
    reason = models.CharField(max_length=80, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PROCESSING)
    provider_refund_id = models.CharField(max_length=64, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="refund_amount_positive")]

    def __str__(self) -> str:
        return self.out_refund_no


class PaymentEvent(models.Model):
    """A verified provider result (notify or query), stored once: its key makes duplicates harmless."""

    class Source(models.TextChoices):
        NOTIFY = "NOTIFY"
        QUERY = "QUERY"

    class Outcome(models.TextChoices):
        APPLIED = "APPLIED"
        NO_CHANGE = "NO_CHANGE"
        CONFLICT = "CONFLICT"
        MISMATCH = "MISMATCH"  # names our order with other facts (amount, merchant): recorded, not applied

    provider = models.CharField(max_length=16, choices=Order.Provider.choices)
    event_key = models.CharField(max_length=160)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="events", null=True, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices)
    kind = models.CharField(max_length=32)
    payload = models.JSONField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["event_key"], name="payment_event_key_unique")]

    def __str__(self) -> str:
        return self.event_key
