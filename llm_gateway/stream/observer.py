"""The one small interface through which the layers watch an answer go by.

A layer that cares about an answer (the local worker's release, grouping's replay buffer and
cache, the ledger's meter, the Responses-id claims, the request log) adds an `Observer` to the
`Result` (`Result.observe`); it never wraps the stream. The relay (relay.py) shows each
observer every block, or the whole body, then tells each once how the answer ended. They are
called in the order of their `Stage`, stated here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from llm_gateway.stream.events import Block, Event


class Stage(IntEnum):
    """The order observers see each block and the end (lowest first)."""

    SOURCE = 0  # the backend's own: a local worker is released when its stream is over
    SHARE = 1  # grouping: a shared call's replay buffer, and the cache once it is complete
    METER = 2  # first token, usage (the usage chunk cut out when unasked), outcome: the
    #            ledger, the metrics and the log line all count from what it measured
    CLAIM = 3  # a stored object's id becomes its caller's before the client sees it
    LOG = 4  # the request log's copy of the answer (server.log_bodies), as sent


# How an answer ended: "ok" (complete), "client_gone", "upstream_error", "timeout" (the
# backend's stream ended with a timeout error event) or "error" (it raised).
OUTCOMES = ("ok", "client_gone", "upstream_error", "timeout", "error")


@dataclass(frozen=True, slots=True)
class End:
    outcome: str
    last_block: Block | None = None  # a stream's last block, if any

    @property
    def last(self) -> Event | None:
        """The stream's last event (cut out of its block when asked)."""
        return self.last_block.last_event if self.last_block is not None else None

    @property
    def in_error(self) -> bool:
        """The stream's last event is an error event (the backend failed mid-stream)."""
        if self.outcome == "ok":
            return False  # complete: it ended with its last event
        last = self.last
        return last is not None and last.is_error


class Observer:
    """Watches one answer; every method is optional. A method may return an awaitable, which
    the relay awaits before the block (or body) goes to the client: for work that must happen
    first (a claim). Exceptions from `ended` are logged, never raised into the answer."""

    stage: ClassVar[Stage] = Stage.LOG

    def whole(self, status: int, body: bytes) -> Awaitable[None] | None:
        """A whole answer, before it is sent."""
        return None

    def block(self, block: Block) -> Awaitable[None] | None:
        """One block of a stream, before it is sent (`block.drop` keeps an event back)."""
        return None

    def ended(self, end: End) -> None:
        """Once: the answer is complete, or over for another reason."""
