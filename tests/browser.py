"""Headless Chromium (Debian's chromium and chromium-driver) driven by selenium, for the pages people
see: GraphiQL and the sandbox's. Selenium's own driver download is never used: the machine is offline."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
MISSING = (
    "needs headless Chromium: apt-get install chromium chromium-driver (.ci/run installs them), "
    "or CHROMIUM / CHROMEDRIVER naming the binaries"
)


def available() -> bool:
    return all(shutil.which(path) or Path(path).is_file() for path in (CHROMIUM, CHROMEDRIVER))


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert available(), MISSING

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(argument)
    # The console and network errors of every page, read by `problems`.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def problems(driver: Any) -> list[str]:
    """The page's errors since the last call: failed loads (a CDN, a 404) and uncaught script errors."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def resize(driver: Any, width: int) -> None:
    """The viewport `width` px wide, as tall as the page (a full-page screenshot)."""
    driver.set_window_size(width, 900)
    inner = driver.execute_script("return [window.innerWidth, window.outerWidth]")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width + inner[1] - inner[0], max(height, 600) + 100)


def wait(driver: Any, timeout: float = 20) -> Any:
    """A WebDriverWait that also retries an element gone stale: a page that reloads between finding an
    element and reading it (slow machines see it) is waited for, not failed."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))


def graphiql_run(driver: Any, query: str, headers: str = "", timeout: float = 20) -> Any:
    """Puts `query` (and `headers`, JSON text) into the open GraphiQL page, runs it, and returns the
    result pane's JSON once it shows; it must hold no errors."""
    import json

    from selenium.webdriver.common.by import By

    waiting = wait(driver, timeout)
    editor = waiting.until(lambda d: d.find_element(By.CSS_SELECTOR, ".graphiql-query-editor .CodeMirror"))
    driver.execute_script("arguments[0].CodeMirror.setValue(arguments[1])", editor, query)
    if headers:
        tab = driver.find_element(By.XPATH, "//button[normalize-space()='Headers']")
        if tab.get_attribute("aria-selected") != "true":
            tab.click()
        visible = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"  # the headers, not the variables
        header_editor = waiting.until(lambda d: d.find_element(By.CSS_SELECTOR, visible))
        driver.execute_script("arguments[0].CodeMirror.setValue(arguments[1])", header_editor, headers)
    result_pane = "document.querySelector('.result-window .CodeMirror').CodeMirror"
    driver.execute_script(f"{result_pane}.setValue('')")  # so the same answer twice is still seen arriving
    driver.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()
    answered: Any = lambda d: d.execute_script(f"return {result_pane}.getValue()")  # noqa: E731
    result = json.loads(waiting.until(answered))
    assert "errors" not in result, result
    return result
