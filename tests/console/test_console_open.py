"""auth.mode none: the playground and read-only usage are open to a browser on this machine,
and nothing else is; the usage the console shows and exports is `llm-gateway usage`'s; pages
stay light."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from llm_gateway.cli import usage as usage_cli
from llm_gateway.config import parse_config
from llm_gateway.console.sessions import COOKIE
from llm_gateway.testing.gateway import GatewayServer

from auth_support import gateway_env
from console_support import asgi_get, client, csrf_of, set_cookies
from gateway_support import gateway_config

PAGE_BUDGET = 300 * 1024


@pytest.fixture(scope="module")
def open_gw(fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayServer, Path]]:
    folder = tmp_path_factory.mktemp("console-open")
    config = gateway_config(fake.url, storage={"data_dir": str(folder)},
                            accounting={"flush_seconds": 0.05, "prices": {
                                "gpt-4o-mini": {"input": 0.15, "output": 0.6}}})
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = gateway_env(admin_key=None)
    with GatewayServer(parse_config(config, env=env), env=env) as server:
        yield server, path


def test_loopback_gets_playground_and_usage_without_signing_in(open_gw):
    gw, _ = open_gw
    browser = client(gw)
    page = browser.get("/ui/playground")
    assert page.status_code == 200
    assert any(c.startswith(COOKIE + "=") for c in set_cookies(page))
    assert browser.get("/ui/usage").status_code == 200
    assert browser.get("/ui/api/usage").status_code == 200
    # Nothing else: keys, teams and status need a sign-in (and no admin key is set here).
    assert browser.get("/ui/keys").headers["location"] == "/ui/login"
    assert browser.get("/ui/status").headers["location"] == "/ui/login"
    for path in ("/ui/api/keys", "/ui/api/teams", "/ui/api/status"):
        assert browser.get(path).status_code == 403, path
    token = csrf_of(browser, "/ui/playground")
    refused = browser.post("/ui/admin/teams", json={"name": "x"}, headers={"x-csrf-token": token})
    assert refused.status_code == 403
    # The playground's chat needs the page's CSRF token, then works without any key.
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert browser.post("/ui/v1/chat/completions", json=body).status_code == 403
    answer = browser.post("/ui/v1/chat/completions", json=body, headers={"x-csrf-token": token})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    assert answer.headers["x-lgw-backend"] == "openai"
    assert len(answer.headers.get_list("x-request-id")) == 1  # shared with its sub-request


def test_another_machine_gets_only_the_sign_in_page(open_gw):
    gw, _ = open_gw
    for path in ("/ui/playground", "/ui/usage", "/ui/keys"):
        status, headers = asgi_get(gw.app, path, "192.0.2.7")
        assert (status, headers["location"]) == (303, "/ui/login"), path
    status, _ = asgi_get(gw.app, "/ui/api/me", "192.0.2.7")
    assert status == 401
    status, _ = asgi_get(gw.app, "/ui/login", "192.0.2.7")
    assert status == 200
    assert asgi_get(gw.app, "/ui/api/me", "::1")[0] == 200  # IPv6 loopback is local too


def test_usage_and_its_csv_are_the_cli_report(open_gw, capsys, monkeypatch):
    gw, config_path = open_gw
    # The session's storage override would send the CLI to another database.
    monkeypatch.delenv("LLM_GATEWAY__STORAGE__DATA_DIR", raising=False)
    browser = client(gw)
    csrf = csrf_of(browser, "/ui/playground")
    for model in ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o"):
        answer = browser.post("/ui/v1/chat/completions", headers={"x-csrf-token": csrf}, json={
            "model": model, "messages": [{"role": "user", "content": f"count {model}"}]})
        assert answer.status_code == 200
    deadline = time.monotonic() + 10
    by_model: dict[str, dict] = {}
    while time.monotonic() < deadline:
        rows = browser.get("/ui/api/usage", params={"group_by": "model"}).json()["data"]
        by_model = {r["model"]: r for r in rows}
        if "gpt-4o" in by_model and by_model.get("gpt-4o-mini", {}).get("requests", 0) >= 2:
            break
        time.sleep(0.05)
    assert by_model["gpt-4o-mini"]["requests"] >= 2 and by_model["gpt-4o"]["requests"] == 1
    exported = browser.get("/ui/api/usage.csv", params={"group_by": "model"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    args = argparse.Namespace(config=str(config_path), team=None, key=None, model=None,
                              since=None, until=None, group_by="model", format="csv")
    assert usage_cli.main(args) == 0
    assert exported.text == capsys.readouterr().out
    assert exported.text.splitlines()[0].startswith("model,requests,prompt_tokens")


def test_every_page_with_its_assets_weighs_under_300_kb(open_gw):
    gw, _ = open_gw
    console = gw.app.console
    assets = sum(len(body) for body, _ in console.render.static.values())
    browser = client(gw)
    for page in ("/ui/playground", "/ui/usage"):
        html = browser.get(page)
        assert html.status_code == 200
        assert "content-security-policy" in html.headers
        assert len(html.content) + assets < PAGE_BUDGET, page
    for name in console.render.static:
        answer = browser.get(f"/ui/static/{name}")
        assert answer.status_code == 200 and answer.headers["x-content-type-options"] == "nosniff"
    assert browser.get("/ui/static/../sessions.py").status_code in (400, 404)


def test_the_playground_prices_an_answer_by_the_gateways_prices(open_gw):
    gw, _ = open_gw
    browser = client(gw)
    price = browser.get("/ui/api/price", params={"model": "gpt-4o-mini", "prompt": 1000,
                                                 "completion": 10})
    assert price.status_code == 200
    assert price.json()["cost"] == pytest.approx((1000 * 0.15 + 10 * 0.6) / 1e6)
    unpriced = browser.get("/ui/api/price", params={"model": "gpt-4o", "prompt": 1000})
    assert unpriced.json()["cost"] == 0
    assert browser.get("/ui/api/price", params={"prompt": "many"}).status_code == 400
