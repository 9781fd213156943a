"""What a model endpoint stored upstream (a response, a stored chat completion) becomes its
caller's (auth/ownership.py) before the client sees its id.

A whole answer is read for its `id`; a stream's first block (the first event carries the id)
is, before it is sent on; later blocks pass untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from llm_gateway.call import Result
from llm_gateway.principal import Principal

# The stored object's id in a parsed answer or stream event; None: nothing stored there.
IdOf = Callable[[Any], str | None]


async def claim(state: Any, principal: Principal, kind: str, result: Result,
                in_answer: IdOf, in_event: IdOf) -> None:
    """`result` (a 200 from `result.backend`) stored an object: it is `principal`'s."""
    if result.stream is not None:
        result.stream = _claiming(state, principal, kind, result.backend, result.stream,
                                  in_event)
        return
    try:
        object_id = in_answer(orjson.loads(result.body))
    except orjson.JSONDecodeError:
        return
    if object_id:
        await state.owners.claim(kind, object_id, principal, result.backend)


async def _claiming(state: Any, principal: Principal, kind: str, backend: str,
                    blocks: AsyncIterator[bytes], in_event: IdOf) -> AsyncIterator[bytes]:
    first = True
    try:
        async for block in blocks:
            if first:
                first = False
                object_id = _in_block(block, in_event)
                if object_id:
                    await state.owners.claim(kind, object_id, principal, backend)
            yield block
    finally:
        await blocks.aclose()  # type: ignore[attr-defined]


def _in_block(block: bytes, in_event: IdOf) -> str | None:
    for line in block.splitlines():
        if line.startswith(b"data:"):
            try:
                event = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            found = in_event(event)
            if found:
                return found
    return None


def id_of(value: Any) -> str | None:
    """`value["id"]` when it is a non-empty string."""
    found = value.get("id") if isinstance(value, dict) else None
    return found if isinstance(found, str) and found else None
