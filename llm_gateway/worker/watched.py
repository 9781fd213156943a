"""An engine's event stream with each event shown to a watcher as it passes (the usage log,
the worker's spans): `ready` and `__anext__` written once."""

from __future__ import annotations

from llm_gateway.worker.engines.base import Event, EventStream


class Watching(EventStream):
    def __init__(self, inner: EventStream) -> None:
        self._inner = inner

    def _see(self, event: Event) -> None:
        """One event, before the reader gets it."""

    def _stopped(self) -> None:
        """The stream ended or failed without its `Finished` (a later call after it is fine)."""

    def ready(self) -> list[Event]:
        events = self._inner.ready()
        for event in events:
            self._see(event)
        return events

    async def __anext__(self) -> Event:
        try:
            event = await self._inner.__anext__()
        except Exception:  # its end too (StopAsyncIteration); a cancelled reader: aclose
            self._stopped()
            raise
        self._see(event)
        return event
