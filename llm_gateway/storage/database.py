"""Opening the database named by `storage.url`.

STUB: no database yet; the accounting issue's storage work replaces the body.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.config import Config


async def open_database(config: Config) -> Any:
    """The opened, migrated Database, or None when nothing needs one."""
    return None
