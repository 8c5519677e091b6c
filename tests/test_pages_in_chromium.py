"""The pages people see, in headless Chromium at a laptop's 1280 px and a phone's 390 px: the admin's
orders and the sandbox's pages. Screenshots go to pytest's temporary directory (their paths are printed)."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
from Crypto.PublicKey import RSA

from providers.alipay import signing
from providers.http import HttpConfig, make_session
from providers.sandbox.wechat import unionid_for
from providers.wechat.api import WechatAppConfig, WechatClient
from providers.wechat.official_account import OfficialAccountClient, OfficialAccountConfig
from providers.wechat.push import PushClient, PushOutcome
from providers.wechat.token import MemoryTokenStore
from tests import browser
from tests.helpers import CREATE_ORDER, LOGIN, create_order_input, graphql_over_http, sandbox_notifies
from tests.processes import clean_env, free_port, make_run, run_python, running_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`make run`'s server (its dev superuser and demo products) with a paid and a pending order."""
    tmp = tmp_path_factory.mktemp("pages")
    port = free_port()
    # The app's key and the one the sandbox signs as Alipay with: this test signs Alipay requests with the first.
    alipay_keys = tuple(RSA.generate(2048).export_key().decode() for _ in range(2))
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        DEV_SECRETS_FILE=str(tmp / "s.json"),
        PORT=str(port),
        ALIPAY_APPID=ALIPAY_APPID,
        ALIPAY_SELLER_ID="2088000000000001",
        ALIPAY_PRIVATE_KEY=alipay_keys[0],
        SANDBOX_ALIPAY_PRIVATE_KEY=alipay_keys[1],
    )
    with running_server(env, port=port) as url:
        for command in ("ensure_dev_superuser", "seed_demo_products"):
            assert run_python(["manage.py", command], env).returncode == 0
        token = graphql_over_http(url, LOGIN, {"code": "pages"})["wechatLogin"]["token"]
        orders = []
        for version in ("V3", "V2"):
            created = graphql_over_http(url, CREATE_ORDER, create_order_input(version=version), token)[
                "createWechatPayOrder"
            ]
            orders.append(created["order"]["outTradeNo"])
        assert requests.post(f"{url}/sandbox/pay/{orders[0]}", timeout=30).status_code == 202
        assert [d["status"] for d in sandbox_notifies(url, orders[0])] in ([200], [204])
        yield {
            "url": url,
            "paid": orders[0],
            "pending": orders[1],
            "screenshots": tmp,
            "alipay_keys": alipay_keys,
            # The server's PUBLIC_BASE_URL (its default): where its pages and notify URLs are.
            "public": f"http://localhost:{port}",
        }


ALIPAY_APPID = "9021000000000007"


def _alipay_request(server: dict[str, Any], method: str, biz: dict[str, Any], **extra: str) -> dict[str, str]:
    """A request signed with the app's key, as the Alipay SDKs sign them."""
    params = {
        "app_id": ALIPAY_APPID,
        "method": method,
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 8 * 3600)),
        "version": "1.0",
        "biz_content": signing.compact_json(biz),
        **extra,
    }
    params["sign"] = signing.sign(params, server["alipay_keys"][0])
    return params


def _alipay_trade(server: dict[str, Any], method: str, **extra: str) -> tuple[str, str]:
    """(out_trade_no, what the payer opens): a page or WAP pay URL, a precreate's qr_code, or an app order string."""
    number = "A" + str(time.time_ns())
    biz = {"out_trade_no": number, "total_amount": "18.00", "subject": "Coffee 咖啡"}
    if method == "alipay.trade.wap.pay":
        biz["quit_url"] = server["public"] + "/sandbox/"
    notify_url = server["public"] + "/notify/alipay/"
    params = _alipay_request(server, method, biz, notify_url=notify_url, **extra)
    gateway = f"{server['url']}/sandbox/alipay/gateway.do"
    if method == "alipay.trade.precreate":
        answer = requests.post(gateway, data=params, timeout=30).json()["alipay_trade_precreate_response"]
        assert answer["code"] == "10000", answer
        return number, answer["qr_code"]
    if method == "alipay.trade.app.pay":
        return number, urlencode(params)
    return number, f"{gateway}?{urlencode(params)}"


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
        assert len(rows) == 2 and "¥18.00\n1800 fen" in rows[0].text
        scroll, inner = _fits(driver)
        # The admin scrolls a table too wide for its column inside its own box: that must not happen either.
        table = driver.execute_script(
            "const box = document.querySelector('.results'); return [box.scrollWidth, box.clientWidth]"
        )
        assert table[0] <= table[1], f"the orders table needs {table[0]} px in a {table[1]} px column"
        browser.resize(driver, 1280)
        driver.save_screenshot(str(server["screenshots"] / "admin-orders-1280.png"))
        assert scroll <= inner, f"the orders list is {scroll} px wide in a {inner} px window"
        assert browser.problems(driver) == []


