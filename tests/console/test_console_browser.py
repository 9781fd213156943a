"""The console in a real browser (headless Chromium): sign in with the keyboard, a streamed
answer from the real local model (SmolLM2) and a stopped one, a key created and used with the
openai SDK then revoked and refused, the usage page showing those requests, live status.
The tests run in order and share one browser and one gateway; screenshots are saved to
test-artifacts/console/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from auth_support import ADMIN_KEY, Admin, gateway_env, keys_config
from browser_support import SMOL, ask, require_browser, screenshot, text_of, wait_for
from gateway_support import require_local_extra

require_local_extra()
require_browser()

from selenium.webdriver.common.by import By  # noqa: E402  (after the skip above)
from selenium.webdriver.common.keys import Keys  # noqa: E402


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    config = keys_config(fake.url, str(tmp_path_factory.mktemp("console-browser")),
                         local={"smollm2": SMOL},
                         models=[{"name": "smollm2", "backend": "smollm2"},
                                 {"name": "gpt-*", "backend": "openai"}])
    env = gateway_env()
    with GatewayServer(parse_config(config, env=env), env=env) as server:
        yield server


def test_sign_in_with_the_keyboard(gw, browser):
    browser.get(gw.base + "/")
    wait_for(browser, lambda d: d.current_url.endswith("/ui/login"))
    field = browser.find_element(By.ID, "key")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=key]").text == "Key"
    field.send_keys("wrong-key", Keys.ENTER)
    error = wait_for(browser, lambda d: d.find_element(By.ID, "login-error"))
    assert "cannot sign in" in error.text
    browser.find_element(By.ID, "key").send_keys(ADMIN_KEY, Keys.ENTER)
    wait_for(browser, lambda d: d.current_url.endswith("/ui/playground"))
    assert text_of(browser, "who") == "admin"


def test_the_playground_streams_an_answer_from_the_local_model(gw, browser):
    browser.find_element(By.ID, "system").send_keys("You are terse.")
    browser.find_element(By.ID, "temperature").send_keys("0")
    ask(browser, "What is the capital of France?", 24)
    wait_for(browser, lambda d: d.find_elements(By.ID, "stat-ended"), 90, "no answer")
    answer = browser.find_elements(By.CSS_SELECTOR, "#messages li.assistant")[-1]
    assert answer.get_attribute("data-done") == "complete"
    assert answer.find_element(By.CLASS_NAME, "text").text.strip()
    assert text_of(browser, "stat-backend") == "smollm2"
    assert int(text_of(browser, "stat-completion")) > 0
    assert text_of(browser, "stat-ttft").endswith(" ms")
    assert float(text_of(browser, "stat-rate")) > 0
    assert text_of(browser, "stat-cost").startswith("$")
    assert text_of(browser, "stat-grouping") in ("none", "miss")
    screenshot(browser, "playground")


def test_stop_cancels_a_streaming_answer(gw, browser):
    ask(browser, "Write a long story about a dragon.", 800)
    stop = browser.find_element(By.ID, "stop")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#messages li.assistant")[-1]
             .find_element(By.CLASS_NAME, "text").text.strip(), 60, "nothing streamed")
    stop.click()
    last = browser.find_elements(By.CSS_SELECTOR, "#messages li.assistant")[-1]
    wait_for(browser, lambda d: last.get_attribute("data-done") == "stopped", 10)
    # The gateway saw the client go: the worker is free again well before 800 tokens.
    backend = gw.app.state.backends["smollm2"]
    wait_for(browser, lambda d: backend.outstanding() == 0, 10, "generation not cancelled")


def test_a_key_made_in_the_console_works_until_revoked_there(gw, browser):
    browser.get(gw.base + "/ui/keys")
    browser.find_element(By.ID, "k-name").send_keys("sdk-user")
    browser.find_element(By.ID, "k-models").send_keys("smollm2")
    browser.find_element(By.ID, "create-key").click()
    shown = wait_for(browser, lambda d: d.find_element(By.ID, "new-key").is_displayed()
                     and d.find_element(By.ID, "new-key-value").text)
    assert shown.startswith("sk-lgw-")
    screenshot(browser, "keys")
    client = openai.OpenAI(base_url=gw.url, api_key=shown, max_retries=0, timeout=60)
    reply = client.chat.completions.create(
        model="smollm2", max_tokens=8, messages=[{"role": "user", "content": "Say hi"}])
    assert reply.choices[0].message.content is not None
    key_id = wait_for(browser, lambda d: next(
        (row.find_element(By.TAG_NAME, "td").text
         for row in d.find_elements(By.CSS_SELECTOR, "#keys tbody tr") if "sdk-user" in row.text),
        None))
    # Edit its limits and budget, as an admin would.
    browser.find_element(By.CSS_SELECTOR, f"button[aria-label='Edit sdk-user ({key_id})']").click()
    browser.find_element(By.ID, "e-rpm").send_keys("100")
    browser.find_element(By.ID, "e-tokens").send_keys("50000")
    browser.find_element(By.ID, "save-edit").click()
    wait_for(browser, lambda d: any("100 rpm" in r.text and "50,000 tokens" in r.text
                                    for r in d.find_elements(By.CSS_SELECTOR, "#keys tbody tr")))
    stored = Admin(gw)("GET", f"/admin/keys/{key_id}").json()
    assert stored["limits"]["rpm"] == 100 and stored["budget"]["tokens"] == 50000
    assert stored["models"] == ["smollm2"]
    browser.find_element(By.CSS_SELECTOR, f"button[data-revoke='{key_id}']").click()
    browser.switch_to.alert.accept()  # "Revoke sdk-user for good?"
    wait_for(browser, lambda d: any("sdk-user" in r.text and "revoked" in r.text
                                    for r in d.find_elements(By.CSS_SELECTOR, "#keys tbody tr")))
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="smollm2", max_tokens=8, messages=[{"role": "user", "content": "Say hi"}])


def test_the_usage_page_shows_the_requests_just_made(gw, browser):
    browser.get(gw.base + "/ui/usage")

    def counted(driver: Any) -> bool:
        rows = driver.find_elements(By.CSS_SELECTOR, "#usage-table tbody tr")
        found = [r for r in rows if r.text.startswith("smollm2")]
        if found and int(found[0].find_elements(By.TAG_NAME, "td")[1].text) >= 3:
            return True
        driver.find_element(By.ID, "refresh").click()  # the ledger writes within a moment
        return False

    wait_for(browser, counted, 20, "the playground and SDK requests are not in the usage")
    assert int(text_of(browser, "total-requests")) >= 3
    assert browser.find_elements(By.CSS_SELECTOR, "#charts svg rect")
    assert "usage.csv" in browser.find_element(By.ID, "csv").get_attribute("href")
    screenshot(browser, "usage")


def test_the_status_page_shows_the_local_worker(gw, browser):
    browser.get(gw.base + "/ui/status")
    wait_for(browser, lambda d: "smollm2" in text_of(d, "workers"), 15)
    assert "ok" in text_of(browser, "workers")
    screenshot(browser, "status")
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, lambda d: d.current_url.endswith("/ui/login"))
