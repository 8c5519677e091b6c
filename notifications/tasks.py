"""Celery tasks of pushes: thin, idempotent (a delivery is claimed before its send, so a re-run is harmless)."""

from __future__ import annotations

from celery import shared_task

from notifications import services


@shared_task(name="notifications.fan_out", ignore_result=True)
def fan_out(batch_id: int) -> None:
    services.fan_out(batch_id)


@shared_task(name="notifications.send_chunk", ignore_result=True)
def send_chunk(batch_id: int, delivery_ids: list[int]) -> None:
    services.send_chunk(batch_id, delivery_ids)


@shared_task(name="notifications.housekeeping", ignore_result=True)
def housekeeping() -> None:
    """Every minute (beat): deliveries of dead workers UNKNOWN, batches past their quota pause resumed,
    template-send reports matched to their deliveries."""
    services.mark_stale_unknown()
    services.resume_due()
    services.apply_template_reports()


@shared_task(name="notifications.push_paid_order", ignore_result=True)
def push_paid_order(order_id: int) -> None:
    services.push_paid_order(order_id)