@pytest.mark.parametrize("width", [1280, 390])
def test_the_sandbox_pages_are_readable_at_1280_and_390_px(server, width):
    from selenium.webdriver.common.by import By

    pages = {
        "index": "/sandbox/",
        "cashier": f"/sandbox/pay/{server['pending']}",
        "result": f"/sandbox/pay/{server['paid']}/result",
        "not-found": "/sandbox/pay/no-such-order",
    }
    with browser.chromium(width=width) as driver:
        for name, path in pages.items():
            driver.get(server["url"] + path)
            assert driver.find_element(By.TAG_NAME, "h1").text
            scroll, inner = _fits(driver)
            assert scroll <= inner, f"{name} is {scroll} px wide in a {inner} px window"
            browser.resize(driver, width)
            driver.save_screenshot(str(server["screenshots"] / f"sandbox-{name}-{width}.png"))
            # A 404 page is the page's own status, not a failed load of anything it needs.
            assert [p for p in browser.problems(driver) if "no-such-order" not in p] == [], name


def test_pay_at_the_cashier_shows_the_result_page_with_our_servers_answer(server):
    from selenium.webdriver.common.by import By

    with browser.chromium(width=390) as driver:
        driver.get(f"{server['url']}/sandbox/pay/{server['pending']}")
        assert driver.find_element(By.ID, "state").text == "NOTPAY"
        driver.find_element(By.CSS_SELECTOR, "#pay button").click()
        browser.wait(driver, 20).until(lambda d: d.current_url.endswith(f"/sandbox/pay/{server['pending']}/result"))
        assert driver.find_element(By.TAG_NAME, "h1").text == "Paid"
        # The notify arrives from the sandbox's thread; the page shows our server's answer once it has.
        answer = browser.wait(driver, 20).until(
            lambda d: (text := d.find_element(By.CSS_SELECTOR, "#deliveries li").text) != "none yet" and text
        )
        assert "attempt 1" in answer and "HTTP 200" in answer and "SUCCESS" in answer, answer  # a v2 order
        driver.save_screenshot(str(server["screenshots"] / "sandbox-paid-390.png"))
        assert browser.problems(driver) == []


@pytest.mark.parametrize("width", [1280, 390])
def test_the_alipay_pages_are_readable_at_1280_and_390_px(server, width):
    from selenium.webdriver.common.by import By

    back = {"return_url": server["public"] + "/sandbox/"}
    _, page_pay = _alipay_trade(server, "alipay.trade.page.pay", **back)
    _, wap_pay = _alipay_trade(server, "alipay.trade.wap.pay", **back)
    _, qr_code = _alipay_trade(server, "alipay.trade.precreate")
    refused = page_pay.replace("Coffee", "Tea")  # changed after signing
    pages = {
        "alipay-cashier": (page_pay, "Alipay cashier"),
        "alipay-wap-cashier": (wap_pay, "Alipay cashier"),
        "alipay-scan": (qr_code, "Scanned with Alipay"),
        "alipay-app": (server["url"] + "/sandbox/alipay/app", "Alipay app"),
        "alipay-error": (refused, "Alipay refused the request"),
    }
    with browser.chromium(width=width) as driver:
        for name, (url, heading) in pages.items():
            driver.get(url)
            assert driver.find_element(By.TAG_NAME, "h1").text == heading, name
            if name != "alipay-app" and name != "alipay-error":
                assert driver.find_element(By.ID, "amount").text == "¥18.00"
                assert driver.find_element(By.ID, "state").text == "WAIT_BUYER_PAY"
            if name == "alipay-wap-cashier":
                assert driver.find_element(By.ID, "quit").get_attribute("href") == server["public"] + "/sandbox/"
            scroll, inner = _fits(driver)
            assert scroll <= inner, f"{name} is {scroll} px wide in a {inner} px window"
            browser.resize(driver, width)
            driver.save_screenshot(str(server["screenshots"] / f"sandbox-{name}-{width}.png"))
            # The error page's 400 is its own status, not a failed load of anything it needs.
            assert [p for p in browser.problems(driver) if "/sandbox/alipay/error" not in p] == [], name


