"""`settle_heap`: what `llm-gateway serve` does to the collector once the app is built."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from llm_gateway.app.factory import YOUNG_GC_THRESHOLD, create_app, settle_heap
from llm_gateway.config import parse_config
create_app(parse_config({}, env={}), env={})
before = gc.get_threshold()
settle_heap()
print(gc.get_freeze_count(), before[0], gc.get_threshold()[0] == YOUNG_GC_THRESHOLD,
      gc.get_threshold()[1:] == before[1:])
"""


def test_the_start_up_heap_is_frozen_and_the_young_threshold_raised(tmp_path):
    # In a process of its own: frozen objects stay frozen for the life of the process.
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120, check=True).stdout.split()
    frozen, young_before, raised, rest_kept = int(out[0]), int(out[1]), out[2], out[3]
    assert frozen > 50_000  # the OpenAPI documents and modules: far more than a few objects
    assert young_before == 700 and raised == "True" and rest_kept == "True"
