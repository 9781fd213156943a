"""One keys-mode gateway with the admin API and a console, in front of the fake upstream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llm_gateway.testing.gateway import GatewayServer

from auth_support import keys_server
from browser_support import require_browser, start_browser


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with keys_server(fake.url, str(tmp_path_factory.mktemp("console"))) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, one per test module (browser_support.py)."""
    driver = start_browser(*require_browser())
    try:
        yield driver
    finally:
        driver.quit()