def test_pay_at_the_alipay_cashier_returns_to_the_shop_with_a_signed_return(server):
    from selenium.webdriver.common.by import By

    shop = server["public"] + "/sandbox/"
    number, page_pay = _alipay_trade(server, "alipay.trade.page.pay", return_url=shop)
    with browser.chromium(width=390) as driver:
        driver.get(page_pay)  # the gateway sends the browser on to the cashier
        assert driver.current_url == f"{server['public']}/sandbox/alipay/cashier/{number}"
        assert driver.find_element(By.ID, "subject").text == "Coffee 咖啡"
        driver.find_element(By.CSS_SELECTOR, "#pay button").click()
        browser.wait(driver, 20).until(lambda d: "method=alipay.trade.page.pay.return" in d.current_url)
        landed = urlsplit(driver.current_url)
        assert f"{landed.scheme}://{landed.netloc}{landed.path}" == shop
        assert browser.problems(driver) == []
    params = dict(parse_qsl(landed.query))
    assert (params["out_trade_no"], params["total_amount"], params["app_id"]) == (number, "18.00", ALIPAY_APPID)
    alipay_public_key = RSA.import_key(server["alipay_keys"][1]).public_key().export_key().decode()
    assert signing.verify(params, alipay_public_key)
    # The notify went to our server from the sandbox's thread (answered by our notify view).
    notifies = f"{server['url']}/sandbox/alipay/cashier/{number}/notifies"
    deadline = time.monotonic() + 20
    while not (seen := requests.get(notifies, timeout=10).json())["deliveries"]:
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    assert seen["trade_status"] == "TRADE_SUCCESS" and seen["deliveries"][0]["attempt"] == 1


def test_the_alipay_scan_page_pays_and_shows_our_servers_answer(server):
    from selenium.webdriver.common.by import By

    number, qr_code = _alipay_trade(server, "alipay.trade.precreate")
    with browser.chromium(width=390) as driver:
        driver.get(qr_code)
        driver.find_element(By.CSS_SELECTOR, "#pay button").click()
        browser.wait(driver, 20).until(lambda d: d.current_url.endswith(f"/cashier/{number}/result"))
        assert driver.find_element(By.TAG_NAME, "h1").text == "Paid"
        assert driver.find_element(By.ID, "state").text == "TRADE_SUCCESS"
        # The notify arrives from the sandbox's thread; the page shows our server's answer once it has.
        answer = browser.wait(driver, 20).until(
            lambda d: (text := d.find_element(By.CSS_SELECTOR, "#deliveries li").text) != "none yet" and text
        )
        assert "attempt 1" in answer and "HTTP " in answer, answer
        driver.save_screenshot(str(server["screenshots"] / "sandbox-alipay-scan-paid-390.png"))
        assert browser.problems(driver) == []


def test_the_alipay_app_page_takes_a_pasted_order_string_and_pays_it(server):
    from selenium.webdriver.common.by import By

    number, order_string = _alipay_trade(server, "alipay.trade.app.pay")
    with browser.chromium(width=390) as driver:
        driver.get(server["url"] + "/sandbox/alipay/app")
        pasted = driver.find_element(By.ID, "order-string")
        driver.execute_script("arguments[0].value = arguments[1]", pasted, order_string)  # a paste
        driver.find_element(By.CSS_SELECTOR, "#app button").click()
        browser.wait(driver, 20).until(lambda d: d.current_url.endswith(f"/sandbox/alipay/cashier/{number}"))
        assert driver.find_element(By.TAG_NAME, "h1").text == "Alipay app"
        assert driver.find_element(By.ID, "amount").text == "¥18.00"
        driver.find_element(By.CSS_SELECTOR, "#pay button").click()
        browser.wait(driver, 20).until(lambda d: d.current_url.endswith(f"/cashier/{number}/result"))
        app_result = json.loads(driver.find_element(By.ID, "app-result").text)
        assert app_result["alipay_trade_app_pay_response"]["out_trade_no"] == number
        assert app_result["alipay_trade_app_pay_response"]["code"] == "10000"
        driver.save_screenshot(str(server["screenshots"] / "sandbox-alipay-app-paid-390.png"))
        assert browser.problems(driver) == []


