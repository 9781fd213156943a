"""Who created which upstream object (stored response, file, batch, vector store...): the
`objects` table, migrated as its own component ("objects") on SQLite and PostgreSQL.

One row per object the gateway saw created, keyed by (kind, id): its owner (a team, or a key
for a key without a team) and the backend that made it. Rows are only ever added: an id is
never reused upstream, and a deleted object's row still says whose it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

OBJECT_STEPS: list[str] = [
    """
    CREATE TABLE objects (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        owner TEXT NOT NULL,
        backend TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (kind, id)
    )
    """,
]

MAX_ID = 256  # no upstream id comes close; a longer one is nobody's (never stored, never asked)
_CHUNK = 500  # ids per `IN (...)` query: under every SQLite build's variable limit


@dataclass(frozen=True, slots=True)
class Owned:
    owner: str  # "team:<name>", "key:<id>" or a passthrough client's "key:pt_<hash>"
    backend: str | None = None  # the backend that created it, when it matters (responses)


class ObjectStore:
    def __init__(self, db: Any, clock: Callable[[], float] = time.time) -> None:
        self.db = db  # storage.Database
        self.clock = clock

    async def add(self, kind: str, object_id: str, owned: Owned) -> None:
        """Remember `owned` for the object; a row already there wins (first claim)."""
        await self.db.execute(
            "INSERT INTO objects (kind, id, owner, backend, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (kind, id) DO NOTHING",
            kind, object_id, owned.owner, owned.backend, self.clock())

    async def find(self, kind: str, object_id: str) -> Owned | None:
        row = await self.db.fetchone(
            "SELECT owner, backend FROM objects WHERE kind = ? AND id = ?", kind, object_id)
        return None if row is None else Owned(row["owner"], row["backend"])

    async def find_many(self, kind: str, ids: Iterable[str]) -> dict[str, Owned]:
        """The known ones among `ids`."""
        wanted = sorted({i for i in ids if len(i) <= MAX_ID})
        found: dict[str, Owned] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for row in await self.db.fetch(
                    f"SELECT id, owner, backend FROM objects WHERE kind = ? AND id IN ({marks})",
                    kind, *chunk):
                found[row["id"]] = Owned(row["owner"], row["backend"])
        return found
