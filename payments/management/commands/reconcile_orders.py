"""Queries pending orders and processing refunds; closes expired orders at the provider first."""

from django.core.management.base import BaseCommand, CommandParser

from payments.services import reconcile


class Command(BaseCommand):
    help = "Recover missed notifies: query pending orders and refunds, close expired orders."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=500, help="at most this many orders and refunds each")

    def handle(self, *args: object, **options: object) -> None:
        def progress(done: int, total: int) -> None:
            self.stdout.write(f"\r  reconciling {done}/{total}", ending="")
            self.stdout.flush()

        report = reconcile(limit=int(options["limit"]), progress=progress)  # type: ignore[call-overload]
        if report.checked or report.refunds or report.failed:
            self.stdout.write("")
        self.stdout.write(
            f"checked {report.checked} orders: {report.paid} paid, {report.closed} closed; "
            f"{report.refunds} refunds completed; {len(report.failed)} failed"
            + (f" ({', '.join(report.failed[:10])})" if report.failed else "")
        )
