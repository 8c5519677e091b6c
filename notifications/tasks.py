"""Celery tasks of pushes: thin, idempotent (a delivery is claimed before its send, so a re-run is harmless)."""

from __future__ import annotations

from celery import shared_task

from notifications import services

# A fan-out or chunk that failed (the database or Redis away) runs again with backoff, about 25 minutes in
# all; after that, housekeeping fans out a running batch that has not moved for PUSH_CLAIM_TIMEOUT.
RETRIED = {
    "autoretry_for": (Exception,),
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 10,
}


@shared_task(name="notifications.fan_out", ignore_result=True, **RETRIED)
def fan_out(batch_id: int) -> None:
    services.fan_out(batch_id)


@shared_task(name="notifications.send_chunk", ignore_result=True, **RETRIED)
def send_chunk(batch_id: int, delivery_ids: list[int]) -> None:
    services.send_chunk(batch_id, delivery_ids)


@shared_task(name="notifications.housekeeping", ignore_result=True)
def housekeeping() -> None:
    """Every minute (beat): deliveries of dead workers UNKNOWN, batches past their quota pause resumed,
    stalled batches fanned out again, template-send reports matched to their deliveries."""
    services.mark_stale_unknown()
    services.resume_due()
    services.fan_out_stalled()
    services.apply_template_reports()


@shared_task(name="notifications.push_paid_order", ignore_result=True)
def push_paid_order(order_id: int) -> None:
    services.push_paid_order(order_id)
