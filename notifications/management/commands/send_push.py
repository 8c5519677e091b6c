"""Sends a push from the command line and follows it with a progress bar until it ends."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import AppError
from notifications import services
from notifications.models import PushBatch

WIDTH = 30


class Command(BaseCommand):
    help = "Send a template, subscribe or customer-service message to some users or all, showing progress."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--channel", required=True, choices=PushBatch.Channel.values)
        parser.add_argument("--template", default="", help="the template id (TEMPLATE, SUBSCRIBE)")
        parser.add_argument("--data", default="{}", help='the template\'s fields as JSON: {"thing1": "..."}')
        parser.add_argument("--page", default="", help="the mini-program page the message opens")
        parser.add_argument("--url", default="", help="TEMPLATE: the web page the message opens")
        parser.add_argument("--text", default="", help="CUSTOM: the text")
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--all", action="store_true", help="every active user with an openid in the app")
        who.add_argument("--users", default="", help="user ids, comma-separated")
        parser.add_argument("--no-wait", action="store_true", help="return once the push is queued")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = json.loads(options["data"])
            user_ids = [int(pk) for pk in options["users"].split(",") if pk.strip()]
        except ValueError as exc:
            raise CommandError(f"--data must be a JSON object and --users numbers: {exc}") from exc
        if not isinstance(data, dict):
            raise CommandError("--data must be a JSON object.")
        text = options["text"]
        try:
            batch = services.create_batch(
                created_by=None,
                channel=options["channel"],
                template_id=options["template"],
                data={str(key): str(value) for key, value in data.items()},
                page=options["page"],
                url=options["url"],
                message={"msgtype": "text", "text": {"content": text}} if text else None,
                user_ids=user_ids,
                all_users=options["all"],
            )
        except AppError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"push {batch.pk}: {batch.total} recipients")
        if not options["no_wait"]:
            batch = self._follow(batch)
        self.stdout.write(
            f"push {batch.pk} {batch.status}: {batch.sent} sent, {batch.skipped} skipped, {batch.failed} failed, "
            f"{batch.unknown} unknown, {batch.pending} pending"
            + (f" ({batch.stop_reason})" if batch.stop_reason else "")
        )

    def _follow(self, batch: PushBatch) -> PushBatch:
        while True:
            batch.refresh_from_db()
            done = batch.total - batch.pending
            filled = WIDTH * done // batch.total if batch.total else WIDTH
            self.stdout.write(f"\r  [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{batch.total}", ending="")
            self.stdout.flush()
            if batch.status != PushBatch.Status.RUNNING:
                self.stdout.write("")
                return batch
            time.sleep(1)
