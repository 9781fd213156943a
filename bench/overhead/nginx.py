"""The fake upstream: nginx answering fixed chat completions, plain JSON and SSE."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import common
from settings import API_KEY, CONTENT_CHUNKS, CREATED, HERE, LOAD_CORE


def chat_completion_body() -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": "bench-json",
        "system_fingerprint": "fp_bench",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help you today?",
                        "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    }


def sse_events() -> list[str]:
    """The stream as OpenAI sends it with include_usage: role, content, finish, usage, DONE."""

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None) -> str:
        body = {
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED,
            "model": "bench-sse", "system_fingerprint": "fp_bench", "choices": choices,
            "usage": usage,
        }
        return "data: " + json.dumps(body, separators=(",", ":")) + "\n\n"

    def choice(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    events = [chunk([choice({"role": "assistant", "content": ""})], None)]
    events += [chunk([choice({"content": f"tok{i} "})], None) for i in range(CONTENT_CHUNKS)]
    events.append(chunk([choice({}, "stop")], None))
    events.append(chunk([], {"prompt_tokens": 9, "completion_tokens": CONTENT_CHUNKS,
                             "total_tokens": 9 + CONTENT_CHUNKS}))
    events.append("data: [DONE]\n\n")
    return events


def nginx_quote(text: str) -> str:
    """Escape for an nginx quoted string; newlines become \\n (nginx's parser decodes it)."""
    if "$" in text:
        raise ValueError("'$' would be read as an nginx variable")
    return (text.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"')
            .replace("\n", "\\n"))


def render_nginx_conf(tmp: Path, json_port: int, sse_port: int) -> str:
    # Group SSE events into variables of < 4 KiB each (nginx's per-token limit).
    parts: list[str] = []
    for event in sse_events():
        quoted = nginx_quote(event)
        if parts and len(parts[-1]) + len(quoted) < 3500:
            parts[-1] += quoted
        else:
            parts.append(quoted)
    sets = "\n".join(f"            set $sse_{i} '{p}';" for i, p in enumerate(parts))
    variables = "".join(f"${{sse_{i}}}" for i in range(len(parts)))
    json_body = nginx_quote(json.dumps(chat_completion_body(), separators=(",", ":")))
    text = (HERE / "nginx.conf.template").read_text()
    for key, value in {
        "@TMP@": str(tmp), "@JSON_PORT@": str(json_port), "@SSE_PORT@": str(sse_port),
        "@API_KEY@": API_KEY, "@JSON_BODY@": json_body, "@SSE_SETS@": sets,
        "@SSE_VARS@": variables,
    }.items():
        text = text.replace(key, value)
    return text



def pinned(core: str, cmd: list[str], pin: bool) -> list[str]:
    return ["taskset", "-c", core, *cmd] if pin else cmd


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on {port} after {timeout:.0f} s")



def start_nginx(tmp: Path, json_port: int, sse_port: int, pin: bool) -> subprocess.Popen[bytes]:
    """nginx on ``json_port`` and ``sse_port``, pinned to the load core; waits until it listens."""
    conf = tmp / "nginx.conf"
    conf.write_text(render_nginx_conf(tmp, json_port, sse_port))
    nginx_log = tmp / "nginx.out"
    with nginx_log.open("wb") as out:
        nginx = subprocess.Popen(
            pinned(LOAD_CORE, ["nginx", "-p", str(tmp), "-e", str(tmp / "nginx-error.log"),
                               "-c", str(conf)], pin),
            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(json_port, nginx, "nginx")
        wait_port(sse_port, nginx, "nginx")
    except RuntimeError as exc:
        common.stop(nginx, grace=10)
        raise RuntimeError(f"{exc}\n{common.tail(nginx_log)}\n"
                           f"{common.tail(tmp / 'nginx-error.log')}") from None
    return nginx
