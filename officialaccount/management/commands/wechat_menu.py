"""The official account's menu: push a JSON file (checked against WeChat's limits first), show it, delete it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config import providers
from officialaccount.models import KeywordReply
from providers.http import ProviderError, ProviderUnavailable
from providers.wechat.official_account import OfficialAccountClient, validate_menu


def _click_keys(menu: dict[str, Any]) -> list[str]:
    buttons = [b for button in menu["button"] for b in [button, *(button.get("sub_button") or [])]]
    return [b["key"] for b in buttons if b.get("type") == "click"]


class Command(BaseCommand):
    help = "The official account's menu: `push menu.json`, `show` or `delete`."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="push FILE | show | delete")
        push = actions.add_parser("push", help="check the menu against WeChat's limits, then replace the menu")
        push.add_argument("file", help='the menu as JSON: {"button": [...]}, as menu/create takes it')
        actions.add_parser("show", help="print the current menu as JSON")
        actions.add_parser("delete", help="remove the menu (and every conditional menu)")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "push":
            menu = self._read(options["file"])
            self._call(lambda client: client.create_menu(menu))
            self.stdout.write(self.style.SUCCESS(f"menu pushed: {len(menu['button'])} buttons"))
            clicks = KeywordReply.objects.filter(match=KeywordReply.Match.CLICK, active=True)
            replied = set(clicks.values_list("keyword", flat=True))
            for key in _click_keys(menu):
                if key not in replied:
                    self.stderr.write(f"warning: CLICK key {key} has no active keyword reply (match: menu CLICK)")
        elif action == "show":
            current = self._call(lambda client: client.get_menu())
            self.stdout.write("no menu" if current is None else json.dumps(current, ensure_ascii=False, indent=2))
        else:
            self._call(lambda client: client.delete_menu())
            self.stdout.write(self.style.SUCCESS("menu deleted"))

    def _read(self, name: str) -> dict[str, Any]:
        try:
            menu = json.loads(Path(name).read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"{name} is not UTF-8 JSON: {exc}") from exc
        problems = validate_menu(menu)
        if problems:
            for problem in problems:
                self.stderr.write(f"  {problem}")
            raise CommandError(f"{name}: {len(problems)} problem(s), the menu was not pushed")
        return menu  # type: ignore[no-any-return]

    def _call(self, call: Any) -> Any:
        if not providers.official_account_ready():
            raise CommandError("Set WECHAT_OA_APPID and WECHAT_OA_SECRET first.")
        client: OfficialAccountClient = providers.official_account()
        try:
            return call(client)
        except ProviderError as exc:
            raise CommandError(f"WeChat refused: {exc.errcode} {exc.errmsg}") from exc
        except ProviderUnavailable as exc:
            raise CommandError(f"WeChat did not answer: {exc.message}") from exc
