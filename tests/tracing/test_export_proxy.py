"""Span exports go through the proxy chosen as an upstream's is (`tracing.proxy`: env, none or
a URL). Before, OTLP/HTTP ignored every proxy: a gateway dropped where its clients worked
(https_proxy set, the collector outside) exported nothing. A real forward proxy that alone
resolves the collector's name, and a real OTLP receiver behind it, over http and https."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_gateway.config import ConfigError, parse_config
from llm_gateway.config.tracing import TracingConfig
from llm_gateway.testing.certificates import CertificateFiles, make_certificates
from llm_gateway.testing.forward_proxy import ForwardProxy
from llm_gateway.testing.otlp_receiver import OtlpReceiver
from llm_gateway.tracing.build import build_tracer, export_proxy

HIDDEN = "collector.hidden.test"  # only the proxy resolves it
PASSWORD = "pr0xy-pa55word"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> CertificateFiles:
    return make_certificates(tmp_path_factory.mktemp("certs"), hosts=(HIDDEN,))


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(credentials=f"gw:{PASSWORD}") as running:
        yield running


def export_one(cfg: TracingConfig, env: dict[str, str], receiver: OtlpReceiver) -> None:
    tracer = build_tracer(cfg, env)
    try:
        tracer.start("through the proxy", {}, {}).end()
        tracer.flush()
        received = receiver.wait_for(lambda spans: len(spans) >= 1, timeout=10)
        assert [s.name for s in received] == ["through the proxy"]
    finally:
        tracer.shutdown()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_the_environments_proxy_carries_the_exports(tls, certs, proxy, monkeypatch) -> None:
    if tls:  # the receiver's CA, for the exporter's default context
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    with OtlpReceiver(tls=certs if tls else None) as receiver:
        port = 443 if tls else 80
        proxy.hosts[f"{HIDDEN}:{port}"] = ("127.0.0.1", receiver.port)
        scheme = "https" if tls else "http"
        cfg = TracingConfig(enabled=True, endpoint=f"{scheme}://{HIDDEN}/v1/traces")
        env = {f"{scheme}_proxy": proxy.url_with_credentials, "no_proxy": "localhost"}
        export_one(cfg, env, receiver)
        method, target, authorized = proxy.seen[0]
        if tls:  # a tunnel: TLS inside it end to end
            assert (method, target) == ("CONNECT", f"{HIDDEN}:443")
        else:  # a request in absolute form
            assert (method, target) == ("POST", f"http://{HIDDEN}:80/v1/traces")
        assert authorized
        # The proxy's password is for the proxy alone.
        assert all("proxy-authorization" not in h for h in receiver.headers)


def test_a_named_proxy_is_used_and_none_or_no_proxy_go_direct(proxy) -> None:
    with OtlpReceiver() as receiver:
        proxy.credentials = None
        proxy.hosts[f"{HIDDEN}:80"] = ("127.0.0.1", receiver.port)
        named = TracingConfig(enabled=True, endpoint=f"http://{HIDDEN}/v1/traces",
                              proxy=proxy.url)
        export_one(named, {}, receiver)
        assert len(proxy.seen) == 1
        env = {"http_proxy": proxy.url}
        direct = TracingConfig(enabled=True, endpoint=receiver.url, proxy="none")
        assert export_proxy(direct, env) is None
        elsewhere = TracingConfig(enabled=True, endpoint="http://otel.corp:4318/v1/traces")
        assert export_proxy(elsewhere, {**env, "no_proxy": ".corp"}) is None
        assert export_proxy(elsewhere, env).shown == proxy.url
        # Loopback goes direct in env mode: the proxy could not reach this host's collector.
        assert export_proxy(TracingConfig(enabled=True), env) is None


def test_a_proxy_with_a_password_in_the_file_or_a_bad_variable_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"tracing\.proxy: must not hold a user or password"):
        parse_config({"tracing": {"proxy": "http://u:secret@proxy.corp:3128"}}, env={})
    cfg = TracingConfig(enabled=True, endpoint="https://otel.example/v1/traces")
    with pytest.raises(ConfigError, match=r"tracing\.proxy: https_proxy uses the socks5"):
        build_tracer(cfg, {"https_proxy": "socks5://proxy.corp:1080"})


def test_spawned_workers_get_a_named_proxy() -> None:
    named = TracingConfig(enabled=True, proxy="http://proxy.corp:3128")
    args = named.worker_args()
    assert args[args.index("--otlp-proxy") + 1] == "http://proxy.corp:3128"
    assert "--otlp-proxy" not in TracingConfig(enabled=True).worker_args()  # env: inherited
