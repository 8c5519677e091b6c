from celery import shared_task

from payments.services import reconcile


@shared_task(name="payments.reconcile_orders")
def reconcile_orders() -> dict[str, int]:
    report = reconcile()
    return {"checked": report.checked, "paid": report.paid, "closed": report.closed, "failed": len(report.failed)}
