"""The README's production section, run line by line as written: PostgreSQL, Redis, gunicorn, DEBUG=0.

Values of its own, each named below (its own database and Redis db, the sandbox instead of WeChat
credentials, a non-interactive createsuperuser, a port of its own); every command is the README's."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from tests.helpers import LOGIN, graphql_over_http
from tests.processes import BASE_DIR, clean_env, free_port

HOST = "api.example.com"
# What the proxy in front of gunicorn adds (the README: TLS ends there, TRUST_X_FORWARDED_PROTO=1).
PROXY_HEADERS = {"Host": HOST, "X-Forwarded-Proto": "https"}
SUPERUSER, PASSWORD = "ops", "a long production password"


def readme_production_block() -> list[str]:
    readme = (BASE_DIR / "README.md").read_text()
    section = readme[readme.index("\n## Production\n") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no sh block in the README's production section"
    return [line for line in block.group(1).splitlines() if line.strip()]


def as_run_here(lines: list[str], database: str) -> list[str]:
    """The README's lines with this test's values; each substitution must find its line (else the README
    changed and this test must follow it)."""
    out = []
    found = set()
    for line in lines:
        if "wxbackend" in line:
            line = line.replace("wxbackend", database)
            found.add("database")
        if "redis://127.0.0.1:6379/0" in line:
            # The Redis db the README names for the suite, under the suite's prefix.
            line = line.replace("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/15") + " CACHE_KEY_PREFIX=wxbtest"
            found.add("redis")
        if line.startswith("export WECHAT_MINIPROGRAM_APPID="):
            line = "export SANDBOX=1"  # as the README says, to try it with no credentials
            found.add("sandbox")
        if line.endswith("manage.py createsuperuser"):
            # Django's documented non-interactive form; the password comes from DJANGO_SUPERUSER_PASSWORD.
            line += f" --noinput --username {SUPERUSER} --email ops@example.com"
            found.add("superuser")
        if line.startswith(".venv/bin/gunicorn"):
            line = "exec " + line
            found.add("gunicorn")
        out.append(line)
    assert found == {"database", "redis", "sandbox", "superuser", "gunicorn"}, found
    assert out[-1].startswith("exec .venv/bin/gunicorn"), "gunicorn is the block's last line"
    return out


@contextmanager
def database(name: str) -> Iterator[None]:
    try:
        yield
    finally:
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=False)  # noqa: S607


@pytest.mark.postgres
@pytest.mark.redis
def test_the_readme_production_section_serves_as_written(tmp_path):
    port = free_port()
    name = f"wxb_prod_{port}"
    script = "set -euo pipefail\n" + "\n".join(as_run_here(readme_production_block(), name)) + "\n"
    env = clean_env(GUNICORN_BIND=f"127.0.0.1:{port}", DJANGO_SUPERUSER_PASSWORD=PASSWORD, WEB_CONCURRENCY="2")
    env.pop("READ_DOT_ENV")  # as an operator's shell: the checkout has no .env here
    url = f"http://127.0.0.1:{port}"
    with database(name), tempfile.TemporaryFile(mode="w+") as log:
        serving = subprocess.Popen(  # noqa: S603
            ["bash", "-c", script],  # noqa: S607
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def output() -> str:
            log.seek(0)
            return log.read()

        try:
            deadline = time.monotonic() + 300  # make install may install; migrate and collectstatic run
            while True:
                assert serving.poll() is None, output()
                try:
                    health = requests.get(f"{url}/healthz", headers=PROXY_HEADERS, timeout=2)
                    if health.status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, output()
                time.sleep(0.5)
            assert health.json() == {"status": "ok", "down": []}
            _check_it_serves(url)
        finally:
            os.killpg(serving.pid, signal.SIGTERM)
            serving.wait(timeout=30)
        text = output()
        assert "Traceback" not in text and '" 500 ' not in text, text


def _check_it_serves(url: str) -> None:
    # Plain http that did not come through the proxy is sent to https (but /healthz, for load balancers).
    redirect = requests.get(f"{url}/admin/login/", headers={"Host": HOST}, allow_redirects=False, timeout=10)
    assert redirect.status_code == 301 and redirect.headers["Location"] == f"https://{HOST}/admin/login/"

    # A mini-program login on the sandbox, and the product set_product added.
    # A code of its own: the sandbox keeps used codes in the shared Redis db, which outlives a run.
    code = f"prod-{secrets.token_hex(6)}"
    login = graphql_over_http(url, LOGIN, {"code": code}, headers=PROXY_HEADERS)["wechatLogin"]
    assert login["token"] and login["user"]["openid"]
    assert graphql_over_http(url, "{ products { sku title price } }", headers=PROXY_HEADERS) == {
        "products": [{"sku": "coffee", "title": "A cup of coffee", "price": 1800}]
    }
    # The superuser createsuperuser made can get a staff token.
    token_auth = 'mutation($p: String!) { tokenAuth(username: "ops", password: $p) { token } }'
    staff = graphql_over_http(url, token_auth, {"p": PASSWORD}, headers=PROXY_HEADERS)
    assert staff["tokenAuth"]["token"]

    # The admin is styled: its page links collectstatic's hashed stylesheet, and whitenoise serves it.
    page = requests.get(f"{url}/admin/login/", headers=PROXY_HEADERS, timeout=10)
    assert page.status_code == 200
    hashed = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page.text)
    assert hashed, page.text
    for path in (hashed.group(1), "/static/admin/css/base.css"):
        css = requests.get(f"{url}{path}", headers=PROXY_HEADERS, timeout=10)
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css"), path
        assert "body" in css.text
    cached = requests.get(f"{url}{hashed.group(1)}", headers=PROXY_HEADERS, timeout=10)
    assert "max-age=315360000" in cached.headers["Cache-Control"]  # hashed names never change

    # GraphiQL's own assets (GraphiQL itself is off with DEBUG=0 unless GRAPHIQL=1).
    for path in ("graphiql@2.4.7/graphiql.min.js", "react@17.0.2/umd/react.production.min.js"):
        asset = requests.get(f"{url}/static/vendor/{path}", headers=PROXY_HEADERS, timeout=10)
        assert asset.status_code == 200 and "javascript" in asset.headers["Content-Type"], path