def _official_account(server: dict[str, Any]) -> OfficialAccountClient:
    """Our official account's client against the server's sandbox (the same settings' sandbox defaults)."""
    from django.conf import settings

    pages = server["url"] + "/sandbox/wechat"
    config = OfficialAccountConfig(
        appid=settings.WECHAT_OA_APPID,
        secret=settings.WECHAT_OA_SECRET,
        base_url=pages,
        open_base_url=pages,
        mp_base_url=pages,
    )
    http = HttpConfig()
    return OfficialAccountClient(config, make_session(http), http, MemoryTokenStore())


@pytest.mark.parametrize("width", [1280, 390])
def test_the_official_account_pages_are_readable_at_1280_and_390_px(server, width):
    from selenium.webdriver.common.by import By

    oa = _official_account(server)
    code = oa.create_temporary_qrcode("pages-bind", 600)
    consent = oa.authorize_url(server["public"] + "/sandbox/", "snsapi_userinfo", "pages")
    pages = {
        "oa-consent": (consent, "WeChat authorization"),
        "oa-phone": (server["url"] + "/sandbox/wechat/official-account/phone", "Follower's phone"),
        "oa-showqrcode": (code.image_url, "Scene QR code"),
        "oa-refused": (consent.replace("appid=", "appid=wx-nobody"), "WeChat refuses this request"),
    }
    with browser.chromium(width=width) as driver:
        for name, (url, heading) in pages.items():
            driver.get(url)
            assert driver.find_element(By.TAG_NAME, "h1").text == heading, name
            if name == "oa-showqrcode":
                assert driver.find_element(By.ID, "scene").text == "pages-bind"
                assert driver.find_element(By.CSS_SELECTOR, "#qr svg").size["width"] > 100
            scroll, inner = _fits(driver)
            assert scroll <= inner, f"{name} is {scroll} px wide in a {inner} px window"
            browser.resize(driver, width)
            driver.save_screenshot(str(server["screenshots"] / f"sandbox-{name}-{width}.png"))
            # The refusal's 400 is its own status, not a failed load of anything it needs.
            assert [p for p in browser.problems(driver) if "wx-nobody" not in p] == [], name


def test_allow_on_the_consent_page_goes_back_with_a_code_of_the_mini_program_users_unionid(server):
    from selenium.webdriver.common.by import By

    oa = _official_account(server)
    back = server["public"] + "/sandbox/"
    with browser.chromium(width=390) as driver:
        driver.get(oa.authorize_url(back, "snsapi_userinfo", "chromium"))
        user = driver.find_element(By.ID, "user")
        user.clear()
        user.send_keys("pages")  # the server fixture's mini-program login code
        driver.find_element(By.ID, "allow").click()
        browser.wait(driver, 20).until(lambda d: "code=" in d.current_url)
        landed = urlsplit(driver.current_url)
        assert browser.problems(driver) == []
    assert f"{landed.scheme}://{landed.netloc}{landed.path}" == back
    params = dict(parse_qsl(landed.query))
    assert params["state"] == "chromium"
    token = oa.oauth_access_token(params["code"])
    assert token.unionid == unionid_for("pages") and not token.is_snapshotuser


def test_the_phone_page_sends_a_text_and_shows_our_servers_answer_then_sends_it_again(server):
    from selenium.webdriver.common.by import By

    with browser.chromium(width=390) as driver:
        driver.get(server["url"] + "/sandbox/wechat/official-account/phone")
        user = driver.find_element(By.ID, "user")
        user.clear()
        user.send_keys("pages")
        content = driver.find_element(By.ID, "content")
        content.clear()
        content.send_keys("hello from chromium")
        driver.find_element(By.ID, "send-text").click()
        browser.wait(driver, 20).until(lambda d: "?sent=" in d.current_url)
        assert driver.find_element(By.ID, "sent-message").text == "hello from chromium"
        # Whatever our server URL answers (its view is its own test's business), the page shows it.
        assert driver.find_element(By.ID, "answer").text.startswith("Our server: HTTP ")
        first = driver.current_url
        driver.find_element(By.CSS_SELECTOR, "#again button").click()
        browser.wait(driver, 20).until(lambda d: d.current_url != first)
        assert driver.find_element(By.TAG_NAME, "h2").text == "Sent again (attempt 2)"
        scroll, inner = _fits(driver)
        assert scroll <= inner, f"the phone page is {scroll} px wide in a {inner} px window"
        browser.resize(driver, 390)
        driver.save_screenshot(str(server["screenshots"] / "sandbox-oa-phone-sent-390.png"))
        assert browser.problems(driver) == []


