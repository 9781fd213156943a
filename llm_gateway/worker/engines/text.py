"""Token bytes -> released text: whole UTF-8 characters only, stop strings cut off.

A token can end inside a multi-byte character, and a stop string can span several tokens;
so text that might still turn out to be the start of a stop string is held back until the
next token settles it. The stop string itself is never released.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextStream:
    __slots__ = ("_decoder", "_pending", "_stops", "stopped")

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stops = tuple(s for s in stops if s)
        self._pending = ""  # decoded, not yet released: may be the start of a stop string
        self.stopped = False

    def push(self, data: bytes) -> str:
        """Add one token's bytes; return the text that is now safe to release."""
        if self.stopped:
            return ""
        text = self._pending + self._decoder.decode(data)
        if not self._stops:
            return text
        cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            return text[:cut]
        hold = self._partial_stop(text)
        self._pending = text[len(text) - hold:] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """What is left once generation ends without a stop string."""
        if self.stopped:
            return ""
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return text

    def _partial_stop(self, text: str) -> int:
        """Length of the longest end of `text` that begins some stop string."""
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
