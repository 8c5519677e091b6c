"""GraphiQL at /graphql/ works offline: its assets are ours (graphene-django's pinned versions and
hashes), and in headless Chromium the page renders and a query typed into it returns data."""

from __future__ import annotations

import os
import re

import pytest
from django.contrib.staticfiles import finders

from scripts.vendor_graphiql import assets, sri
from tests import browser
from tests.processes import clean_env, free_port, run_python, running_server


@pytest.mark.parametrize("asset", assets(), ids=lambda a: f"{a.package}@{a.version}/{a.path}")
def test_each_graphiql_asset_is_vendored_as_graphene_django_pins_it(asset):
    found = finders.find(asset.static_path)
    # Run scripts/vendor_graphiql.py after upgrading graphene-django: its pins moved.
    assert found, f"{asset.static_path} is missing: run scripts/vendor_graphiql.py"
    with open(found, "rb") as file:
        assert sri(file.read()) == asset.sri
    package_dir = finders.find(f"vendor/{asset.package}@{asset.version}")
    assert {"LICENSE", "LICENSE.md", "package.json"} & set(os.listdir(package_dir)), package_dir


def test_the_graphiql_page_loads_nothing_from_another_host(client):
    page = client.get("/graphql/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    html = page.content.decode()
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    # The icon, 2 stylesheets and 7 scripts.
    assert len(urls) == 10 and all(url.startswith("/static/") for url in urls), urls
    # The browser checks each file against graphene-django's hash, as it did from the CDN.
    assert html.count('integrity="sha256-') == 8


@pytest.mark.browser
def test_graphiql_renders_and_answers_a_typed_query_in_chromium(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", DEV_SECRETS_FILE=str(tmp_path / "s.json"))
    with running_server(env, port=port) as url, browser.chromium() as driver:
        assert run_python(["manage.py", "seed_demo_products"], env).returncode == 0
        driver.get(f"{url}/graphql/")
        wait = WebDriverWait(driver, 20)
        editor = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".graphiql-query-editor .CodeMirror"))
        driver.execute_script("arguments[0].CodeMirror.setValue('')", editor)
        editor.click()
        driver.find_element(By.CSS_SELECTOR, ".graphiql-query-editor .CodeMirror textarea").send_keys(
            "{ products { sku price } }"
        )
        assert (
            driver.execute_script("return arguments[0].CodeMirror.getValue()", editor) == "{ products { sku price } }"
        )
        driver.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()
        result = wait.until(lambda d: "coffee" in d.find_element(By.CSS_SELECTOR, ".result-window").text)
        assert result
        text = driver.find_element(By.CSS_SELECTOR, ".result-window").text
        assert '"sku": "coffee"' in text and '"price": 1800' in text, text
        driver.save_screenshot(str(tmp_path / "graphiql.png"))
        assert browser.problems(driver) == []
