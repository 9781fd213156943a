"""Fixtures of the fake upstream's tests: one fake per test module, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from llm_gateway.testing import FakeUpstream

from fake_support import KEY


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeUpstream) -> None:
    fake.reset()


@pytest.fixture
def client(fake: FakeUpstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url, api_key=KEY, max_retries=0, timeout=5)


@pytest.fixture
def http(fake: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=5) as c:
        yield c
