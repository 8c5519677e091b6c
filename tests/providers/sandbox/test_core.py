"""providers.sandbox.core on a shared cache: `claim` uses a key once or takes a pending fault, `locked` admits
one holder at a time; and the WeChat Pay simulator's order under concurrent cashiers."""

from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.cache import cache

from config import providers
from providers.sandbox.core import Sandbox, Write, claim, locked
from tests.factories import ProductFactory
from tests.helpers import CREATE_ORDER, create_order_input

THREADS = 16
CODE = Write("sbx:test:code:c1", 1, 60)
SESSION_KEY = "sbx:test:sk"
LOCK = "sbx:test:lock"


@pytest.fixture(params=["default", pytest.param("redis", marks=pytest.mark.redis)])
def store(request):
    """The default cache (the sandbox's own store, emptied around every test), or Redis through django-redis
    under a key prefix of this test's own."""
    if request.param == "default":
        yield cache
        return
    from django_redis.cache import RedisCache

    prefix = f"{settings.CACHE_KEY_PREFIX}:sbxtest:{uuid.uuid4().hex}"
    redis_cache = RedisCache(settings.REDIS_URL, {"KEY_PREFIX": prefix})
    yield redis_cache
    redis_cache.delete_pattern("*")
    redis_cache.close()


class _Slow:
    """`store` with a pause before every call, as over a network: concurrent callers interleave between calls."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name):
        method = getattr(self._inner, name)

        def slowly(*args, **kwargs):
            time.sleep(0.002)
            return method(*args, **kwargs)

        return slowly


def _sandbox(store) -> Sandbox:
    """A sandbox on `store` that knows the providers `wechat` and `wechatpay` by name (all set_fault needs)."""
    box = Sandbox(store)
    for name in ("wechat", "wechatpay"):
        box.register(SimpleNamespace(name=name))
    return box


# --- claim ---------------------------------------------------------------------------------


def test_claim_uses_a_key_once_and_writes_once(store):
    assert claim(store, "wechat", CODE, then=(Write(SESSION_KEY, "first", 60),)) is True
    assert store.get(CODE.key) == 1
    assert store.get(SESSION_KEY) == "first"
    # Used: refused, and the second claim's writes do not happen.
    assert claim(store, "wechat", CODE, then=(Write(SESSION_KEY, "second", 60),)) is False
    assert store.get(SESSION_KEY) == "first"


def test_claims_of_one_key_at_once_have_one_winner_whose_writes_stay(store, run_together):
    slow = _Slow(store)

    def attempt():
        mine = threading.get_ident()
        return mine, claim(slow, "wechat", CODE, then=(Write(SESSION_KEY, mine, 60),))

    results = run_together(attempt, THREADS)
    winners = [mine for mine, outcome in results if outcome is True]
    assert len(winners) == 1, results
    assert [outcome for _, outcome in results].count(False) == THREADS - 1
    assert store.get(SESSION_KEY) == winners[0]


@pytest.mark.parametrize(
    ("fault", "kinds"),
    [("http_500", None), ("timeout", None), ("bad_signature", ("bad_signature",))],
    ids=["answer-fault", "timeout", "asked-kind"],
)
def test_claim_takes_pending_faults_of_the_asked_kinds_first_and_leaves_the_key_unused(store, fault, kinds):
    box = _sandbox(store)
    box.set_fault("wechat", fault, 2)
    extra = {} if kinds is None else {"kinds": kinds}  # None: claim's default, the answer faults
    then = (Write(SESSION_KEY, "s", 60),)
    for left in (1, 0):
        assert claim(store, "wechat", CODE, then, **extra) == fault
        assert box.faults() == ({"wechat": {"fault": fault, "count": left}} if left else {})
        # A faulty answer used nothing up: the code still works afterwards.
        assert store.get(CODE.key) is None and store.get(SESSION_KEY) is None
    assert claim(store, "wechat", CODE, then, **extra) is True
    assert store.get(SESSION_KEY) == "s"


def test_concurrent_claims_take_a_pending_fault_exactly_count_times(store, run_together):
    box = _sandbox(store)
    box.set_fault("wechat", "http_500", 3)
    # Each claim a code of its own: only the fault is shared.
    slow = _Slow(store)
    outcomes = run_together(lambda: claim(slow, "wechat", Write(f"sbx:test:code:{uuid.uuid4().hex}", 1, 60)), THREADS)
    assert (outcomes.count("http_500"), outcomes.count(True)) == (3, THREADS - 3), outcomes
    assert box.faults() == {}


def test_claim_leaves_faults_of_other_kinds_pending(store):
    box = _sandbox(store)
    box.set_fault("wechat", "bad_signature", 1)  # spoils a signed answer: not one of the answer faults
    assert claim(store, "wechat", CODE) is True
    assert box.faults() == {"wechat": {"fault": "bad_signature", "count": 1}}


def test_claim_takes_no_fault_of_another_provider(store):
    box = _sandbox(store)
    box.set_fault("wechatpay", "http_500", 1)
    assert claim(store, "wechat", CODE) is True
    assert box.faults() == {"wechatpay": {"fault": "http_500", "count": 1}}


# --- locked --------------------------------------------------------------------------------


def test_locked_admits_one_holder_at_a_time(store, run_together):
    inside = 0
    most = 0
    guard = threading.Lock()

    def hold():
        nonlocal inside, most
        with locked(store, LOCK, wait=30):
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.01)  # long enough for an unlocked rival to be seen inside too
            with guard:
                inside -= 1
        return "done"

    assert run_together(hold, 8) == ["done"] * 8
    assert most == 1


def test_locked_is_released_after_the_block_and_when_it_raises(store):
    with locked(store, LOCK):
        assert store.get(LOCK) is not None
    assert store.get(LOCK) is None
    with pytest.raises(RuntimeError, match="inside the lock"), locked(store, LOCK):
        raise RuntimeError("inside the lock")
    assert store.get(LOCK) is None
    with locked(store, LOCK, wait=0):  # free: taken at once, without waiting
        pass


def test_a_waiter_gives_up_with_timeout_error_after_wait(store):
    assert store.add(LOCK, "another-holder", 60)
    ran = False
    started = time.monotonic()
    with pytest.raises(TimeoutError), locked(store, LOCK, wait=0.2):
        ran = True
    assert not ran
    assert 0.2 <= time.monotonic() - started < 5  # after `wait`, not the default 10 s
    assert store.get(LOCK) == "another-holder"  # the waiter neither took nor dropped it


def test_locked_does_not_release_a_lock_that_is_no_longer_its_own(store):
    with locked(store, LOCK):
        store.set(LOCK, "next-holder", 60)  # as if ours expired and another process took it
    assert store.get(LOCK) == "next-holder"


def test_the_lock_of_a_holder_that_died_expires_after_its_ttl(store):
    dead = locked(store, LOCK, ttl=1)
    dead.__enter__()  # its holder dies inside: the block never ends
    started = time.monotonic()
    with locked(store, LOCK, wait=10):
        waited = time.monotonic() - started
    assert 0.3 < waited < 5, waited


# --- through the WeChat Pay simulator ------------------------------------------------------------


def test_cashiers_paying_one_order_at_once_give_it_one_transaction_id(gql, run_together, monkeypatch):
    ProductFactory()
    gql.login("alice")
    created = gql(CREATE_ORDER, create_order_input())
    assert "errors" not in created, created
    number = created["data"]["createWechatPayOrder"]["order"]["outTradeNo"]
    simulator = providers.sandbox().providers["wechatpay"]
    read = simulator.order

    def slow_read(out_trade_no):
        # Unlocked, every cashier would read NOTPAY here and mint its own transaction id.
        order = read(out_trade_no)
        time.sleep(0.02)
        return order

    monkeypatch.setattr(simulator, "order", slow_read)
    paid = run_together(lambda: simulator.pay(number), 8)
    ids = {order["transaction_id"] for order in paid}
    assert len(ids) == 1 and "" not in ids, paid
    stored = read(number)
    assert stored["state"] == "SUCCESS"
    assert {stored["transaction_id"]} == ids