def _push_clients(server: dict[str, Any]) -> tuple[PushClient, PushClient]:
    """The mini-program's and the official account's senders against the server's sandbox, over HTTP."""
    from django.conf import settings

    http = HttpConfig()
    apps = [
        (settings.WECHAT_MINIPROGRAM_APPID, settings.WECHAT_MINIPROGRAM_SECRET),
        (settings.WECHAT_OA_APPID, settings.WECHAT_OA_SECRET),
    ]
    mp, oa = (
        PushClient(
            WechatClient(
                WechatAppConfig(appid=appid, secret=secret, base_url=server["url"] + "/sandbox/wechat"),
                make_session(http),
                http,
                MemoryTokenStore(),
            )
        )
        for appid, secret in apps
    )
    return mp, oa


@pytest.fixture(scope="module")
def inbox(server: dict[str, Any]) -> dict[str, Any]:
    """A subscribe message to inbox-alice, a template message and a text to inbox-bob, through the server's sandbox."""
    mp, oa = _push_clients(server)
    granted = requests.post(
        server["url"] + "/sandbox/inbox/subscriptions",
        json={"user": "inbox-alice", "template_id": "sub-paid"},
        timeout=30,
    ).json()
    sent = mp.send_subscribe(
        openid=granted["openid"],
        template_id="sub-paid",
        data={"phrase1": "已支付", "amount2": "¥36.00", "thing3": "拿铁 Latte × 2"},
        page="pages/order/detail?id=42",
    )
    assert sent.outcome is PushOutcome.SENT, sent
    # inbox-bob follows the account on the sandbox's phone page: the sandbox knows the name behind the openid.
    phone = server["url"] + "/sandbox/wechat/official-account/phone"
    bob = requests.post(phone, json={"user": "inbox-bob", "kind": "subscribe", "mode": "plain"}, timeout=30).json()
    data = {
        "thing1": "拿铁 Latte × 2",
        "amount2": "¥36.00",
        "character_string3": "WX2024050112345678901234567890",
        "time4": "2024年5月1日 15:01",
    }
    sent = oa.send_template(
        openid=bob["openid"], template_id="tmpl-paid", data=data, url=server["public"] + "/sandbox/"
    )
    assert sent.outcome is PushOutcome.SENT, sent
    message = {"msgtype": "text", "text": {"content": "您的订单已发货，预计明天送达。Your order has shipped."}}
    assert oa.send_custom(openid=bob["openid"], message=message).outcome is PushOutcome.SENT
    return {"url": server["url"] + "/sandbox/inbox"}


@pytest.mark.parametrize("width", [1280, 390])
def test_the_inbox_shows_cards_and_bubbles_at_1280_and_390_px(server, inbox, width):
    from selenium.webdriver.common.by import By

    with browser.chromium(width=width) as driver:
        driver.get(inbox["url"])
        assert driver.find_element(By.TAG_NAME, "h1").text == "Inbox"
        bob = driver.find_element(By.ID, "inbox-inbox-bob")
        # Newest first: the text bubble, then the template card with its fields and its link.
        assert bob.find_element(By.CSS_SELECTOR, ".row.custom .bubble").text.startswith("您的订单已发货")
        card = bob.find_element(By.CSS_SELECTOR, "article.push.template")
        assert card.find_element(By.TAG_NAME, "h3").text == "tmpl-paid"
        fields = [row.text.split("\n") for row in card.find_elements(By.CSS_SELECTOR, "dl div")]
        assert fields[0] == ["thing1", "拿铁 Latte × 2"] and len(fields) == 4
        assert card.find_element(By.LINK_TEXT, "Details").get_attribute("href") == server["public"] + "/sandbox/"
        alice = driver.find_element(By.ID, "inbox-inbox-alice")
        subscribe = alice.find_element(By.CSS_SELECTOR, "article.push.subscribe")
        assert "pages/order/detail?id=42" in subscribe.find_element(By.TAG_NAME, "footer").text
        scroll, inner = _fits(driver)
        assert scroll <= inner, f"the inbox is {scroll} px wide in a {inner} px window"
        browser.resize(driver, width)
        driver.save_screenshot(str(server["screenshots"] / f"sandbox-inbox-{width}.png"))
        assert browser.problems(driver) == []


