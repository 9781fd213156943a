"""One member of a shared call: its cursor in the replay buffer, and its stream.

See fanout.py for the shared call itself; a member reads the buffer from its own cursor, and
when it has read everything and nobody pulls the backend's stream, it pulls or starts the
pump (`Reader.blocks`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from llm_gateway.backends.sse import error_event


class Shared(Protocol):
    """What a member reads from: the shared call (fanout.SharedCall), seen from here."""

    first: int  # sequence number of blocks[0]
    blocks: list[bytes]  # the replay buffer
    limit: int
    done: bool
    pumped: bool
    pulling: Reader | None
    members: int
    readers: set[Reader]

    def changed(self) -> asyncio.Event: ...

    def start_pump(self) -> None: ...

    async def pull(self) -> bool: ...

    def stop_joins(self) -> None: ...

    def cancel(self) -> None: ...


class Reader:
    """One member: its cursor in the replay buffer."""

    __slots__ = ("collect", "consumed", "dropped", "leaving", "left", "pos", "rename", "shared")

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.pos = shared.first  # 0 while the call can be joined: the whole stream
        self.consumed = 0
        self.collect = False  # collects a whole answer: never dropped for lagging
        self.dropped = False
        self.leaving = False  # its client left while it pulled for others: stop after the pull
        self.left = False
        # A member other than the leader gets its blocks under an id of its own (restream.py):
        # one bytes.replace per block, and nothing at all for the leader.
        self.rename: Callable[[bytes], bytes] | None = None
        shared.members += 1

    async def blocks(self) -> AsyncIterator[bytes]:
        """This member's stream: what the buffer holds past its cursor, then the live blocks.

        When it has read everything and nobody is pulling the backend's stream, it pulls the
        next block itself if it is the only member (the common case: no task, no hand-off
        per block), or starts the pump task if others read too.
        """
        shared = self.shared
        try:
            while not self.leaving:
                if self.dropped:
                    yield error_event(
                        f"This client fell more than {shared.limit} bytes behind the shared "
                        "stream it was reading and was disconnected.", code="stream_lagged")
                    return
                end = shared.first + len(shared.blocks)
                if self.pos < end:
                    pending = shared.blocks[self.pos - shared.first:]
                    block = pending[0] if len(pending) == 1 else b"".join(pending)
                    self.pos = end
                    self.consumed += len(block)
                    yield block if self.rename is None else self.rename(block)
                elif shared.done:
                    return
                elif shared.pumped or shared.pulling is not None:
                    await shared.changed().wait()
                elif shared.members > 1:
                    shared.start_pump()
                else:
                    shared.pulling = self
                    try:
                        await shared.pull()
                    finally:
                        shared.pulling = None
        finally:
            self.leave()

    async def close(self) -> None:
        self.leave()

    def client_gone(self) -> bool:
        """Its client left: whether to cancel the request's task now (`StreamResponse`).

        Not while it pulls the backend's stream and others read too: a cancelled pull would
        break the stream for them, so it stops after the block under way instead (the others
        then go on, and the next of them pulls or starts the pump).
        """
        shared = self.shared
        if shared.pulling is self:
            if shared.members > 1:
                self.leaving = True
                return False
            shared.stop_joins()  # the stream dies with this request: nobody may join it
        return True

    def leave(self) -> None:
        if self.left:
            return
        self.left = True
        shared = self.shared
        shared.readers.discard(self)
        shared.members -= 1
        if shared.members == 0 and not shared.done:
            shared.cancel()  # nobody is left to read it: stop the backend
