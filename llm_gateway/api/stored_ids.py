"""What a model endpoint stored upstream (a response, a stored chat completion) becomes its
caller's (auth/ownership.py) before the client sees its id.

An observer of the answer (stream/observer.py): a whole answer is read for its `id`; a stream's
first event that names one (the first event carries it) is, before its block is sent on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from llm_gateway.call import Result
from llm_gateway.principal import Principal
from llm_gateway.stream.events import Block
from llm_gateway.stream.observer import Observer, Stage

# The stored object's id in a parsed answer or stream event; None: nothing stored there.
IdOf = Callable[[Any], str | None]


def claim(state: Any, principal: Principal, kind: str, result: Result,
          in_answer: IdOf, in_event: IdOf) -> None:
    """`result` (a 200 from `result.backend`) stores an object: it becomes `principal`'s."""
    result.observe(_Claim(state, principal, kind, result.backend, in_answer, in_event))


class _Claim(Observer):
    stage = Stage.CLAIM
    __slots__ = ("backend", "in_answer", "in_event", "kind", "pending", "principal", "state")

    def __init__(self, state: Any, principal: Principal, kind: str, backend: str,
                 in_answer: IdOf, in_event: IdOf) -> None:
        self.state = state
        self.principal = principal
        self.kind = kind
        self.backend = backend
        self.in_answer = in_answer
        self.in_event = in_event
        self.pending = True  # until the first block

    def whole(self, status: int, body: bytes) -> Awaitable[None] | None:
        try:
            object_id = self.in_answer(orjson.loads(body))
        except orjson.JSONDecodeError:
            return None
        return self._claim(object_id)

    def block(self, block: Block) -> Awaitable[None] | None:
        if not self.pending:
            return None
        self.pending = False
        for event in block.events:
            object_id = self.in_event(event.data)
            if object_id:
                return self._claim(object_id)
        return None

    def _claim(self, object_id: str | None) -> Awaitable[None] | None:
        if not object_id:
            return None
        return self.state.owners.claim(self.kind, object_id, self.principal, self.backend)


def id_of(value: Any) -> str | None:
    """`value["id"]` when it is a non-empty string."""
    found = value.get("id") if isinstance(value, dict) else None
    return found if isinstance(found, str) and found else None
