"""Metrics of local models' residency (backends/residency.py): loads, unloads, evictions,
load time, what is loaded, and memory estimated against used, per model and per device.

Label values are bounded: `model` is a `local:` name, `device` is ``cpu`` or ``gpu<id>`` of
a configured or NVML-listed GPU, `reason` and `outcome` come from small fixed sets.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Loading a model: a second for a small one from the page cache, minutes for a big one from disk.
LOAD_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# llm_gateway_local_model_state's values.
STATE_VALUES = {"unloaded": 0, "loading": 1, "loaded": 2, "unloading": 3}


class LocalModelMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.loads = Counter(
            "llm_gateway_local_model_loads", "Loads of a local model, by outcome (ok, failed).",
            ["model", "outcome"], registry=r)
        self.unloads = Counter(
            "llm_gateway_local_model_unloads", "Unloads of a local model, by reason: idle "
            "(its idle_unload_seconds passed), memory (evicted to make room), exclusive "
            "(evicted for a model of an exclusive group).", ["model", "reason"], registry=r)
        self.evictions = Counter(
            "llm_gateway_local_model_evictions", "Unloads to load another model, by reason "
            "(memory, exclusive): the part of the unloads that a bigger budget would avoid.",
            ["model", "reason"], registry=r)
        self.load_seconds = Histogram(
            "llm_gateway_local_model_load_seconds", "Time from the start of a load to its "
            "first ready worker (evictions it waited for included).", ["model"],
            buckets=LOAD_BUCKETS, registry=r)
        self.loaded = Gauge(
            "llm_gateway_local_models_loaded", "Local models loaded now (resident ones "
            "included).", multiprocess_mode="livemostrecent", registry=r)
        self.state = Gauge(
            "llm_gateway_local_model_state", "A local model's state: 0 unloaded, 1 loading, "
            "2 loaded, 3 unloading.", ["model"], multiprocess_mode="livemostrecent", registry=r)
        self.memory = Gauge(
            "llm_gateway_local_model_memory_mib", "A local model's memory in MiB, all its "
            "workers, by device (cpu, gpu<id>) and kind: estimated (before it loads: the GGUF "
            "estimate or memory_mib) or used (what its running workers hold: resident set "
            "size, NVML's per-process GPU memory).", ["model", "device", "kind"],
            multiprocess_mode="livemostrecent", registry=r)
        self.device_memory = Gauge(
            "llm_gateway_local_device_memory_mib", "A device's memory in MiB by kind: budget "
            "(what local models may use), booked (what the loaded models hold by the "
            "budget's count) and used (NVML: everything on the GPU, other programs too).",
            ["device", "kind"], multiprocess_mode="livemostrecent", registry=r)
