#!/usr/bin/env python3
"""The fake OpenAI upstream for the grouping benchmark, counting its calls.

Every request waits ``--latency`` seconds before its first byte (a model thinking), streams
wait ``--chunk-delay`` between chunks. Commands on stdin, one a line: ``count`` prints the
chat/completion calls so far as JSON, ``reset`` forgets them; end of input stops it.
"""

from __future__ import annotations

import argparse
import json
import sys

from llm_gateway.testing import FakeUpstream

FOREVER = 1_000_000  # delay_next(times=...): more requests than a run makes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--chunk-delay", type=float, default=0.0)
    args = p.parse_args()
    fake = FakeUpstream(port=args.port, chunk_delay=args.chunk_delay, record_requests=False)
    with fake:
        if args.latency > 0:
            fake.delay_next(args.latency, times=FOREVER)
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() == "count":
                print(json.dumps(fake.calls.get("POST /v1/chat/completions", 0)), flush=True)
            elif line.strip() == "reset":
                fake.calls.clear()
                print("ok", flush=True)


if __name__ == "__main__":
    main()
