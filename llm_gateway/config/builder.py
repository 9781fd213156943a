"""A small generic builder: YAML-shaped data -> frozen dataclasses, driven by type hints.

Supports str, int, float, bool, ``X | None``, ``Literal[...]``, ``list[X]``, ``dict[str, X]``
and nested dataclasses, plus the field metadata documented in ``schema.py``. It never stops at
the first problem: every problem is recorded with its path (``models[2].backend``) and the
failed value is replaced by ``INVALID``, so the caller can report everything in one go.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

INVALID: Any = type("Invalid", (), {"__repr__": lambda self: "<INVALID>"})()


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def describe(value: Any) -> str:
    """A short description of a value for messages: ``'abc' (str)``, ``a list``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def yaml_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The dataclass fields that are YAML keys, in declaration order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)]


class Builder:
    def __init__(self, raw_strings: Mapping[str, str] | None = None) -> None:
        self.problems: list[tuple[str, str]] = []
        # Raw env override text by path: a str field set to e.g. `123` or `a: b` by an env var
        # gets the text as written rather than YAML's int or mapping.
        self.raw_strings = raw_strings or {}

    def fail(self, path: str, message: str) -> Any:
        self.problems.append((path, message))
        return INVALID

    def build(self, tp: Any, value: Any, path: str) -> Any:
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                raise TypeError(f"unsupported union {tp!r} at {path}")  # schema bug, not user's
            return None if value is None else self.build(args[0], value, path)
        if origin is Literal:
            choices = get_args(tp)
            if any(value == c and type(value) is type(c) for c in choices):
                return value
            # YAML 1.1 reads an unquoted `off` / `on` as false / true: the word was meant.
            word = {False: "off", True: "on"}.get(value) if isinstance(value, bool) else None
            if word in choices:
                return word
            expected = ", ".join(repr(c) for c in choices)
            got = describe(value)
            if isinstance(value, bool):
                got += " (YAML reads unquoted on/off, yes/no as true/false; quote the word)"
            return self.fail(path, f"expected one of {expected}; got {got}")
        if origin is list:
            if not isinstance(value, list | tuple):
                return self.fail(path, f"expected a list, got {describe(value)}")
            (item_tp,) = get_args(tp)
            return [self.build(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            return self._dict(get_args(tp)[1], value, path)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self._dataclass(tp, value, path)
        return self._scalar(tp, value, path)

    def fields(self, cls: type, value: Any, path: str) -> dict[str, Any]:
        """Build each YAML field of ``cls`` from a mapping; failed fields hold INVALID."""
        names = [f.name for f in yaml_fields(cls)]
        renamed = {f.metadata["was"]: f.name for f in yaml_fields(cls) if "was" in f.metadata}
        for key in value:
            if key in renamed:
                self.fail(join(path, str(key)), f"renamed to {renamed[key]!r} (write that instead)")
            elif key not in names:
                self.fail(join(path, str(key)), _unknown_key(str(key), names))
        out: dict[str, Any] = {}
        for f in yaml_fields(cls):
            fpath = join(path, f.name)
            if f.name in value:
                out[f.name] = built = self.build(_hints(cls)[f.name], value[f.name], fpath)
                if built is not INVALID and built is not None:
                    self._check(f, built, fpath)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                out[f.name] = self.fail(fpath, "required")
        return out

    def _dataclass(self, cls: type, value: Any, path: str) -> Any:
        if value is None:
            value = {}  # an empty section (`server:` with nothing under it) = all defaults
        if not isinstance(value, Mapping):
            return self.fail(path, f"expected a mapping, got {describe(value)}")
        before = len(self.problems)
        kwargs = self.fields(cls, value, path)
        # Any problem inside means some value below is INVALID: don't construct with it.
        return INVALID if len(self.problems) > before else cls(**kwargs)

    def _dict(self, value_tp: Any, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            return self.fail(path, f"expected a mapping, got {describe(value)}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                self.fail(path, f"keys must be non-empty strings, got {describe(key)}")
                continue
            out[key] = self.build(value_tp, item, join(path, key))
        return out

    def _scalar(self, tp: type, value: Any, path: str) -> Any:
        if tp is str:
            if not isinstance(value, str) and path in self.raw_strings:
                value = self.raw_strings[path]
            if isinstance(value, str):
                return value
            return self.fail(path, f"expected a string, got {describe(value)}")
        if tp is bool:
            if isinstance(value, bool):
                return value
            return self.fail(path, f"expected true or false, got {describe(value)}")
        # bool is a subclass of int, but `port: true` is certainly a mistake.
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if tp is int:
            if is_number and isinstance(value, int):
                return value
            return self.fail(path, f"expected an integer, got {describe(value)}")
        if tp is float:
            if not is_number:
                return self.fail(path, f"expected a number, got {describe(value)}")
            if not math.isfinite(value):
                return self.fail(path, f"expected a finite number, got {describe(value)}")
            return float(value)  # ints are fine where floats are expected
        raise TypeError(f"unsupported config type {tp!r} at {path}")

    def _check(self, f: dataclasses.Field[Any], value: Any, path: str) -> None:
        meta = f.metadata
        if "ge" in meta and value < meta["ge"]:
            self.fail(path, f"must be >= {meta['ge']}, got {value}")
        if "gt" in meta and value <= meta["gt"]:
            self.fail(path, f"must be > {meta['gt']}, got {value}")
        if "le" in meta and value > meta["le"]:
            self.fail(path, f"must be <= {meta['le']}, got {value}")
        if "check" in meta and (message := meta["check"](value)):
            self.fail(path, message)


def _unknown_key(key: str, names: list[str]) -> str:
    message = f"unknown key (expected one of: {', '.join(names)})"
    close = difflib.get_close_matches(key, names, n=1)
    return f"{message}; did you mean {close[0]!r}?" if close else message
