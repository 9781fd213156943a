"""The built-in configuration, used when no file is given.

Kept as plain YAML-shaped data (not objects) so it goes through exactly the same builder,
validation and environment overrides as a file would.

It serves the bundled SmolLM2 model as `smollm2` from one local worker, on 127.0.0.1:8080,
and adds the OpenAI upstream with its usual model names only when ``OPENAI_API_KEY`` is set.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "<default>"
DEFAULT_LOCAL = "smollm2"


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python is installed, found without importing it (microseconds)."""
    return importlib.util.find_spec("llama_cpp") is not None


def default_data(env: Mapping[str, str]) -> dict[str, Any]:
    """A fresh copy of the default configuration data (callers may mutate it)."""
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "upstreams": {},
        "local": {},
        "models": [],
        "routing": {"default_backend": None},
    }
    # Checked here, where the default is decided: a missing llama-cpp-python must leave a
    # gateway that starts (serving upstreams only), not one whose worker crash-loops.
    if llama_cpp_available():
        data["local"][DEFAULT_LOCAL] = {"model": "default"}
        data["models"].append({"name": DEFAULT_LOCAL, "backend": DEFAULT_LOCAL})
    else:
        log.warning(
            "llama-cpp-python is not installed, so the built-in config serves no local model "
            "(install it with: pip install 'llm-gateway[local]')"
        )
    if env.get("OPENAI_API_KEY"):
        data["upstreams"]["openai"] = {
            "base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY",
        }
        data["models"] += [
            {"name": "gpt-*", "backend": "openai"},
            {"name": "o*", "backend": "openai"},
            {"name": "text-embedding-*", "backend": "openai"},
            {"name": "chatgpt-*", "backend": "openai"},
        ]
    return data
