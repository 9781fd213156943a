"""Loading our OpenAPI documents, and the path table: the edge's one routing of a request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def spec_path(name: str = "openai.yaml") -> Path:
    """Where an OpenAPI document lives: beside the package in a checkout, inside it if installed."""
    packaged = resources.files("llm_gateway") / "openapi" / name
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "openapi" / name


def load_spec(name: str = "openai.yaml") -> dict:
    # Loaded here and handed to Connexion as a dict: given a file, Connexion renders it
    # through Jinja first, which would mangle any '{{' in descriptions.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 20x faster start-up
    with spec_path(name).open("rb") as fh:
        return yaml.load(fh, Loader=loader)


def _template_regex(template: str, item: dict) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A path template as a regex (group i holds the i-th parameter, whose names it returns);
    parameters declared `format: path` may hold slashes."""
    slashy = {
        p.get("name")
        for op in [item, *(item.get(m) or {} for m in _HTTP_METHODS)]
        for p in op.get("parameters") or []
        if isinstance(p, dict) and (p.get("schema") or {}).get("format") == "path"
    }
    pattern = ""
    names: list[str] = []
    for i, piece in enumerate(re.split(r"\{([^}/]+)\}", template)):
        if i % 2 == 0:
            pattern += re.escape(piece)
        else:
            names.append(piece)
            pattern += "(.+)" if piece in slashy else "([^/]+)"
    return re.compile(f"^{pattern}$"), tuple(names)


@dataclass(frozen=True, slots=True)
class Match:
    operation_id: str | None  # None: the path exists but not with this method
    allowed: tuple[str, ...]
    # Matched a path template (`/v1/responses/{response_id}`), not a fixed path: with another
    # method it may be another endpoint our document leaves out (`POST /v1/responses/compact`).
    templated: bool = False
    params: dict[str, str] | None = None  # the template's parameters, by name


class PathTable:
    """Which (path, method) pairs the spec serves, so routing misses are answered by us."""

    def __init__(self, *specs: dict) -> None:
        self._routes: list[tuple[re.Pattern[str], tuple[str, ...], dict[str, str]]] = []
        self._static: dict[str, dict[str, str]] = {}
        for spec in specs:
            for template, item in (spec.get("paths") or {}).items():
                methods = {
                    m.upper(): op["operationId"]
                    for m in _HTTP_METHODS
                    if isinstance(op := item.get(m), dict) and op.get("operationId")
                }
                if "{" not in template:
                    self._static.setdefault(template, {}).update(methods)
                    continue
                self._routes.append((*_template_regex(template, item), methods))

    def match(self, path: str, method: str) -> Match | None:
        methods = self._static.get(path)
        templated = methods is None
        params = None
        if methods is None:
            for pattern, names, candidate in self._routes:
                found = pattern.match(path)
                if found is not None:
                    methods = candidate
                    params = dict(zip(names, found.groups(), strict=True))
                    break
        if methods is None:
            return None
        op = methods.get(method) or (methods.get("GET") if method == "HEAD" else None)
        return Match(op, tuple(methods), templated, params)
