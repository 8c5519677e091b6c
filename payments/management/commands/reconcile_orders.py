"""Queries pending orders and processing refunds; closes expired orders at the provider first."""

import datetime as dt

from django.core.management.base import BaseCommand, CommandParser

from payments.services import reconcile


class Command(BaseCommand):
    help = "Recover missed notifies: query pending orders and refunds, close expired orders."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=500, help="at most this many orders and refunds each")
        parser.add_argument(
            "--older-than",
            type=int,
            default=None,
            metavar="SECONDS",
            help="orders and refunds at least this old (default RECONCILE_AFTER, 300); 0 takes every one",
        )

    def handle(self, *args: object, **options: object) -> None:
        def progress(done: int, total: int) -> None:
            self.stdout.write(f"\r  reconciling {done}/{total}", ending="")
            self.stdout.flush()

        older_than = options["older_than"]
        report = reconcile(
            limit=int(options["limit"]),  # type: ignore[call-overload]
            older_than=None if older_than is None else dt.timedelta(seconds=int(older_than)),  # type: ignore[call-overload]
            progress=progress,
        )
        if report.checked or report.refunds or report.failed:
            self.stdout.write("")
        for number, why in report.failed:
            self.stdout.write(f"  failed {number}: {why}")
        self.stdout.write(
            f"checked {report.checked} orders: {report.paid} paid, {report.closed} closed; "
            f"{report.refunds} refunds completed; {len(report.failed)} failed"
        )
