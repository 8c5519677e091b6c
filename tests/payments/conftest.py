"""Fixtures of the payments tests: the products, the people, and the WeChat Pay sandbox delivering
its notifies to our views in-process."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from payments import notifies, services
from payments.models import Product
from tests.factories import ProductFactory, StaffFactory, UserFactory

# Its helpers assert as they go: have pytest explain a failing one (imported after this line).
pytest.register_assert_rewrite("tests.payments.notify_bodies")

from tests.payments.notify_bodies import post_notify, simulator  # noqa: E402


@pytest.fixture
def products(db: Any) -> dict[str, Product]:
    return {"coffee": ProductFactory(sku="coffee", price=1800), "sticker": ProductFactory(sku="sticker", price=1)}


@pytest.fixture
def buyer(db: Any) -> User:
    return UserFactory(username="buyer")


@pytest.fixture
def staff(db: Any) -> User:
    return StaffFactory()


@pytest.fixture
def wechatpay_sandbox() -> Any:
    """The WeChat Pay simulator, delivering notifies through Django's test client (same thread, same
    database, once: a retry would come from a thread of its own); refunds complete only when a test
    completes them."""
    sandbox = simulator()
    client = Client()

    def deliver(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        response = post_notify(url, headers, body, client)
        return response.status_code, response.content.decode()

    sandbox.deliver = deliver
    sandbox.auto_refund_notify = False
    sandbox.retry_seconds = ()
    return sandbox


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[tuple[str, str]]]:
    """(the outcome of every notify's apply_trade, every order transition), as they happen: what tests
    of concurrent notifies count."""
    outcomes: list[Any] = []
    transitions: list[tuple[str, str]] = []
    real_apply, real_transition = notifies.apply_trade, services.transition

    def counting_apply(trade: Any, *, source: str) -> Any:
        outcome = real_apply(trade, source=source)
        outcomes.append(outcome)
        return outcome

    def counting_transition(locked: Any, new: str) -> None:
        transitions.append((locked.out_trade_no, new))
        real_transition(locked, new)

    monkeypatch.setattr(notifies, "apply_trade", counting_apply)
    monkeypatch.setattr(services, "transition", counting_transition)
    return outcomes, transitions
