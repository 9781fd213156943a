"""The responses the gateway answered itself (translated to chat), kept for their owner.

The `responses` table (its own migration component, SQLite and PostgreSQL alike): one row per
stored response, with its owner (a team, or a key without one: auth/ownership.py's
`owner_of`), the response it continues (`previous_response_id`), the response object and the
input items of its turn, as JSON. A conversation is rebuilt by walking `previous_id` back
(one recursive query): each turn's input items, then its output items, oldest first.

Deleting a response empties its row and keeps its id and owner (a tombstone), so the id stays
known as the gateway's: it answers 404 rather than being forwarded upstream. A conversation
whose earlier response was deleted starts after it.

Bounded: a response whose row would exceed `MAX_STORED_BYTES` is not stored (logged); a
conversation longer than `MAX_CHAIN` turns or larger than `MAX_HISTORY_BYTES` cannot be
continued (400). Rows older than `storage.responses_retention_days` (30, OpenAI's own
retention) are deleted, tombstones too, by a sweep at start and every `SWEEP_SECONDS`. With no
database open (auth.mode none and accounting off), rows live in this process's memory, at most
`MEMORY_LIMIT` of them and `MEMORY_BYTES` in all (the oldest go first), and go with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest, NotFound

log = logging.getLogger(__name__)

RESPONSE_STEPS: list[str] = [
    """
    CREATE TABLE responses (
        id TEXT NOT NULL PRIMARY KEY,
        owner TEXT NOT NULL,
        previous_id TEXT,
        backend TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        deleted_at DOUBLE PRECISION,
        response TEXT,
        input_items TEXT
    )
    """,
    # The retention sweep deletes by age.
    "CREATE INDEX responses_created ON responses (created_at)",
]

MAX_STORED_BYTES = 16 << 20  # one response's row (its input items and the response object)
MAX_CHAIN = 1000  # responses in one conversation
MAX_HISTORY_BYTES = 32 << 20  # a conversation's rows, read to rebuild it
MEMORY_LIMIT = 10_000  # rows kept without a database
MEMORY_BYTES = 256 << 20  # and their responses' and input items' JSON, in all
SWEEP_SECONDS = 3600.0  # between retention sweeps

_COLUMNS = "id, owner, previous_id, backend, created_at, deleted_at, response, input_items"
_CHAIN = """
    WITH RECURSIVE chain (id, previous_id, deleted_at, response, input_items, depth) AS (
        SELECT id, previous_id, deleted_at, response, input_items, 0
        FROM responses WHERE id = ? AND owner = ?
      UNION ALL
        SELECT r.id, r.previous_id, r.deleted_at, r.response, r.input_items, c.depth + 1
        FROM responses r JOIN chain c ON r.id = c.previous_id
        WHERE r.owner = ? AND c.depth < ? AND c.deleted_at IS NULL
    )
    SELECT id, previous_id, deleted_at, response, input_items, depth FROM chain ORDER BY depth
