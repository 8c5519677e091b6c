"""Reads of pushes for the schema and the admin."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from notifications.models import PushBatch, PushDelivery


def batches() -> QuerySet[PushBatch]:
    return PushBatch.objects.order_by("-pk")


def outcomes(batch_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """How the batch's deliveries ended, grouped by status and WeChat's answer (most frequent first)."""
    rows = (
        PushDelivery.objects.filter(batch_id=batch_id)
        .values("status", "errcode", "errmsg")
        .annotate(count=Count("pk"))
        .order_by("-count", "status", "errcode", "errmsg")
    )
    return list(rows[:limit])
