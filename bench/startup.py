"""How long `llm-gateway serve` takes to answer its first request, against a bare uvicorn.

    python bench/startup.py [--runs 7]

Each run starts the gateway (an upstream-only config, the fake upstream behind it) and polls
`/v1/models` until it answers; the baseline is uvicorn serving a one-line ASGI app, started
and polled the same way in the same script, so the ratio says what the gateway's own start
costs on this machine. docs/cli.md's "ready in under 2 s" is this script's figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from llm_gateway.testing import FakeUpstream

BARE_APP = textwrap.dedent("""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
""")


def time_to_ready(cmd: list[str], port: int, log: Path) -> float:
    started = time.monotonic()
    proc = common.start(cmd, log)
    try:
        common.wait_for(lambda: common.http_status(f"http://127.0.0.1:{port}/v1/models", 0.5)
                        == 200, proc, cmd[0], timeout=60, log=log, interval=0.01)
        return time.monotonic() - started
    finally:
        common.stop(proc)


@common.exit_codes
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep-temp", action="store_true")
    args = parser.parse_args()
    with common.session("lgw-startup-", args.keep_temp) as (tmp, _stack), FakeUpstream() as fake:
        (tmp / "bare.py").write_text(BARE_APP)
        config = tmp / "gateway.yaml"
        config.write_text(textwrap.dedent(f"""
            server: {{log_level: warning}}
            upstreams:
              openai: {{base_url: "{fake.url}", list_models: false}}
            models:
              - {{name: "gpt-*", backend: openai}}
        """))
        gateway = common.console_script("llm-gateway", "llm_gateway")
        times: dict[str, list[float]] = {"uvicorn, bare app": [], "llm-gateway serve": []}
        for _ in range(args.runs):  # interleaved, so drift in the machine's load hits both
            port = common.free_port()
            times["uvicorn, bare app"].append(time_to_ready(
                [sys.executable, "-m", "uvicorn", "--app-dir", str(tmp), "bare:app",
                 "--port", str(port), "--log-level", "warning"], port, tmp / "bare.log"))
            port = common.free_port()
            times["llm-gateway serve"].append(time_to_ready(
                [*gateway, "serve", "--config", str(config), "--host", "127.0.0.1",
                 "--port", str(port)], port, tmp / "gateway.log"))
    print(f"time to first answer, {args.runs} runs each (s): median [min, max]")
    for name, values in times.items():
        print(f"  {name:<20} {statistics.median(values):6.2f} "
              f"[{min(values):.2f}, {max(values):.2f}]")
    base, ours = (statistics.median(v) for v in times.values())
    print(f"ratio llm-gateway / bare uvicorn: {ours / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
