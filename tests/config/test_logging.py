"""What the log shows at LOG_LEVEL=DEBUG in development: never a session_key or the appsecret.

A subprocess, because logging is configured from the settings once, at start; the real handler
writes to its stderr, which is what an operator would read.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.processes import clean_env, run_python

_SECRET = "appsecret-that-must-not-be-logged"

_FLOW = """
import http.server, json, logging, threading
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
import requests
from django.test import Client
from accounts.models import WechatIdentity

login = Client().post(
    "/graphql/",
    {"query": 'mutation { wechatLogin(code: "alice") { token } }'},
    content_type="application/json",
).json()

# A provider call as urllib3 sees it: jscode2session carries the appsecret in its query string.
class Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
threading.Thread(target=server.serve_forever, daemon=True).start()
status = requests.get(
    f"http://127.0.0.1:{server.server_port}/sns/jscode2session", params={"secret": "SECRET"}, timeout=5
).status_code
server.shutdown()
print(json.dumps({
    "login": login,
    "session_key": WechatIdentity.objects.get().session_key,
    "status": status,
    "root_level": logging.getLogger().getEffectiveLevel(),
}))
""".replace("SECRET", _SECRET)


def test_debug_log_level_in_development_shows_no_session_key_or_secret(tmp_path: Path):
    env = clean_env(DEBUG="1", LOG_LEVEL="DEBUG", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}")
    result = run_python(["-c", _FLOW], {**env, "DJANGO_SETTINGS_MODULE": "config.settings"})
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["login"]["data"]["wechatLogin"]["token"], out["login"]
    assert out["status"] == 200
    assert out["root_level"] == 10  # DEBUG: everything not held back on purpose reaches the log
    log = result.stderr
    assert "INFO accounts.services" in log and "wechat login openid=" in log  # the real handler wrote here
    assert out["session_key"] not in log
    assert _SECRET not in log
