"""manage.py wechat_menu push | show | delete, against the sandbox's WeChat in-process."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from config import providers
from officialaccount.models import KeywordReply
from providers.sandbox.core import SandboxRequest, SandboxResponse
from providers.wechat.official_account import validate_menu

pytestmark = pytest.mark.django_db

MENU_PATHS = ("/cgi-bin/menu/create", "/cgi-bin/menu/get", "/cgi-bin/menu/delete")


@pytest.fixture
def wechat(oa: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The sandbox's WeChat with the official account, recording every menu call it receives."""
    simulator = providers.sandbox().providers["wechat"]
    calls: list[str] = []
    real = simulator.handle

    def handle(request: SandboxRequest) -> SandboxResponse:
        if request.path in MENU_PATHS:
            calls.append(request.path)
        return real(request)

    monkeypatch.setattr(simulator, "handle", handle)
    simulator.menu_calls = calls
    return simulator


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("wechat_menu", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


EXAMPLE = Path(settings.BASE_DIR) / "menu.json"


def test_the_example_menu_is_valid_and_its_click_keys_are_answered(db):
    menu = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert validate_menu(menu) == []
    assert len(menu["button"]) == 3
    assert any(button.get("sub_button") for button in menu["button"])
    keys = [
        b["key"]
        for button in menu["button"]
        for b in [button, *button.get("sub_button", [])]
        if b.get("type") == "click"
    ]
    sub_keys = [b["key"] for button in menu["button"] for b in button.get("sub_button", []) if b.get("type") == "click"]
    assert sub_keys and {"view"} <= {
        b.get("type") for button in menu["button"] for b in [button, *button.get("sub_button", [])]
    }
    # The seeded replies (migration 0002) answer each CLICK key.
    assert set(keys) <= set(KeywordReply.objects.filter(match="click", active=True).values_list("keyword", flat=True))


def test_push_then_show_then_delete(wechat):
    out, err = run("push", str(EXAMPLE))
    assert "menu pushed: 3 buttons" in out and err == ""
    assert wechat.menu_calls == ["/cgi-bin/menu/create"]
    out, _ = run("show")
    shown = json.loads(out)
    assert shown["menu"]["button"][1]["sub_button"][1]["key"] == "MENU_BIND"
    # As menu/get answers it: every button with a sub_button list (empty for a leaf).
    assert shown["menu"]["button"][0] == {**json.loads(EXAMPLE.read_text())["button"][0], "sub_button": []}
    out, _ = run("delete")
    assert "menu deleted" in out
    assert run("show")[0].strip() == "no menu"


def test_push_warns_about_a_click_key_without_a_reply(wechat, tmp_path):
    path = tmp_path / "menu.json"
    path.write_text(json.dumps({"button": [{"type": "click", "name": "News", "key": "MENU_NEWS"}]}))
    out, err = run("push", str(path))
    assert "menu pushed: 1 buttons" in out
    assert "CLICK key MENU_NEWS has no active keyword reply" in err


def test_an_invalid_menu_prints_every_problem_and_calls_nothing(wechat, tmp_path):
    run("push", str(EXAMPLE))
    wechat.menu_calls.clear()
    bad = {
        "button": [
            {"type": "click", "name": "a name far longer than sixteen bytes", "key": "K"},
            {"type": "view", "name": "Site", "url": "ftp://example.com"},
            {"name": "More", "sub_button": [{"type": "click", "name": f"s{i}", "key": "k"} for i in range(6)]},
        ]
    }
    path = tmp_path / "menu.json"
    path.write_text(json.dumps(bad))
    err = StringIO()
    with pytest.raises(CommandError, match=r"3 problem\(s\), the menu was not pushed"):
        call_command("wechat_menu", "push", str(path), stdout=StringIO(), stderr=err)
    assert err.getvalue().splitlines() == [
        "  button[0].name: 36 bytes, at most 16",
        "  button[1].url: must be an http(s) URL",
        "  button[2].sub_button: must be a list of 1 to 5 buttons",
    ]
    assert wechat.menu_calls == []
    # The menu at WeChat is still the one pushed before.
    assert json.loads(run("show")[0])["menu"]["button"][2]["key"] == "MENU_HELP"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"{not json", "is not UTF-8 JSON"),
        (b"\xff\xfe", "is not UTF-8 JSON"),
        (b"[]", "1 problem"),
    ],
)
def test_unreadable_files_are_clean_errors(wechat, tmp_path, content, message):
    path = tmp_path / "menu.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        run("push", str(path))
    assert wechat.menu_calls == []


def test_wechat_refusing_is_a_clean_error(wechat, monkeypatch):
    real = wechat.handle

    def refuse(request: SandboxRequest) -> SandboxResponse:
        if request.path == "/cgi-bin/menu/create":
            return SandboxResponse.json({"errcode": 40018, "errmsg": "invalid button name size"})
        return real(request)

    monkeypatch.setattr(wechat, "handle", refuse)
    with pytest.raises(CommandError, match="WeChat refused: 40018 invalid button name size"):
        run("push", str(EXAMPLE))


def test_wechat_not_answering_is_a_clean_error(wechat):
    run("push", str(EXAMPLE))  # the access token is fetched before the fault
    providers.sandbox().set_fault("wechat", "http_500", 5)
    with pytest.raises(CommandError, match="WeChat did not answer"):
        run("show")


def test_no_official_account_configured(db, settings):
    settings.WECHAT_OA_APPID = ""
    settings.WECHAT_OA_SECRET = ""
    providers.reset()
    with pytest.raises(CommandError, match="Set WECHAT_OA_APPID and WECHAT_OA_SECRET first"):
        run("show")
