"""Running the project in another process, as an operator would: a clean environment (settings are
read at import), `manage.py` commands, and a server on a port of its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

BASE_DIR = Path(__file__).resolve().parent.parent

# Variables the settings read (or that would point a subprocess elsewhere); none may leak in.
_SCRUB_PREFIXES = (
    "DJANGO_",
    "WECHAT",
    "ALIPAY",
    "GRAPHQL_",
    "JWT_",
    "SECURE_",
    "RATELIMIT_",
    "CELERY_",
    "DB_",
    "CACHE_",
)
_SCRUB_NAMES = {
    "DEBUG",
    "SECRET_KEY",
    "SANDBOX",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "REDIS_URL",
    "PORT",
    "HOST",
    "TEST_SQLITE",
    "GRAPHIQL",
    "PUBLIC_BASE_URL",
    "CORS_ALLOWED_ORIGINS",
    "BENCH_ENDPOINTS",
    "TRUST_X_FORWARDED_PROTO",
    "LOG_LEVEL",
    "SANDBOX_WECHATPAY_PLATFORM_PRIVATE_KEY",
}


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without anything the settings read, plus `overrides`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SCRUB_NAMES and not key.startswith(_SCRUB_PREFIXES)
    }
    env["READ_DOT_ENV"] = "0"
    env.update(overrides)
    return env


def run_python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python <args>` in the project root; the timeout only guards against a hung child."""
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gunicorn(port: int, *options: str) -> list[str]:
    """The production command (config/gunicorn.conf.py) on `port`, with `options` added."""
    executable = str(Path(sys.executable).with_name("gunicorn"))
    return [executable, "-c", "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", *options, "config.wsgi"]


@contextmanager
def running_server(
    env: dict[str, str], *, port: int, command: list[str] | None = None, degraded: bool = False, outage: bool = False
) -> Iterator[str]:
    """`manage.py migrate`, then `manage.py runserver` (what `make run` serves; or `command`) on `port`
    until the block ends; yields its base URL once /healthz answers 200. Its log may show no 500 and
    no traceback.

    `degraded`: its database or cache is down from the start: nothing is migrated and /healthz need only
    answer (503). `degraded` or `outage` (one is cut on purpose while it runs): its log may hold the
    tracebacks of the warnings about what is down (still never a 500)."""
    if not degraded:
        migrated = run_python(["manage.py", "migrate", "--noinput"], env)
        assert migrated.returncode == 0, migrated.stderr
    log = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads would stall a chatty server
    server = subprocess.Popen(  # noqa: S603 (our own manage.py or gunicorn)
        command or [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def output() -> str:
        log.seek(0)
        return log.read()

    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, output()
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == (503 if degraded else 200):
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /healthz within 60 s:\n" + output()
            time.sleep(0.2)
        yield url
        # Nothing the server logged may be a 500 or (but for what is down on purpose) a traceback.
        assert '" 500 ' not in output() and (degraded or outage or "Traceback" not in output()), output()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def make_run(tmp_path: Path, *args: str, while_running: Any = None) -> str:
    """Runs `make run` on a port of its own (and a SQLite file in `tmp_path`) until /healthz answers,
    then `while_running(base_url)`; its output."""
    port = free_port()
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", DEV_SECRETS_FILE=str(tmp_path / "s.json"))
    with tempfile.TemporaryFile(mode="w+") as log:
        make = subprocess.Popen(  # noqa: S603
            ["make", "--no-print-directory", "run", f"PORT={port}", *args],  # noqa: S607
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # make, and the runserver it starts, stop together
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                assert make.poll() is None, "make run exited"
                try:
                    if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "make run did not serve /healthz"
                time.sleep(0.3)
            if while_running is not None:
                while_running(f"http://127.0.0.1:{port}")
        finally:
            os.killpg(make.pid, signal.SIGTERM)
            make.wait(timeout=20)
        log.seek(0)
        return log.read()
