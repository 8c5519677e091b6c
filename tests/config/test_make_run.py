"""`make run`, as a new user runs it: only this machine can reach it unless HOST says otherwise."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time

import pytest
import requests

from tests.processes import BASE_DIR, clean_env, free_port


def _make_run(tmp_path, *args: str) -> str:
    """Runs `make run` until /healthz answers; its output."""
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
        finally:
            os.killpg(make.pid, signal.SIGTERM)
            make.wait(timeout=20)
        log.seek(0)
        return log.read()


@pytest.mark.parametrize(
    ("args", "address", "warned"),
    [((), "127.0.0.1", False), (("HOST=0.0.0.0",), "0.0.0.0", True)],  # noqa: S104
    ids=["default", "exposed"],
)
def test_make_run_binds_this_machine_unless_told_otherwise(tmp_path, args, address, warned):
    output = _make_run(tmp_path, *args)
    assert f"Starting development server at http://{address}:" in output, output
    assert ("WARNING: serving on" in output) is warned, output
