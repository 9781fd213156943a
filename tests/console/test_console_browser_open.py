"""The first run, in a real browser: `llm-gateway serve` with no auth.mode serves the local
model, and a browser on the same machine opening `/` lands in the playground without signing
in, chats with the model, and finds that request on the usage page, and nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from auth_support import gateway_env
from browser_support import SMOL, ask, require_browser, screenshot, text_of, wait_for
from gateway_support import require_local_extra

require_local_extra()
require_browser()

from selenium.webdriver.common.by import By  # noqa: E402  (after the skips above)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    config = {"local": {"smollm2": SMOL}, "models": [{"name": "smollm2", "backend": "smollm2"}],
              "storage": {"data_dir": str(tmp_path_factory.mktemp("console-first-run"))},
              "accounting": {"flush_seconds": 0.05}}
    env = gateway_env(admin_key=None)
    with GatewayServer(parse_config(config, env=env), env=env) as server:
        yield server


def test_a_first_run_chats_and_sees_the_request_in_usage(gw, browser: Any):
    browser.get(gw.base + "/")
    wait_for(browser, lambda d: d.current_url.endswith("/ui/playground"))
    assert text_of(browser, "who") == "local (auth.mode none)"
    nav = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "nav a")]
    assert nav == ["Playground", "Usage"]
    ask(browser, "Name a colour.", 12)
    wait_for(browser, lambda d: d.find_elements(By.ID, "stat-ended"), 90, "no answer")
    assert text_of(browser, "stat-ended") == "complete"
    assert text_of(browser, "stat-backend") == "smollm2"
    browser.find_element(By.CSS_SELECTOR, "nav a[href='/ui/usage']").click()

    def counted(driver: Any) -> bool:
        if text_of(driver, "total-requests") == "1":
            return True
        driver.find_element(By.ID, "refresh").click()  # the ledger writes within a moment
        return False

    wait_for(browser, counted, 20, "the playground's request is not in the usage")
    assert "smollm2" in text_of(browser, "usage-table")
    screenshot(browser, "first-run-usage")
    browser.get(gw.base + "/ui/keys")
    assert browser.current_url.endswith("/ui/login")  # keys and teams need a sign-in
