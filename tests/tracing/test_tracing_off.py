"""Tracing off: no spans, no OpenTelemetry imported, a client's traceparent passed through as
before. Tracing on needs no OpenTelemetry package; with protocol grpc and grpcio missing (the
`otel` extra), start fails and says what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import httpx
import yaml

from gateway_support import gateway_config
from tracing_support import TRACEPARENT

# A finder that makes `import opentelemetry...` and `import grpc` fail, as on a machine
# without the extra.
NO_OTEL = """
import sys
class NoOtel:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("opentelemetry", "grpc"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoOtel())
"""


def test_off_sends_no_spans_and_keeps_the_clients_traceparent(make_gateway, fake, receiver):
    gateway = make_gateway(gateway_config(fake.url))
    assert not gateway.app.state.tracer.enabled
    r = httpx.post(f"{gateway.url}/chat/completions", headers={"traceparent": TRACEPARENT},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200
    assert fake.requests[-1].headers["traceparent"] == TRACEPARENT  # untouched
    time.sleep(0.5)
    assert receiver.exports == 0 and receiver.spans == []


def test_off_imports_nothing_of_opentelemetry():
    script = textwrap.dedent("""
        import sys, httpx
        from llm_gateway.config import parse_config
        from llm_gateway.testing import FakeUpstream
        from llm_gateway.testing.gateway import GatewayServer
        sys.path.insert(0, "tests")
        from gateway_support import ENV, gateway_config
        with FakeUpstream() as fake:
            with GatewayServer(parse_config(gateway_config(fake.url), env=ENV), env=ENV) as gw:
                r = httpx.post(gw.url + "/chat/completions", json={
                    "model": "gpt-4o-mini", "stream": True,
                    "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 200, r.text
        print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_http_needs_no_extra():
    script = NO_OTEL + textwrap.dedent("""
        from llm_gateway.config.tracing import TracingConfig
        from llm_gateway.tracing.build import build_tracer, missing_extra
        cfg = TracingConfig(enabled=True, endpoint="http://127.0.0.1:9/v1/traces")
        assert missing_extra(cfg) is None
        tracer = build_tracer(cfg, {})
        span = tracer.start("x")
        assert tracer.enabled and span.recording
        span.end()
        tracer.shutdown()
        print("http ok", sorted(m for m in sys.modules if m.split(".")[0] in
                                ("opentelemetry", "grpc")))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "http ok []"


def test_grpc_without_the_extra_stops_serve_with_what_to_install(tmp_path, fake):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(gateway_config(fake.url, tracing={
        "enabled": True, "protocol": "grpc"})))
    script = NO_OTEL + textwrap.dedent(f"""
        from llm_gateway.cli.main import main
        from llm_gateway.config import ConfigError, load_config
        from llm_gateway.app.factory import create_app
        try:
            create_app(load_config({str(config)!r}), env={{}})
        except ConfigError as exc:
            print("create_app:", exc)
        sys.exit(main(["serve", "--config", {str(config)!r}]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert 'pip install "llm-gateway[otel]"' in out.stderr
    assert "tracing.enabled is true with protocol grpc" in out.stderr
    assert "grpcio is not installed" in out.stderr
    assert 'create_app: tracing.enabled is true' in out.stdout
