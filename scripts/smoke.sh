#!/usr/bin/env bash
# Smoke test of a running gateway with the official openai SDK: list the models, one chat
# completion, one streamed chat completion. One PASS/FAIL line per step, then a verdict; the
# exit status is 0 only when every step passed. Used by `tilt up` and after a deploy:
#
#   scripts/smoke.sh URL [MODEL]
#   scripts/smoke.sh http://localhost:8080                 # the `local` overlay, port-forwarded
#   scripts/smoke.sh https://llm.example.com/v1 qwen2.5-7b
#
# URL: the gateway, with or without /v1. MODEL: default gpt-3.5-turbo (the name chatbot-ui
# uses; the overlays serve their local model under it).
# Environment: LLM_GATEWAY_API_KEY, the client's key (any value while the gateway has no keys
# of its own); SMOKE_WAIT_SECONDS (default 60), how long to wait for the gateway to answer at
# all, e.g. while a port-forward starts; PYTHON (default python3), which needs `openai`.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 URL [MODEL]" >&2
    exit 2
fi

exec "${PYTHON:-python3}" - "$1" "${2:-gpt-3.5-turbo}" <<'PY'
import os
import sys
import time

try:
    import openai
except ImportError:
    print("smoke: FAIL: the openai package is not installed (pip install openai)")
    sys.exit(1)

url, model = sys.argv[1].rstrip("/"), sys.argv[2]
if not url.endswith("/v1"):
    url += "/v1"
client = openai.OpenAI(base_url=url, api_key=os.environ.get("LLM_GATEWAY_API_KEY") or "sk-smoke",
                       max_retries=0, timeout=120)
MESSAGES = [{"role": "user", "content": "Say hello in five words or fewer."}]
results = []


def report(step, ok, detail):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {step}: {detail}", flush=True)


def why(exc):
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


print(f"smoke: {url}, model {model}", flush=True)
deadline = time.monotonic() + float(os.environ.get("SMOKE_WAIT_SECONDS", "60"))
while True:
    try:
        ids = [m.id for m in client.models.list()]
    except openai.APIConnectionError as exc:
        if time.monotonic() < deadline:
            time.sleep(2)
            continue
        report("models", False, f"no answer from {url} ({why(exc)})")
        ids = None
    except openai.OpenAIError as exc:
        report("models", False, why(exc))
        ids = None
    break
if ids is not None:
    listed = "listed" if model in ids else "NOT listed (routable all the same if a pattern matches)"
    report("models", bool(ids), f"{len(ids)} models; {model} {listed}")

if ids is not None:
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=MESSAGES, max_tokens=24)
        text = raw.parse().choices[0].message.content or ""
        backend = raw.headers.get("x-lgw-backend", "?")
        report("chat", bool(text.strip()), f"{text.strip()!r} (backend {backend})")
    except openai.OpenAIError as exc:
        report("chat", False, why(exc))

    try:
        parts, finish = [], None
        for chunk in client.chat.completions.create(
                model=model, messages=MESSAGES, max_tokens=24, stream=True):
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
        text = "".join(parts).strip()
        report("stream", bool(text) and finish is not None,
               f"{text!r} in {len(parts)} chunks, finish_reason {finish}")
    except openai.OpenAIError as exc:
        report("stream", False, why(exc))

failed = results.count(False) + (3 - len(results))
if failed:
    print(f"smoke: FAIL ({failed} of 3 steps failed)")
    sys.exit(1)
print("smoke: PASS (3 of 3 steps)")
PY
