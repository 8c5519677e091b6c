"""bench/push.sh's gunicorn settings: production's (config/gunicorn.conf.py), plus the time each template
message reaches the sandbox, for the rate check: one line per request in $BENCH_PUSH_ARRIVALS.<pid>."""

import os
import runpy
import threading
import time
from pathlib import Path
from typing import IO, Any

globals().update(
    (name, value)
    for name, value in runpy.run_path(
        str(Path(__file__).resolve().parent.parent / "config" / "gunicorn.conf.py")
    ).items()
    if not name.startswith("__")
)

TEMPLATE_SEND = "/sandbox/wechat/cgi-bin/message/template/send"
_lock = threading.Lock()
_files: dict[int, IO[str]] = {}


def pre_request(worker: Any, req: Any) -> None:
    """Before the view runs: the arrival time, on the worker's own file (its threads share it)."""
    if req.path != TEMPLATE_SEND or not os.environ.get("BENCH_PUSH_ARRIVALS"):
        return
    stamp = time.time()
    with _lock:
        pid = os.getpid()
        if pid not in _files:
            _files[pid] = open(f"{os.environ['BENCH_PUSH_ARRIVALS']}.{pid}", "a", buffering=1)  # noqa: SIM115
        _files[pid].write(f"{stamp:.6f}\n")
