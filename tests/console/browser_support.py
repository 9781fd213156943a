"""Headless Chromium for the console's browser tests: Debian's `chromium` and
`chromium-driver`, driven by Selenium; screenshots go to test-artifacts/console/.

Not in conftest.py: see tests/gateway_support.py on the module name "conftest".
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = ("/usr/bin/chromedriver",)


def _first(paths: tuple[str, ...], name: str) -> str | None:
    found = next((p for p in paths if os.path.exists(p)), None)
    return found or shutil.which(name)


def require_browser() -> tuple[str, str]:
    """(chromium, chromedriver); skipped with the reason when absent, a failure in CI."""
    browser, driver = _first(CHROMIUM, "chromium"), _first(DRIVER, "chromedriver")
    missing = None
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing = "selenium is not installed (pip install -e '.[dev]')"
    if browser is None or driver is None:
        missing = "Debian's chromium and chromium-driver are not installed"
    if missing is None:
        return browser, driver  # type: ignore[return-value]
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the console's browser tests, but {missing}")
    pytest.skip(missing, allow_module_level=True)


def start_browser(browser: str, driver: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def wait_for(driver: Any, predicate: Callable[[Any], Any], timeout: float = 30,
             message: str = "") -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # A table the page has just redrawn: look again.
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=[StaleElementReferenceException]
                         ).until(predicate, message)


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


# The bundled 135M model, kept small and quick on a 2-core machine.
SMOL = {"model": "default", "n_ctx": 1024, "n_threads": 1, "max_queue": 4,
        "startup_timeout_seconds": 60, "health_interval_seconds": 0.5}


def text_of(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def ask(browser: Any, prompt: str, max_tokens: int) -> None:
    """In the playground: pick smollm2, set max_tokens, send `prompt`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    model = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"),
                     60, "no models listed")
    assert "smollm2" in [option.get_attribute("value") for option in model]
    Select(browser.find_element(By.ID, "model")).select_by_value("smollm2")
    limit = browser.find_element(By.ID, "max_tokens")
    limit.clear()
    limit.send_keys(str(max_tokens))
    browser.find_element(By.ID, "prompt").send_keys(prompt)
    browser.find_element(By.ID, "send").click()
