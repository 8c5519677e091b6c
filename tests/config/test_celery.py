"""The Celery app: Redis broker when REDIS_URL is set, inline tasks without it, a beat schedule of real tasks.

Each case runs in a subprocess with a controlled environment (tests/processes.py), since Celery
reads its configuration from the settings once, at import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.processes import clean_env, run_python

_CONFIG = """
import json
from config import celery_app
print(json.dumps({"broker": celery_app.conf.broker_url, "eager": celery_app.conf.task_always_eager}))
"""

# An order created at the sandbox that is already due and expired (ORDER_TTL=0, RECONCILE_AFTER=0), then the
# beat's task sent with .delay(): run inline, it closes the order before .delay() returns.
_EAGER = """
import json
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from accounts.models import User
from config import celery_app
from payments import services
from payments.models import Product
from payments.tasks import reconcile_orders
user = User.objects.create_user(username="buyer")
Product.objects.create(sku="coffee", title="Coffee", price=1800)
order = services.create_wechatpay_order(
    user=user, sku="coffee", quantity=1, trade_type="NATIVE", api_version="V2", client_ip="127.0.0.1"
).order
result = reconcile_orders.delay()
order.refresh_from_db()
print(json.dumps({
    "broker": celery_app.conf.broker_url,
    "ready": result.ready(),
    "status_after_delay": order.status,
    "result": result.get(timeout=5),
}))
"""

# What `celery -A config beat` and the worker do at start: import the app, then discover the tasks.
_BEAT = """
import json
from config import celery_app
celery_app.loader.import_default_modules()
schedule = {name: {"task": e["task"], "every": e["schedule"]} for name, e in celery_app.conf.beat_schedule.items()}
print(json.dumps({"schedule": schedule, "registered": sorted(celery_app.tasks)}))
"""


def _output(script: str, env: dict[str, str]) -> Any:
    result = run_python(["-c", script], {**env, "DJANGO_SETTINGS_MODULE": "config.settings"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_redis_url_is_the_broker_and_tasks_go_to_it():
    # Nothing connects: reading the configuration is enough, so any address will do.
    url = "redis://redis.internal:6380/3"
    assert _output(_CONFIG, clean_env(REDIS_URL=url)) == {"broker": url, "eager": False}


def test_embedded_default_runs_a_real_task_inline_without_a_broker(tmp_path: Path):
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}", ORDER_TTL="0", RECONCILE_AFTER="0")
    out = _output(_EAGER, env)
    # memory:// is no broker: queued there, the task would never run and the order would stay PENDING.
    assert out["broker"] == "memory://"
    assert out["ready"] is True
    assert out["status_after_delay"] == "CLOSED"
    assert out["result"] == {"checked": 1, "paid": 0, "closed": 1, "failed": 0}


def test_every_beat_entry_names_a_registered_task():
    out = _output(_BEAT, clean_env(RECONCILE_EVERY="45"))
    schedule = out["schedule"]
    assert schedule, "the beat schedule is empty"
    # A task renamed on one side only would leave beat sending messages no worker knows.
    unknown = {name: entry["task"] for name, entry in schedule.items() if entry["task"] not in out["registered"]}
    assert unknown == {}
    assert schedule["reconcile-orders"] == {"task": "payments.reconcile_orders", "every": 45}
