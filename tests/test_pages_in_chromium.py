"""The pages people see, in headless Chromium at a laptop's 1280 px and a phone's 390 px: the admin's
orders and the sandbox's pages. Screenshots go to pytest's temporary directory (their paths are printed)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests import browser
from tests.helpers import CREATE_ORDER, LOGIN, create_order_input, sandbox_notifies
from tests.processes import clean_env, free_port, run_python, running_server

pytestmark = pytest.mark.browser


def _graphql(url: str, query: str, variables: dict[str, Any], token: str = "") -> Any:
    headers = {"Authorization": f"JWT {token}"} if token else {}
    answer = requests.post(
        f"{url}/graphql/", json={"query": query, "variables": variables}, headers=headers, timeout=30
    )
    assert "errors" not in answer.json(), answer.json()
    return answer.json()["data"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`make run`'s server (its dev superuser and demo products) with a paid and a pending order."""
    tmp = tmp_path_factory.mktemp("pages")
    port = free_port()
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}", DEV_SECRETS_FILE=str(tmp / "s.json"), PORT=str(port)
    )
    with running_server(env, port=port) as url:
        for command in ("ensure_dev_superuser", "seed_demo_products"):
            assert run_python(["manage.py", command], env).returncode == 0
        token = _graphql(url, LOGIN, {"code": "pages"})["wechatLogin"]["token"]
        orders = []
        for version in ("V3", "V2"):
            created = _graphql(url, CREATE_ORDER, create_order_input(version=version), token)["createWechatPayOrder"]
            orders.append(created["order"]["outTradeNo"])
        assert requests.post(f"{url}/sandbox/pay/{orders[0]}", timeout=30).status_code == 202
        assert [d["status"] for d in sandbox_notifies(url, orders[0])] in ([200], [204])
        yield {"url": url, "paid": orders[0], "pending": orders[1], "screenshots": tmp}


def _fits(driver: Any) -> tuple[int, int]:
    return driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")


def test_the_admin_orders_list_fits_1280_px(server):
    from selenium.webdriver.common.by import By

    with browser.chromium(width=1280) as driver:
        driver.get(f"{server['url']}/admin/login/?next=/admin/payments/order/")
        driver.find_element(By.NAME, "username").send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys("admin")
        driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        assert driver.find_element(By.ID, "result_list")
        rows = driver.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        assert len(rows) == 2 and "¥18.00 (1800 fen)" in rows[0].text
        scroll, inner = _fits(driver)
        browser.resize(driver, 1280)
        driver.save_screenshot(str(server["screenshots"] / "admin-orders-1280.png"))
        assert scroll <= inner, f"the orders list is {scroll} px wide in a {inner} px window"
        assert browser.problems(driver) == []