"""

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Stored:
    id: str
    backend: str | None
    response: dict | None  # None once deleted
    input_items: list[dict] | None


class _Rows(Protocol):
    async def insert(self, row: Row) -> None: ...
    async def get(self, response_id: str, owner: str) -> Row | None: ...
    async def tombstone(self, response_id: str, owner: str, now: float) -> bool: ...
    async def chain(self, response_id: str, owner: str, limit: int) -> list[Row]: ...
    async def forget_before(self, cutoff: float) -> int: ...


class _SqlRows:
    def __init__(self, db: Any) -> None:
        self.db = db  # storage.Database

    async def insert(self, row: Row) -> None:
        names = list(row)
        await self.db.execute(
            f"INSERT INTO responses ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            " ON CONFLICT (id) DO NOTHING", *row.values())

    async def get(self, response_id: str, owner: str) -> Row | None:
        return await self.db.fetchone(f"SELECT {_COLUMNS} FROM responses WHERE id = ? AND "
                                      "owner = ?", response_id, owner)

    async def tombstone(self, response_id: str, owner: str, now: float) -> bool:
        return await self.db.execute(
            "UPDATE responses SET response = NULL, input_items = NULL, deleted_at = ? WHERE "
            "id = ? AND owner = ? AND deleted_at IS NULL", now, response_id, owner) > 0

    async def chain(self, response_id: str, owner: str, limit: int) -> list[Row]:
        return await self.db.fetch(_CHAIN, response_id, owner, owner, limit - 1)

    async def forget_before(self, cutoff: float) -> int:
        return await self.db.execute("DELETE FROM responses WHERE created_at < ?", cutoff)


class _MemoryRows:
    def __init__(self) -> None:
        self.rows: OrderedDict[str, Row] = OrderedDict()  # oldest first
        self.limit = MEMORY_LIMIT
        self.max_bytes = MEMORY_BYTES
        self.bytes = 0  # the rows' JSON text, in all

    async def insert(self, row: Row) -> None:
        if row["id"] in self.rows:
            return
        self.rows[row["id"]] = {"deleted_at": None, **row}
        self.bytes += _size(row)
        while len(self.rows) > self.limit or self.bytes > self.max_bytes:
            self.bytes -= _size(self.rows.popitem(last=False)[1])

    async def get(self, response_id: str, owner: str) -> Row | None:
        row = self.rows.get(response_id)
        return row if row is not None and row["owner"] == owner else None

    async def tombstone(self, response_id: str, owner: str, now: float) -> bool:
        row = await self.get(response_id, owner)
        if row is None or row["deleted_at"] is not None:
            return False
        self.bytes -= _size(row)
        row.update(response=None, input_items=None, deleted_at=now)
        return True

    async def chain(self, response_id: str, owner: str, limit: int) -> list[Row]:
        found: list[Row] = []
        row = await self.get(response_id, owner)
        while row is not None and len(found) < limit:
            found.append(row)
            if row["deleted_at"] is not None or row["previous_id"] is None:
                break
            row = await self.get(row["previous_id"], owner)
        return found

    async def forget_before(self, cutoff: float) -> int:
        gone = 0
        while self.rows and next(iter(self.rows.values()))["created_at"] < cutoff:
            self.bytes -= _size(self.rows.popitem(last=False)[1])
            gone += 1
        return gone


def _size(row: Row) -> int:
    return len(row["response"] or "") + len(row["input_items"] or "")


class Conversations:
    def __init__(self, clock: Callable[[], float] = time.time,
                 retention_seconds: float | None = None) -> None:
        self.rows: _Rows = _MemoryRows()
        self.clock = clock
        self.retention_seconds = retention_seconds  # None: kept until deleted
        self._sweeper: asyncio.Task | None = None

    async def start(self, db: Any) -> None:
        """`db`: the opened storage.Database, or None (then rows stay in memory)."""
        if db is not None:
            await db.migrate("responses", RESPONSE_STEPS)
            self.rows = _SqlRows(db)
        if self.retention_seconds is not None:
            await self.sweep()
            self._sweeper = asyncio.create_task(self._sweep_every(SWEEP_SECONDS))

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def sweep(self) -> int:
        """Delete the rows older than the retention (tombstones too); how many went."""
        if self.retention_seconds is None:
            return 0
        gone = await self.rows.forget_before(self.clock() - self.retention_seconds)
        if gone:
            log.info("responses: %d stored past their retention deleted", gone)
        return gone

    async def _sweep_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.sweep()
            except Exception:  # the database down for a while: the next sweep catches up
                log.warning("responses: the retention sweep failed", exc_info=True)

    async def save(self, response: dict, owner: str, items: list[dict],
                   backend: str | None) -> bool:
        """Keep `response` (whose input items were `items`) for `owner`; False when it is too
        large to keep."""
        text = orjson.dumps(response).decode()
        item_text = orjson.dumps(items).decode()
        if len(text) + len(item_text) > MAX_STORED_BYTES:
            log.warning("response %s not stored: %d bytes, over %d", response["id"],
                        len(text) + len(item_text), MAX_STORED_BYTES)
            return False
        await self.rows.insert({
            "id": response["id"], "owner": owner, "previous_id":
            response.get("previous_response_id"), "backend": backend,
            "created_at": self.clock(), "response": text, "input_items": item_text})
        return True

    async def find(self, response_id: str, owner: str) -> Stored | None:
        """`owner`'s response by that id, a deleted one too (its response None); None when
        the gateway stored no such response for `owner`."""
        row = await self.rows.get(response_id, owner)
        if row is None:
            return None
        return Stored(row["id"], row["backend"], _json(row["response"]),
                      _json(row["input_items"]))

    async def delete(self, response_id: str, owner: str) -> bool:
        return await self.rows.tombstone(response_id, owner, self.clock())

    async def history(self, response_id: str, owner: str) -> list[dict] | None:
        """The items of the conversation up to and including the response `response_id`
        (its input items and output items, turn by turn, oldest first); None when the gateway
        stored no such response for `owner`. Raises NotFound when it was deleted, and
        InvalidRequest when the conversation is too long to continue."""
        rows = await self.rows.chain(response_id, owner, MAX_CHAIN + 1)
        if not rows:
            return None
        if rows[0]["deleted_at"] is not None:
            raise NotFound(f"Previous response with id '{clip(response_id)}' not found.",
                           param="previous_response_id")
        if len(rows) > MAX_CHAIN:
            raise _too_long(f"more than {MAX_CHAIN} responses")
        turns = []
        size = 0
        for row in rows:  # newest first
            if row["deleted_at"] is not None:
                break  # deleted: the conversation starts after it
            size += len(row["response"]) + len(row["input_items"])
            if size > MAX_HISTORY_BYTES:
                raise _too_long(f"more than {MAX_HISTORY_BYTES} bytes")
            turns.append(row)
        items: list[dict] = []
        for row in reversed(turns):
            items.extend(orjson.loads(row["input_items"]))
            items.extend(orjson.loads(row["response"]).get("output") or ())
        return items


def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _too_long(why: str) -> InvalidRequest:
    return InvalidRequest(f"This conversation is too long to continue ({why}); start a new "
                          "one with the input it needs.", param="previous_response_id",
                          code="conversation_too_long")
