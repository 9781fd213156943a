"""Model output -> content and tool calls, as the text is generated.

One parser per native syntax; each splits the text into content and the calls that the
`scan.CallScanner` reads:

- `hermes` (Hermes 2 Pro, Qwen2.5, Qwen3, ...): `<tool_call>{"name": ..., "arguments": ...}
  </tool_call>`, one block per call, anywhere in the text.
- `llama3` (Llama 3.1 to 3.3): the whole answer is `{"name": ..., "parameters": ...}`,
  possibly after `<|python_tag|>`; several calls may be separated by `;`.
- `mistral` (Mistral v0.3 tokenizers): `[TOOL_CALLS]` then a JSON list of call objects.

Text that might still turn out to be the start of a marker is held back until the next
text settles it; whitespace next to a call is not content. A call whose JSON breaks before
its name is known is given back as content, with its marker.
"""

from __future__ import annotations

from collections.abc import Callable

from llm_gateway.worker.toolcalls.scan import CallEnd, CallScanner, Event, Text

_WS = " \t\r\n"


def _partial(text: str, marker: str) -> int:
    """Length of the longest end of `text` that begins `marker` (the part to hold back)."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


class ToolParser:
    """Feed text with `push`, then `close`; both return the events settled so far."""

    marker = ""  # what opens the calls

    def __init__(self, parallel: bool = True) -> None:
        self.parallel = parallel
        self.calls = 0  # calls started
        self.finished = False  # parallel false and the one call is complete: nothing more
        self._buf = ""  # text not consumed yet
        self._ws = ""  # whitespace held back: content only if more content follows
        self._after_call = False  # a call just ended: whitespace that follows is not content
        self._state = "text"
        self._scanner: CallScanner | None = None
        self._opener = ""  # the marker that opened the current call
        self._raw = ""  # the text fed to the scanner, given back if it fails before a name
        self._out: list[Event] = []

    # -- the driver ---------------------------------------------------------------------

    def push(self, text: str) -> list[Event]:
        if self.finished:
            return []
        self._buf += text
        while self._buf and not self.finished and self._step():
            pass
        out, self._out = self._out, []
        return out

    def close(self) -> list[Event]:
        """The text has ended: release what was held, close a call left open."""
        if self.finished:
            return []
        scanner = self._scanner
        if self._state == "call" and scanner is not None:
            if scanner.started:
                scanner.abandon(self._out)
                self._out.append(CallEnd(scanner.index))
            else:
                self.calls -= 1
                self._content(self._opener + self._raw + self._buf)
        elif self._state in ("text", "plain", "start", "tagged"):
            self._content(self._buf)
        self._buf = ""
        if not self.calls and self._ws:
            self._out.append(Text(self._ws))
        self._ws = ""
        out, self._out = self._out, []
        return out

    def _step(self) -> bool:
        """Consume some of `_buf` in the current state; False when it needs more text."""
        step: Callable[[], bool] = getattr(self, "_" + self._state)
        return step()

    # -- shared states ------------------------------------------------------------------

    def _text(self) -> bool:
        """Content, until the marker."""
        at = self._buf.find(self.marker)
        if at < 0:
            hold = _partial(self._buf, self.marker)
            self._content(self._buf[:len(self._buf) - hold])
            self._buf = self._buf[len(self._buf) - hold:]
            return False
        self._content(self._buf[:at])
        self._buf = self._buf[at + len(self.marker):]
        self._opened()
        return True

    def _plain(self) -> bool:
        """Content to the end: no call can follow."""
        self._content(self._buf)
        self._buf = ""
        return False

    def _call(self) -> bool:
        scanner = self._scanner
        assert scanner is not None
        events, rest = scanner.push(self._buf)
        self._raw += self._buf[:len(self._buf) - len(rest)]
        self._buf = rest
        self._out.extend(events)
        if scanner.failed:
            self._scanner = None
            if scanner.started:
                self._out.append(CallEnd(scanner.index))
                self._after_call = True
            else:
                self.calls -= 1  # its index goes to the next call
                self._content(self._opener + self._raw)
            self._state = self._after_failure
            return True
        if not scanner.done:
            return False
        self._scanner = None
        self._after_call = True
        if not self.parallel:
            self.finished = True
            return False
        self._state = "after"
        return True

    def _begin_call(self, opener: str = "") -> None:
        self._ws = ""  # whitespace before a call is not content
        self._scanner = CallScanner(self.calls)
        self.calls += 1
        self._opener = opener
        self._raw = ""
        self._state = "call"

    def _content(self, text: str) -> None:
        if self._after_call:
            text = text.lstrip(_WS)
        body = text.rstrip(_WS)
        if not body:
            self._ws += text
            return
        self._after_call = False
        self._out.append(Text(self._ws + body))
        self._ws = text[len(body):]

    def _head(self, skip: str = _WS) -> str | None:
        """The next character after the `skip` ones (dropped); None if none came yet."""
        self._buf = self._buf.lstrip(skip)
        return self._buf[0] if self._buf else None

    # -- per syntax ---------------------------------------------------------------------

    _after_failure = "text"  # the state after a call that was not one

    def _opened(self) -> None:
        """The marker was read."""
        self._begin_call(self.marker)

    def _after(self) -> bool:
        """After a call's object."""
        self._state = "text"
        return True


