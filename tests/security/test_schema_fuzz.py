"""A bounded fuzz of our own OpenAPI documents through a real gateway: no input gets a 5xx.

Every operation of `openapi/openai.yaml` and `openapi/gateway.yaml` gets requests generated
from its schema by schemathesis, valid ones (positive) and ones that break the schema
(negative), sent over HTTP to a gateway in keys mode in front of the fake upstream: with a
valid key (the admin key on /admin), and with none. Hypothesis runs derandomized with a fixed
number of examples per operation, so CI sees the same requests every run (about 40 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NotSet

from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from auth_support import ADMIN_KEY, gateway_env, keys_config, new_key

OPENAPI = Path(__file__).resolve().parents[2] / "openapi"
SCHEMAS = {name: schemathesis.openapi.from_path(OPENAPI / name)
           for name in ("openai.yaml", "gateway.yaml")}
OPERATIONS = [(name, op.label) for name, schema in SCHEMAS.items()
              for op in (result.ok() for result in schema.get_all_operations())]
EXAMPLES = {"key": 12, "none": 4}  # per operation and generation mode


@pytest.fixture(scope="module")
def target(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[GatewayServer, str]]:
    """A keys-mode gateway and a valid gateway key (any model, no limits of its own)."""
    env = gateway_env()
    # Every model name routes to the fake upstream, so valid requests go all the way.
    config = keys_config(fake.url, str(tmp_path_factory.mktemp("fuzz")),
                         routing={"default_backend": "openai"})
    server = GatewayServer(parse_config(config, env=env), env=env).start()
    try:
        yield server, new_key(server)[1]
    finally:
        server.stop()


@pytest.mark.parametrize("credentials", ["key", "none"])
@pytest.mark.parametrize(("document", "label"), OPERATIONS, ids=[f"{d}:{label}" for d, label
                                                                  in OPERATIONS])
def test_no_input_gets_a_server_error(target, document, label, credentials):
    server, key = target
    operation = SCHEMAS[document].find_operation_by_label(label)
    headers = {}
    if credentials == "key":
        headers["authorization"] = "Bearer " + (ADMIN_KEY if " /admin" in label else key)
    cases = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    failures: list[str] = []

    @settings(max_examples=EXAMPLES[credentials], derandomize=True, deadline=None,
              database=None, phases=[Phase.explicit, Phase.generate], print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def send(case) -> None:
        response = case.call(base_url=server.base, headers=headers, timeout=15)
        if response.status_code >= 500:
            body = "" if isinstance(case.body, NotSet) else f" body={str(case.body)[:300]!r}"
            failures.append(f"{response.status_code} for {case.method} {case.formatted_path}"
                            f" query={case.query!r} headers={case.headers!r}{body}:"
                            f" {response.text[:300]}")

    send()
    assert not failures, "\n".join(failures)
