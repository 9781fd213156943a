"""One tool call's JSON object, read a character at a time as the model writes it.

Every native syntax we parse wraps the same object, `{"name": ..., "arguments": {...}}`
(Llama 3.1 says "parameters"; Mistral adds an "id"), so one scanner serves them all. It
reports the name once the name's string has closed, then the arguments' raw JSON text as it
arrives, so that a client sees the call start and its arguments grow token by token, as
OpenAI streams them. Keys may come in any order: arguments written before the name are held
until the name is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

ARGUMENT_KEYS = ("arguments", "parameters")
_WS = " \t\r\n"


@dataclass(frozen=True, slots=True)
class CallStart:
    index: int
    name: str


@dataclass(frozen=True, slots=True)
class CallArgs:
    index: int
    text: str  # a fragment of the arguments' JSON text


@dataclass(frozen=True, slots=True)
class CallEnd:
    index: int


@dataclass(frozen=True, slots=True)
class Text:
    text: str


Event = Text | CallStart | CallArgs | CallEnd


class _Value:
    """The extent of one JSON value: where it ends, given its characters one at a time."""

    __slots__ = ("depth", "escape", "in_string", "scalar")

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escape = False
        self.scalar = False  # a number, true, false or null: ends at the next delimiter

    def push(self, ch: str) -> int:
        """1: `ch` is part of the value and the value goes on; 2: `ch` ends it;
        0: the value had ended before `ch` (a scalar's delimiter)."""
        if self.in_string:
            if self.escape:
                self.escape = False
            elif ch == "\\":
                self.escape = True
            elif ch == '"':
                self.in_string = False
                return 2 if self.depth == 0 else 1
            return 1
        if self.scalar:
            return 0 if ch in _WS or ch in ",}]" else 1
        if ch == '"':
            self.in_string = True
        elif ch in "{[":
            self.depth += 1
        elif ch in "}]":
            self.depth -= 1
            return 2 if self.depth == 0 else 1
        elif self.depth == 0 and ch not in _WS:
            self.scalar = True
        return 1


class CallScanner:
    """Reads `{"name": "...", "arguments": ...}`; `failed` once the text cannot be one."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.name: str | None = None
        self.done = False
        self.failed = False
        self._state = "open"
        self._key = ""  # the raw text of the key or string being read
        self._escape = False
        self._value: _Value | None = None
        self._args: list[str] = []  # argument text held until the name is known
        self._args_seen = False
        self._args_string = False  # arguments given as a JSON string holding the JSON

    @property
    def started(self) -> bool:
        return self.name is not None

    def push(self, text: str) -> tuple[list[Event], str]:
        """Feed text; the events it settles, and what follows the object's end or the point
        where it failed (unread)."""
        out: list[Event] = []
        for i, ch in enumerate(text):
            self._char(ch, out)
            if self.failed:
                return out, text[i:]  # the character that broke it is not the object's
            if self.done:
                return out, text[i + 1:]
        return out, ""

    def _char(self, ch: str, out: list[Event]) -> None:
        state = self._state
        if state in ("key", "name"):
            self._string_char(ch, out)
        elif state in ("args", "skip"):
            self._value_char(ch, out)
        elif ch in _WS:
            return
        elif state == "open":
            self._expect(ch == "{", "key?")
        elif state == "key?":
            if ch == "}":
                self._finish(out)
            else:
                self._expect(ch == '"', "key")
        elif state == "colon":
            self._expect(ch == ":", "value")
        elif state == "value":
            self._begin_value(ch, out)
        elif state == "next":
            if ch == "}":
                self._finish(out)
            else:
                self._expect(ch == ",", "key?")

    def _expect(self, ok: bool, then: str) -> None:
        if ok:
            self._state = then
            if then in ("key", "name"):
                self._key = ""  # a string begins
        else:
            self.failed = True

    def _string_char(self, ch: str, out: list[Event]) -> None:
        if self._escape:
            self._escape = False
        elif ch == "\\":
            self._escape = True
        elif ch == '"':
            try:
                value = json.loads('"' + self._key + '"')
            except ValueError:
                self.failed = True
                return
            if self._state == "key":
                self._key, self._state = value, "colon"
            else:
                self._named(value, out)
            return
        self._key += ch

    def _begin_value(self, ch: str, out: list[Event]) -> None:
        key = self._key
        if key == "name" and self.name is None:
            self._expect(ch == '"', "name")
            return
        self._value = _Value()
        if key in ARGUMENT_KEYS and not self._args_seen:
            self._args_seen = True
            self._args_string = ch == '"'
            self._state = "args"
        else:
            self._state = "skip"
        self._value_char(ch, out)

    def _value_char(self, ch: str, out: list[Event]) -> None:
        assert self._value is not None
        step = self._value.push(ch)
        if step and self._state == "args":
            self._emit(ch, out)
        if step != 1:
            self._state = "next"
            if step == 0:
                self._char(ch, out)  # the delimiter belongs to the object

    def _emit(self, text: str, out: list[Event]) -> None:
        if self.name is None or self._args_string:
            self._args.append(text)
        else:
            out.append(CallArgs(self.index, text))

    def _named(self, name: str, out: list[Event]) -> None:
        if not name:
            self.failed = True
            return
        self.name = name
        self._state = "next"
        out.append(CallStart(self.index, name))
        if self._args and not self._args_string:
            out.append(CallArgs(self.index, "".join(self._args)))
            self._args = []

    def _finish(self, out: list[Event]) -> None:
        if self.name is None:
            self.failed = True
            return
        if self._args_string:
            raw = "".join(self._args)
            try:
                out.append(CallArgs(self.index, str(json.loads(raw))))
            except ValueError:
                out.append(CallArgs(self.index, raw))
        elif not self._args_seen:
            out.append(CallArgs(self.index, "{}"))
        self.done = True
        out.append(CallEnd(self.index))

    def abandon(self, out: list[Event]) -> None:
        """The text ended inside the object: close the call as far as it got."""
        if self.started and not self.done and self._args_string and self._args:
            out.append(CallArgs(self.index, "".join(self._args)))
            self._args = []
