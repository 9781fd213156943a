"""The OTLP receiver the tracing tests export to (a real server on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_gateway.testing.otlp_receiver import OtlpReceiver


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def receiver(otlp: OtlpReceiver) -> OtlpReceiver:
    otlp.clear()
    return otlp