def test_the_inbox_filters_by_user_and_grants_a_subscription(server, inbox):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with browser.chromium(width=390) as driver:
        driver.get(inbox["url"])
        Select(driver.find_element(By.ID, "user")).select_by_value("inbox-alice")
        driver.find_element(By.CSS_SELECTOR, "#filter button").click()
        browser.wait(driver, 20).until(lambda d: d.current_url.endswith("?user=inbox-alice"))
        assert [s.get_attribute("id") for s in driver.find_elements(By.CSS_SELECTOR, "section.inbox")] == [
            "inbox-inbox-alice"
        ]
        # The user accepts two more subscriptions, as wx.requestSubscribeMessage does.
        driver.find_element(By.ID, "grant-template").send_keys("sub-shipped")
        count = driver.find_element(By.ID, "grant-count")
        count.clear()
        count.send_keys("2")
        driver.find_element(By.CSS_SELECTOR, "#grant button").click()
        browser.wait(driver, 20).until(lambda d: "sub-shipped" in d.find_element(By.CLASS_NAME, "tools").text)
        assert driver.current_url.endswith("?user=inbox-alice")
        assert "sub-shipped ×2" in driver.find_element(By.CLASS_NAME, "tools").text
        assert browser.problems(driver) == []
    left = requests.get(server["url"] + "/sandbox/inbox/subscriptions", params={"user": "inbox-alice"}, timeout=30)
    assert left.json()["subscriptions"] == {"sub-paid": 0, "sub-shipped": 2}


def test_the_readme_tour_in_chromium_on_make_run_on_another_port(tmp_path):
    """The README's tour, as a newcomer follows it offline: `make run` on a port of its own; GraphiQL logs
    in, orders and queries; the sandbox cashier pays; the dev superuser refunds part of it."""
    from selenium.webdriver.common.by import By

    def tour(url: str) -> None:
        with browser.chromium() as driver:
            driver.get(f"{url}/graphql/")
            login = browser.graphiql_run(driver, 'mutation { wechatLogin(code: "alice") { token user { openid } } }')
            user = json.dumps({"Authorization": "JWT " + login["data"]["wechatLogin"]["token"]})
            order = browser.graphiql_run(
                driver,
                "mutation { createWechatPayOrder(input: "
                '{sku: "coffee", quantity: 1, tradeType: JSAPI, apiVersion: V3}) { order { outTradeNo status amount }'
                " payParams { appId timeStamp nonceStr package signType paySign } } }",
                headers=user,
            )["data"]["createWechatPayOrder"]
            assert order["order"]["status"] == "PENDING" and order["payParams"]["signType"] == "RSA"
            number = order["order"]["outTradeNo"]

            driver.get(f"{url}/sandbox/pay/{number}")
            driver.find_element(By.CSS_SELECTOR, "#pay button").click()
            browser.wait(driver, 20).until(
                lambda d: "HTTP 204" in d.find_element(By.CSS_SELECTOR, "#deliveries li").text
            )

            driver.get(f"{url}/graphql/")
            query = f'{{ order(outTradeNo: "{number}") {{ status amount refundedAmount transactionId }} }}'
            paid = browser.graphiql_run(driver, query, headers=user)["data"]["order"]
            assert paid["status"] == "PAID" and paid["transactionId"].startswith("4200")

            staff = browser.graphiql_run(
                driver, 'mutation { tokenAuth(username: "admin", password: "admin") { token } }', headers="{}"
            )
            admin = json.dumps({"Authorization": "JWT " + staff["data"]["tokenAuth"]["token"]})
            refund = browser.graphiql_run(
                driver,
                f'mutation {{ refundOrder(outTradeNo: "{number}", amount: 800, reason: "one cup short")'
                " { outRefundNo status amount } }",
                headers=admin,
            )["data"]["refundOrder"]
            assert refund["amount"] == 800 and refund["status"] in ("PROCESSING", "SUCCESS")
            # The sandbox completes the refund and sends its notify a moment later.
            deadline = time.monotonic() + 30
            while True:
                after = browser.graphiql_run(driver, query, headers=user)
                if after["data"]["order"]["refundedAmount"] == 800:
                    break
                assert time.monotonic() < deadline, after
                time.sleep(0.5)
            assert after["data"]["order"]["status"] == "PAID"
            driver.save_screenshot(str(tmp_path / "tour-graphiql.png"))
            assert browser.problems(driver) == []

    output = make_run(tmp_path, while_running=tour)
    assert "Starting development server at http://127.0.0.1:" in output
