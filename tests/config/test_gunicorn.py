"""config/gunicorn.conf.py, the production server: gthread workers, so a request waiting on a slow
provider holds a thread, and /healthz is still answered."""

from __future__ import annotations

import threading
import time

import requests

from tests.processes import clean_env, free_port, gunicorn, running_server

LOGIN = "mutation($c: String!) { wechatLogin(code: $c) { token } }"


def test_a_slow_provider_does_not_stall_healthz(tmp_path):
    port = free_port()
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        PROVIDER_READ_TIMEOUT="3",
        RATELIMIT_LOGIN="0",
        # One worker: were it a sync worker, the first waiting login would leave nobody to answer.
        WEB_CONCURRENCY="1",
    )
    with running_server(env, port=port, command=gunicorn(port)) as url:
        faults = {"provider": "wechat", "fault": "timeout", "count": 2}
        assert requests.post(f"{url}/sandbox/faults", json=faults, timeout=5).status_code == 200
        finished: list[tuple[str, float, int]] = []

        def login(n: int) -> None:
            response = requests.post(
                f"{url}/graphql/", json={"query": LOGIN, "variables": {"c": f"slow{n}"}}, timeout=30
            )
            finished.append(("login", time.monotonic(), response.status_code))

        waiting = [threading.Thread(target=login, args=(n,)) for n in range(2)]
        for thread in waiting:
            thread.start()
        time.sleep(0.5)  # both logins are in the sandbox's stalled answer now
        health = requests.get(f"{url}/healthz", timeout=30)
        finished.append(("healthz", time.monotonic(), health.status_code))
        for thread in waiting:
            thread.join(timeout=30)

    assert [(what, status) for what, _, status in finished][0] == ("healthz", 200), finished
    assert sorted(what for what, _, _ in finished) == ["healthz", "login", "login"]
