"""How upstream connections leave the gateway: through a real forward proxy (HTTPS_PROXY and
friends, NO_PROXY, an explicit one, none), and TLS against a CA of our own and with a client
certificate; both transports (aiohttp, httpx), the fake upstream over http and https.

The upstream behind the proxy is named `api.upstream.test`, a name only the proxy resolves (to
the fake): a call that reaches it went through the proxy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from llm_gateway.config import ConfigError, parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.certificates import CertificateFiles, make_certificates
from llm_gateway.testing.forward_proxy import ForwardProxy
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, UPSTREAM_KEY, gateway_config

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "through"}]}
PASSWORD = "pr0xy-pa55word"
HIDDEN = "api.upstream.test"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> CertificateFiles:
    return make_certificates(tmp_path_factory.mktemp("certs"), hosts=(HIDDEN,))


def behind(proxy: ForwardProxy, fake: FakeUpstream) -> str:
    """The base_url of `fake` under the name only `proxy` resolves."""
    scheme = "https" if fake.tls is not None else "http"
    proxy.hosts[f"{HIDDEN}:{443 if fake.tls is not None else 80}"] = ("127.0.0.1", fake.port)
    return f"{scheme}://{HIDDEN}/v1"


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(credentials=f"gw:{PASSWORD}") as running:
        yield running


@pytest.fixture
def upstreams(certs) -> Iterator[Callable[..., FakeUpstream]]:
    started: list[FakeUpstream] = []

    def start(tls: bool = False, client_certificates: bool = False) -> FakeUpstream:
        fake = FakeUpstream(api_key=UPSTREAM_KEY, tls=certs if tls else None,
                            client_certificates=client_certificates).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def gateway() -> Iterator[Callable[..., GatewayServer]]:
    started: list[GatewayServer] = []

    def start(fake: FakeUpstream, env: dict[str, str] | None = None, base_url: str = "",
              **upstream: object) -> GatewayServer:
        config = gateway_config(base_url or fake.url)
        config["upstreams"]["openai"].update(upstream)
        config["upstreams"]["openai"]["retries"] = {"attempts": 0}
        full_env = {**ENV, **(env or {})}
        server = GatewayServer(parse_config(config, env=full_env), env=full_env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def chat(gw: GatewayServer, stream: bool = False) -> httpx.Response:
    return httpx.post(gw.url + "/chat/completions", json={**CHAT, "stream": stream},
                      timeout=20)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_the_environments_proxy_carries_every_call(transport, tls, proxy, upstreams, gateway,
                                                    certs, caplog):
    fake = upstreams(tls=tls)
    variable = "HTTPS_PROXY" if tls else "http_proxy"
    caplog.set_level(logging.INFO, logger="llm_gateway.backends.transport")
    gw = gateway(fake, {variable: proxy.url_with_credentials}, behind(proxy, fake),
                 transport=transport, ca_file=str(certs.ca))
    answer = chat(gw)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "Echo: through"
    streamed = chat(gw, stream=True)
    assert streamed.status_code == 200 and "data: [DONE]" in streamed.text
    if tls:  # tunnels (one, kept, per connection): TLS inside them end to end
        assert ("CONNECT", f"{HIDDEN}:443", True) in proxy.seen
        assert {method for method, _, _ in proxy.seen} == {"CONNECT"}
    else:
        assert proxy.seen == [("POST", f"http://{HIDDEN}/v1/chat/completions", True)] * 2
    # The proxy's password went to the proxy alone: not upstream, not into the log.
    assert all(r.headers.get("proxy-authorization") is None for r in fake.requests)
    assert all(r.headers["authorization"] == f"Bearer {UPSTREAM_KEY}" for r in fake.requests)
    assert f"through the proxy {proxy.url} ({variable})" in caplog.text
    assert PASSWORD not in caplog.text


def test_no_proxy_none_and_loopback_go_direct_and_a_named_proxy_is_used(proxy, upstreams,
                                                                         gateway):
    fake = upstreams()
    hidden = behind(proxy, fake)
    env = {"HTTP_PROXY": proxy.url_with_credentials}
    # Direct, so the hidden name cannot be reached at all: the proxy sees nothing.
    for gw in (gateway(fake, {**env, "NO_PROXY": "example.com, .upstream.test"}, hidden),
               gateway(fake, {**env, "no_proxy": "*"}, hidden),
               gateway(fake, env, hidden, proxy="none")):
        answer = chat(gw)
        assert answer.status_code == 502
        assert answer.json()["error"]["message"] == "upstream 'openai' could not be reached"
    assert proxy.seen == [] and fake.calls["POST /v1/chat/completions"] == 0
    # A loopback upstream never goes to the environment's proxy, which could not reach it.
    assert chat(gateway(fake, env)).status_code == 200
    assert proxy.seen == [] and fake.calls["POST /v1/chat/completions"] == 1
    # A proxy the config names is used whatever the environment says, loopback or not.
    for base_url in (hidden, ""):
        named = gateway(fake, {"NO_PROXY": "*"}, base_url, proxy=proxy.url_with_credentials)
        assert chat(named).status_code == 200
    assert [method for method, _, _ in proxy.seen] == ["POST", "POST"]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_proxy_that_refuses_the_gateway_is_a_clear_upstream_error(transport, tls, proxy,
                                                                     upstreams, gateway, certs,
                                                                     caplog):
    fake = upstreams(tls=tls)
    wrong = "wr0ng-pa55word"
    gw = gateway(fake, {}, behind(proxy, fake), transport=transport,
                 proxy=proxy.url_with_credentials.replace(PASSWORD, wrong),
                 ca_file=str(certs.ca))
    answer = chat(gw)
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["message"].startswith("upstream 'openai' could not be reached: the proxy")
    assert fake.calls["POST /v1/chat/completions"] == 0
    assert proxy.seen and all(authorized for _, _, authorized in proxy.seen)  # it tried
    assert wrong not in caplog.text and wrong not in answer.text


def test_tls_is_verified_against_the_ca_the_config_or_environment_names(upstreams, gateway,
                                                                        certs):
    fake = upstreams(tls=True)
    unknown = chat(gateway(fake))  # certifi's CAs do not know ours
    assert unknown.status_code == 502, unknown.text
    assert "certificate" in unknown.json()["error"]["message"].lower()
    assert fake.calls["POST /v1/chat/completions"] == 0
    assert chat(gateway(fake, ca_file=str(certs.ca))).status_code == 200
    assert chat(gateway(fake, {"SSL_CERT_FILE": str(certs.ca)})).status_code == 200
    assert chat(gateway(fake, {"SSL_CERT_DIR": str(Path(certs.ca).parent / "none")},
                        ca_file=str(certs.ca))).status_code == 200  # ca_file comes first


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_an_upstream_that_wants_a_client_certificate_gets_ours(transport, upstreams, gateway,
                                                               certs):
    fake = upstreams(tls=True, client_certificates=True)
    refused = chat(gateway(fake, transport=transport, ca_file=str(certs.ca)))
    assert refused.status_code == 502, refused.text
    shown = gateway(fake, transport=transport, ca_file=str(certs.ca),
                    client_cert=str(certs.client_cert), client_key=str(certs.client_key))
    assert chat(shown).status_code == 200
    assert fake.calls["POST /v1/chat/completions"] == 1


def test_tls_files_that_cannot_be_read_stop_the_start_naming_them(upstreams, gateway,
                                                                  tmp_path):
    fake = upstreams(tls=True)
    (tmp_path / "not-a-cert.pem").write_text("hello")
    for path in (tmp_path / "missing.pem", tmp_path / "not-a-cert.pem"):
        with pytest.raises(ConfigError) as raised:
            gateway(fake, ca_file=str(path))
        (problem,) = raised.value.problems
        assert problem.startswith("upstreams.openai: its TLS files cannot be used")
