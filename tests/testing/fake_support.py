"""Shared by the fake upstream's tests: the API key they use and a chat request body."""

from __future__ import annotations

KEY = "sk-fake"


def chat_body(text: str = "hello fake world", **extra: object) -> dict[str, object]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}
