"""On-demand local models (`local.<name>.load` and its keys) and `placement`: defaults, and
every rule spanning them, reported with its path."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.config import ConfigError, parse_config
from llm_gateway.config.placement import GpuBudget, ModelGroup, PlacementConfig


def config(local: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"local": local, "models": [{"name": n, "backend": n} for n in local], **extra}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    return info.value.problems


def test_defaults_keep_todays_behaviour() -> None:
    built = parse_config(config({"m": {"model": "default"}}), env={})
    local = built.local["m"]
    assert (local.load, local.idle_unload_seconds, local.pinned, local.memory_mib) == (
        "resident", None, False, None)
    assert (local.load_timeout_seconds, local.max_waiting) == (120.0, 64)
    assert built.placement == PlacementConfig()
    assert (built.placement.nvml, built.placement.headroom_mib) == ("auto", 512)


def test_every_key() -> None:
    built = parse_config(config(
        {"a": {"model": "default", "load": "on_demand", "idle_unload_seconds": 30,
               "load_timeout_seconds": 5, "max_waiting": 0, "memory_mib": 700, "gpus": [1]},
         "b": {"model": "default", "load": "on_demand", "pinned": True}},
        placement={"gpus": [{"id": 0}, {"id": 1, "memory_mib": 24000}], "cpu_memory_mib": 8192,
                   "nvml": "off", "headroom_mib": 0,
                   "groups": {"g": {"models": ["a", "b"]}}}), env={})
    a = built.local["a"]
    assert (a.load, a.idle_unload_seconds, a.load_timeout_seconds, a.max_waiting) == (
        "on_demand", 30.0, 5.0, 0)
    assert built.placement.gpus == [GpuBudget(0), GpuBudget(1, 24000)]
    assert built.placement.nvml == "off" and built.placement.cpu_memory_mib == 8192
    assert built.placement.groups == {"g": ModelGroup(["a", "b"], "together")}


@pytest.mark.parametrize(("local", "placement", "expected"), [
    ({"m": {"model": "default", "load": "on_demand", "urls": ["http://h:1"]}}, None,
     ["local.m.load: on_demand needs workers the gateway spawns (not with urls or discovery)"]),
    ({"m": {"model": "default", "load": "on_demand", "pinned": True,
            "idle_unload_seconds": 5}}, None,
     ["local.m.idle_unload_seconds: a pinned model is never unloaded; set pinned or "
      "idle_unload_seconds, not both"]),
    ({"m": {"model": "default", "idle_unload_seconds": 5, "pinned": True}}, None,
     ["local.m.idle_unload_seconds: only with load: on_demand (a resident model is never "
      "unloaded)",
      "local.m.pinned: only with load: on_demand (a resident model is always loaded)"]),
    ({"m": {"model": "default", "load": "sometimes", "max_waiting": -1}}, None,
     ["local.m.load: expected one of 'resident', 'on_demand'; got 'sometimes' (str)",
      "local.m.max_waiting: must be >= 0, got -1"]),
    ({"m": {"model": "default", "gpus": [2]}}, {"gpus": [{"id": 0}, {"id": 0}]},
     ["placement.gpus[1].id: duplicate GPU id 0",
      "local.m.gpus[0]: GPU 2 is not in placement.gpus (ids: [0, 0])"]),
    ({"m": {"model": "default", "load": "on_demand"}},
     {"groups": {"g": {"models": ["m", "nope", "m"]}}},
     ["placement.groups.g.models[1]: unknown local model 'nope' (known: m)",
      "placement.groups.g.models[2]: 'm' is listed twice"]),
    ({"m": {"model": "default", "load": "on_demand"}},
     {"groups": {"h": {"models": []}, "i": {}, "j": {"models": ["m"], "mode": "apart"}}},
     ["placement.groups.h.models: must name at least one local model",
      "placement.groups.i.models: required",
      "placement.groups.j.mode: expected one of 'together', 'exclusive'; got 'apart' (str)"]),
    ({"r": {"model": "default"}, "p": {"model": "default", "load": "on_demand",
                                       "pinned": True}},
     {"groups": {"g": {"models": ["r", "p"], "mode": "exclusive"}}},
     ["placement.groups.g.models[0]: 'r' is never unloaded (load: resident), so the other "
      "models of this exclusive group could never load",
      "placement.groups.g.models[1]: 'p' is never unloaded (pinned), so the other models of "
      "this exclusive group could never load"]),
    ({"m": {"model": "default"}}, {"cpu_memory_mib": 0, "nvml": "sometimes",
                                   "gpus": [{"id": -1, "memory_mib": 0}]},
     ["placement.gpus[0].id: must be >= 0, got -1",
      "placement.gpus[0].memory_mib: must be >= 1, got 0",
      "placement.cpu_memory_mib: must be >= 1, got 0",
      "placement.nvml: expected one of 'auto', 'off'; got 'sometimes' (str)"]),
])
def test_problems_name_their_path(local: dict, placement: dict | None,
                                  expected: list[str]) -> None:
    extra = {} if placement is None else {"placement": placement}
    assert sorted(problems(config(local, **extra))) == sorted(expected)
