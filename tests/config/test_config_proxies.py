"""Which proxy an upstream uses (config/proxies.py), and what `config check` says about the
proxy and TLS settings."""

from __future__ import annotations

import pytest

from llm_gateway.config import ConfigError, parse_config
from llm_gateway.config.proxies import bypassed, setting_problem, upstream_proxy

HTTPS = "https://api.openai.com/v1"
HTTP = "http://vllm.internal:8000/v1"


def chosen(base_url: str, setting: str = "env", **env: str) -> str | None:
    found = upstream_proxy(setting, base_url, env)
    return None if found is None else found.url


def test_the_variable_for_the_upstreams_scheme_then_all_proxy_lower_case_first():
    assert chosen(HTTPS, HTTPS_PROXY="http://up:1", HTTP_PROXY="http://other:2") == "http://up:1"
    assert chosen(HTTP, HTTPS_PROXY="http://up:1", HTTP_PROXY="http://other:2") == \
        "http://other:2"
    assert chosen(HTTPS, https_proxy="http://low:1", HTTPS_PROXY="http://up:1") == \
        "http://low:1"
    assert chosen(HTTPS, ALL_PROXY="http://all:3") == "http://all:3"
    assert chosen(HTTPS, HTTP_PROXY="http://other:2") is None  # not for https
    assert chosen(HTTPS, HTTPS_PROXY="proxy.corp:3128") == "http://proxy.corp:3128"  # as curl
    assert chosen(HTTPS, HTTPS_PROXY="  ") is None
    assert chosen(HTTPS) is None


def test_none_and_a_named_proxy_ignore_the_environment():
    env = {"HTTPS_PROXY": "http://up:1"}
    assert chosen(HTTPS, "none", **env) is None
    assert chosen(HTTPS, "http://mine:8080", **env) == "http://mine:8080"
    found = upstream_proxy("http://u:secret@mine:8080", HTTPS, {})
    assert found is not None and found.shown == "http://mine:8080"
    assert "secret" not in repr(found) and found.source == "proxy"


@pytest.mark.parametrize(("host", "port", "no_proxy", "direct"), [
    ("api.openai.com", 443, "*", True),
    ("api.openai.com", 443, "openai.com", True),
    ("api.openai.com", 443, ".openai.com", True),
    ("openai.com", 443, ".openai.com", True),
    ("notopenai.com", 443, "openai.com", False),
    ("api.openai.com", 443, "example.com, api.openai.com:443", True),
    ("api.openai.com", 443, "api.openai.com:8443", False),
    ("10.1.2.3", 80, "10.0.0.0/8", True),
    ("10.1.2.3", 80, "10.1.2.3", True),
    ("11.1.2.3", 80, "10.0.0.0/8,localhost", False),
    ("::1", 80, "::1", True),
    ("::1", 8000, "[::1]:8000", True),
    ("fd00::5", 80, "fd00::/8", True),
    ("localhost", 80, "127.0.0.1", False),  # names are not resolved
    ("API.OpenAI.com.", 443, "openai.com", True),
    ("api.openai.com", 443, "*.openai.com", True),
    ("openai.com.evil", 443, "*.openai.com", False),
    ("api.openai.com", 443, "", False),
])
def test_no_proxy(host, port, no_proxy, direct):
    assert bypassed(host, port, no_proxy) is direct


def test_no_proxy_sends_an_upstream_direct():
    env = {"HTTPS_PROXY": "http://up:1", "NO_PROXY": ".openai.com"}
    assert chosen(HTTPS, **env) is None
    assert chosen("https://other.example/v1", **env) == "http://up:1"


@pytest.mark.parametrize(("value", "problem"), [
    ("env", None), ("none", None), ("http://p:3128", None), ("http://u:p@p", None),
    ("socks5://p:1080", "SOCKS are not supported"), ("ftp://p", "the ftp scheme"),
    ("https://p:3128", "TLS to the proxy"),
    ("http://", "names no host"), ("http://p:3128/path", "has a path"),
    ("http://p:99999", "is not a URL"),
    ("http://user:pa/ss@p:3128", "is not a URL"), ("http://u:s3#cret@p:1", "is not a URL"),
])
def test_what_the_proxy_setting_may_be(value, problem):
    found = setting_problem(value)
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize(("value", "secret"), [("http://user:pa/ss@p:3128", "'pa'"),
                                               ("http://u:s3#cret@p:1", "s3")])
def test_a_message_never_quotes_a_piece_of_the_password(value, secret):
    found = setting_problem(value)
    assert found is not None and secret not in found


def config_with(**upstream) -> dict:
    return {"upstreams": {"corp": {"base_url": HTTPS, **upstream}},
            "models": [{"name": "gpt-*", "backend": "corp"}]}


def problems(data: dict, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(data, env=env or {})
    return raised.value.problems


def test_config_check_names_a_proxy_variable_it_cannot_use():
    (problem,) = problems(config_with(), {"HTTPS_PROXY": "socks5://p:1080"})
    assert problem.startswith("upstreams.corp.proxy: env: HTTPS_PROXY uses the socks5 scheme")
    assert parse_config(config_with(proxy="none"), env={"HTTPS_PROXY": "socks5://p:1080"})
    (problem,) = problems(config_with(proxy="socks5://p:1080"))
    assert problem.startswith("upstreams.corp.proxy: must be env, none or a proxy URL")


def test_config_check_wants_a_client_key_with_its_certificate():
    # The files themselves are read at start, on the machine that serves.
    assert parse_config(config_with(ca_file="/elsewhere/ca.pem", client_cert="/elsewhere/c.pem"),
                        env={})
    assert problems(config_with(client_key="/elsewhere/c.key")) == [
        "upstreams.corp.client_key: needs client_cert"]


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8080/v1", "http://localhost:11434/v1",
                                      "http://[::1]:8000/v1", "http://127.9.9.9/v1",
                                      "https://api.localhost/v1",
                                      "http://[::ffff:127.0.0.1]:8000/v1"])
def test_a_loopback_upstream_never_takes_the_environments_proxy(base_url):
    env = {"HTTP_PROXY": "http://up:1", "HTTPS_PROXY": "http://up:1", "ALL_PROXY": "http://up:1"}
    assert chosen(base_url, **env) is None
    assert chosen(base_url, "http://mine:1") == "http://mine:1"  # a named one still is