class HermesParser(ToolParser):
    marker = "<tool_call>"
    closer = "</tool_call>"

    def _after(self) -> bool:
        """After a call's object: its closing tag (whitespace before it is not content)."""
        rest = self._buf.lstrip(_WS)
        self._buf = rest
        if not rest or (self.closer.startswith(rest) and rest != self.closer):
            return False  # maybe the closer, not all there yet
        if rest.startswith(self.closer):
            self._buf = rest[len(self.closer):]
        self._state = "text"  # without a closer, read on as content
        return True


class MistralParser(ToolParser):
    marker = "[TOOL_CALLS]"

    def _opened(self) -> None:
        self._state = "list"

    def _list(self) -> bool:
        """After the marker: a list of calls, or (tolerated) one bare call."""
        head = self._head()
        if head == "[":
            self._buf = self._buf[1:]
            self._opener = self.marker + "["
            self._state = "item"
        elif head == "{":
            self._begin_call(self.marker)
        elif head is not None:
            self._content(self.marker)
            self._state = "text"
        return head is not None

    def _item(self) -> bool:
        head = self._head()
        if head == "]":
            self._buf = self._buf[1:]
            self._state = "text"
        elif head is not None:
            self._begin_call(self._opener if not self.calls else "")
        return head is not None

    def _after(self) -> bool:
        head = self._head()
        if head in (",", "]"):
            self._buf = self._buf[1:]
        if head is not None:
            self._state = "item" if head == "," else "text"
        return head is not None


class Llama3Parser(ToolParser):
    """A call only at the very start of the answer (after whitespace)."""

    marker = "<|python_tag|>"

    def __init__(self, parallel: bool = True) -> None:
        super().__init__(parallel)
        self._state = "start"

    def _start(self) -> bool:
        rest = self._buf.lstrip(_WS)
        if not rest:
            return False
        if rest.startswith(self.marker):
            self._buf = rest[len(self.marker):]
            self._state = "tagged"
            return True
        if self.marker.startswith(rest):
            return False
        if rest[0] == "{":
            self._buf = rest
            self._begin_call()
        else:
            self._state = "plain"
        return True

    def _tagged(self) -> bool:
        """After <|python_tag|>: a JSON call, or a built-in tool's code (content)."""
        head = self._head()
        if head == "{":
            self._begin_call(self.marker)
        elif head is not None:
            self._content(self.marker)
            self._state = "plain"
        return head is not None

    def _after(self) -> bool:
        """After a call: another after `;`, or the rest is content."""
        head = self._head(_WS + ";")
        if head == "{":
            self._begin_call()
        elif head is not None:
            self._state = "plain"
        return head is not None

    _after_failure = "plain"


PARSERS: dict[str, type[ToolParser]] = {
    "hermes": HermesParser, "llama3": Llama3Parser, "mistral": MistralParser}
