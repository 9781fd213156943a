"""OpenAI's x-ratelimit-* headers and their duration format."""

from __future__ import annotations

import pytest

from llm_gateway.limits.headers import (
    WindowState,
    format_reset,
    ratelimit_headers,
    retry_headers,
)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (-1, "0s"), (0.02, "20ms"), (0.0201, "21ms"), (0.999, "999ms"), (1, "1s"),
    (1.5, "1.5s"), (6.12, "6.12s"), (59.9999, "1m0s"), (60, "1m0s"), (360, "6m0s"),
    (90.5, "1m30.5s"), (3600, "1h0m0s"), (3723.25, "1h2m3.25s"),
])
def test_reset_format_is_openais(seconds, text):
    assert format_reset(seconds) == text


def test_the_tightest_limit_of_each_kind_is_reported():
    states = [
        WindowState("requests", 100, 40, 30.0),  # key
        WindowState("requests", 10, 3, 42.0),  # team: fewer left
        WindowState("tokens", 10000, 9000, 6.0),
        WindowState("tokens", 5000, 9000, 7.0),  # same left, later reset: this one
    ]
    assert ratelimit_headers(states) == [
        ("x-ratelimit-limit-requests", "10"),
        ("x-ratelimit-remaining-requests", "3"),
        ("x-ratelimit-reset-requests", "42s"),
        ("x-ratelimit-limit-tokens", "5000"),
        ("x-ratelimit-remaining-tokens", "9000"),
        ("x-ratelimit-reset-tokens", "7s"),
    ]
    assert ratelimit_headers([WindowState("tokens", 10, 0, 0.5)])[0] == (
        "x-ratelimit-limit-tokens", "10")
    assert ratelimit_headers([]) == []


def test_retry_after_is_whole_seconds_and_ms():
    assert retry_headers(0.2) == [("retry-after", "1"), ("retry-after-ms", "200")]
    assert retry_headers(10.0001) == [("retry-after", "11"), ("retry-after-ms", "10001")]
