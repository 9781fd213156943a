"""The built-in configuration, used when no file is given.

Kept as plain YAML-shaped data (not objects) so it goes through exactly the same builder,
validation and environment overrides as a file would.
"""

from __future__ import annotations

from typing import Any

DEFAULT_SOURCE = "<default>"


def default_data() -> dict[str, Any]:
    """A fresh copy of the default configuration data (callers may mutate it)."""
    return {
        "upstreams": {
            "openai": {"base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY"},
        },
        "models": [
            {"name": "gpt-*", "backend": "openai"},
            {"name": "o*", "backend": "openai"},
            {"name": "text-embedding-*", "backend": "openai"},
            {"name": "chatgpt-*", "backend": "openai"},
        ],
        "routing": {"default_backend": None},
    }
