"""Load the YAML file, apply ``LLM_GATEWAY__*`` overrides, and build the typed config.

Problems are collected as ``(path, message)`` pairs through every stage and raised once,
together, as a ConfigError.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import safety
from .access import TeamConfig
from .accounting import StorageConfig
from .backend_checks import check_egress, check_kind, check_local
from .builder import Builder, describe, join
from .checks import team_name
from .defaults import DEFAULT_SOURCE, default_data
from .errors import ConfigError
from .grouping import GroupingConfig
from .placement_checks import check_placement
from .routes import ModelRoute, check_names, check_routes
from .schema import (
    PASSTHROUGH_OFF,
    Config,
    LocalConfig,
    RoutingConfig,
    UpstreamConfig,
)

ENV_PREFIX = "LLM_GATEWAY__"
CONFIG_PATH_VAR = "LLM_GATEWAY_CONFIG"

Problems = list[tuple[str, str]]


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Load ``path`` (else $LLM_GATEWAY_CONFIG, else the built-in default) with env overrides."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get(CONFIG_PATH_VAR) or None
    if path is None:
        return default_config(env)
    data, problems = _read_yaml(Path(path))
    return _parse(data, env, str(path), problems)


def parse_config(
    data: Mapping[str, Any] | None,
    env: Mapping[str, str] | None = None,
    *,
    source: str = "<config>",
) -> Config:
    """Build a Config from already-parsed YAML data (``None`` = an empty file: all defaults)."""
    return _parse(data, os.environ if env is None else env, source, [])


def default_config(env: Mapping[str, str] | None = None) -> Config:
    """The built-in configuration, with environment overrides applied."""
    env = os.environ if env is None else env
    return _parse(default_data(env), env, DEFAULT_SOURCE, [])


def check_file(
    path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None
) -> tuple[bool, str]:
    """Validate a file for humans: ``(True, "ok: ...")`` or ``(False, <every problem>)``."""
    try:
        config = load_config(path, env)
    except ConfigError as exc:
        n = len(exc.problems)
        head = f"{exc.source or path}: {n} problem{'s' if n != 1 else ''}"
        return False, "\n".join([head, *(f"  {p}" for p in exc.problems)])
    ups, local, routes = len(config.upstreams), len(config.local), len(config.models)
    parts = [f"{ups} upstream{'s' if ups != 1 else ''}"]
    if local:
        parts.append(f"{local} local backend{'s' if local != 1 else ''}")
    parts.append(f"{routes} model route{'s' if routes != 1 else ''}")
    return True, "ok: " + ", ".join(parts)


# --- reading -------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that records duplicate mapping keys, which PyYAML silently overwrites."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, Any]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            # Merge keys ("<<") may legitimately repeat and are resolved by the base class.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                if key in seen:
                    self.duplicates.append((key_node.start_mark.line + 1, key))
                seen.add(key)
        return super().construct_mapping(node, deep)


def _read_yaml(path: Path) -> tuple[Any, Problems]:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{where}: no such file"], where) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{where}: not valid UTF-8 text"], where) from None
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read ({exc.strerror or exc})"], where) from None
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        msg = exc.problem or exc.context or "syntax error"
        raise ConfigError([f"{where}: invalid YAML{at}: {msg}"], where) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{where}: invalid YAML: {exc}"], where) from None
    finally:
        loader.dispose()
    dups = sorted(loader.duplicates, key=lambda d: d[0])  # nested maps are built after outer ones
    return data, [(f"{where}:{line}", f"duplicate key {key!r}") for line, key in dups]


# --- environment overrides -----------------------------------------------------------------


@dataclasses.dataclass
class _Applied:
    """What the overrides did, for messages and for string fields."""

    owners: dict[str, str] = dataclasses.field(default_factory=dict)  # path -> env var name
    raws: dict[str, str] = dataclasses.field(default_factory=dict)  # path -> text as written


def _apply_env(data: dict[str, Any], env: Mapping[str, str], problems: Problems) -> _Applied:
    """Apply the LLM_GATEWAY__* overrides to ``data`` in place."""
    overrides = [
        (name, name[len(ENV_PREFIX) :].lower().split("__"), raw)
        for name, raw in env.items()
        if name.startswith(ENV_PREFIX)
    ]
    # Parents first, so LLM_GATEWAY__MODELS replaces the list before __MODELS__0__X edits it.
    overrides.sort(key=lambda o: (len(o[1]), o[0]))
    applied = _Applied()
    for name, segments, raw in overrides:
        if not all(segments):
            problems.append((name, "malformed override name (empty path segment)"))
            continue
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw  # not YAML: take it as the plain string it most likely is
        created: list[str] = []
        path, error = _set_path(data, segments, value, created)
        # Mappings this variable created are its doing too ("upstreams.new.base_url: required").
        for p in created:
            applied.owners.setdefault(p, name)
        applied.owners[path] = name  # also on error, so the message names the variable
        applied.raws[path] = raw
        if error:
            problems.append((path, error))
    return applied


def _set_path(
    data: dict[str, Any], segments: list[str], value: Any, created: list[str]
) -> tuple[str, str | None]:
    """Set ``value`` at ``segments``, creating mappings on the way; return (path, error)."""
    node: Any = data
    path = ""
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if isinstance(node, dict):
            # Env names are upper-case; reuse an existing key that differs only in case.
            key = next((k for k in node if isinstance(k, str) and k.lower() == seg), seg)
            path = join(path, key)
            if last:
                node[key] = value
            elif node.get(key) is None:
                node[key] = {}
                created.append(path)
            node = node[key]
        elif isinstance(node, list):
            if not seg.isdigit():
                return join(path, seg), f"{path} is a list; use a numeric index"
            index, parent = int(seg), path
            path = f"{path}[{index}]"
            if index >= len(node):
                return path, f"index out of range ({parent} has {len(node)} items)"
            if last:
                node[index] = value
            elif node[index] is None:
                node[index] = {}
                created.append(path)
            node = node[index]
        else:
            rest = ".".join(segments[i:])
            return join(path, rest), f"{path} is {describe(node)}, not a mapping"
    return path, None


def _blame(problems: Problems, env_paths: Mapping[str, str]) -> list[str]:
    """Render problems; those under an env override name the env var, e.g. ``VAR (a.b): msg``."""
    out = []
    for path, msg in problems:
        owner = max(
            (p for p in env_paths if path == p or path.startswith((p + ".", p + "["))),
            key=len,
            default=None,
        )
        out.append(f"{env_paths[owner]} ({path}): {msg}" if owner else f"{path}: {msg}")
    return out


# --- building ------------------------------------------------------------------------------


def _parse(data: Any, env: Mapping[str, str], source: str, problems: Problems) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append((source, f"top level must be a mapping, got {describe(data)}"))
        raise ConfigError(_blame(problems, {}), source)
    data = copy.deepcopy(dict(data))  # overrides edit it in place; the caller's stays intact
    applied = _apply_env(data, env, problems)
    _passthrough_off(data)
    builder = Builder(raw_strings=applied.raws)
    parts = builder.fields(Config, data, "")
    _cross_check(parts, env, builder)
    problems.extend(builder.problems)
    # An open gateway, limits counted per process: about several keys at once, so no one
    # env override is to blame (their messages name the values).
    unsafe = [f"{path}: {msg}" for path, msg in safety.problems(parts, data)]
    if problems or unsafe:
        raise ConfigError(_blame(problems, applied.owners) + unsafe, source)
    # A backend's name is its key under `upstreams` or `local`; the builder cannot see keys.
    named = {
        section: {key: dataclasses.replace(item, name=key) for key, item in built.items()}
        for section in ("upstreams", "local", "teams")
        if (built := parts.get(section)) is not None
    }
    return Config(**{**parts, **named}, source=source)


def _passthrough_off(data: dict[str, Any]) -> None:
    """YAML reads an unquoted `passthrough_backend: off` as false: it means "off"."""
    routing = data.get("routing")
    if isinstance(routing, dict) and routing.get("passthrough_backend") is False:
        routing["passthrough_backend"] = PASSTHROUGH_OFF


def _cross_check(parts: dict[str, Any], env: Mapping[str, str], b: Builder) -> None:
    """Rules spanning fields; run on whatever built, so they report alongside type errors."""
    ups = parts.get("upstreams", {})
    local = parts.get("local", {})
    known: list[str] | None = None  # None: a section is broken, so names cannot be checked
    if isinstance(ups, dict) and isinstance(local, dict):
        known = list(ups) + [n for n in local if n not in ups]
        for name in local:
            if name in ups:
                b.fail(join("local", name), f"name {name!r} is already an upstream "
                       f"(upstreams.{name}); backend names must be unique")

    def backend(path: str, name: str | None) -> None:
        if known is not None and name is not None and name not in known:
            b.fail(path, f"unknown backend {name!r} (known: {', '.join(known) or 'none'})")

    models = parts.get("models")

    def routes_to(model: str) -> str | None:
        return _route_backend(parts, model)

    check_routes(models, known, routes_to, b.fail)
    check_names(models, b.fail)
    if isinstance(ups, dict):
        for name, cfg in ups.items():
            if isinstance(cfg, UpstreamConfig):
                check_kind(join("upstreams", name), cfg, b)
                check_egress(join("upstreams", name), cfg, env, b)

    routing = parts.get("routing")
    if isinstance(routing, RoutingConfig):
        backend("routing.default_backend", routing.default_backend)
        through = routing.passthrough_backend
        if through == PASSTHROUGH_OFF:
            pass  # turned off: no backend to name
        elif isinstance(local, dict) and through in local and through not in ups:
            b.fail("routing.passthrough_backend",
                   f"{through!r} is a local backend; passthrough goes to upstreams only")
        elif (isinstance(ups, dict) and isinstance(up := ups.get(through), UpstreamConfig)
              and up.kind != "openai"):
            b.fail("routing.passthrough_backend", f"{through!r} is a {up.kind} upstream; "
                   "passthrough goes to OpenAI-shaped (kind: openai) upstreams only")
        else:
            backend("routing.passthrough_backend", through)

    if isinstance(local, dict):
        for name, cfg in local.items():
            if isinstance(cfg, LocalConfig):
                check_local(join("local", name), name, cfg, routes_to, b)
    check_placement(parts, b)

    storage = parts.get("storage", StorageConfig())
    grouping = parts.get("grouping", GroupingConfig())
    if (isinstance(storage, StorageConfig) and isinstance(grouping, GroupingConfig)
            and grouping.cache.backend == "redis" and storage.redis_url is None):
        b.fail("grouping.cache.backend", "redis needs storage.redis_url")
    teams = parts.get("teams")
    for name in teams if isinstance(teams, dict) else ():
        if (problem := team_name(name)) is not None:  # the admin API's rule too
            b.fail(join("teams", name), f"team name {problem}")
    if isinstance(teams, dict) and isinstance(ups, dict):
        for name, team in teams.items():
            if not isinstance(team, TeamConfig):
                continue
            for upstream in team.upstreams:
                if upstream not in ups:
                    b.fail(join(join(join("teams", name), "upstreams"), upstream),
                           f"unknown upstream {upstream!r} "
                           f"(known: {', '.join(ups) or 'none'})")


def _route_backend(parts: dict[str, Any], model: str) -> str | None:
    """The backend name `model` routes to, as the router would decide; None when it 404s."""
    models = parts.get("models")
    rules = [r for r in models if isinstance(r, ModelRoute)] if isinstance(models, list) else []
    for rule in rules:
        if not rule.is_pattern and rule.matches(model):
            return rule.backend or _first_backend(rule)
    for rule in rules:
        if rule.is_pattern and rule.matches(model):
            return rule.backend or _first_backend(rule)
    routing = parts.get("routing")
    return routing.default_backend if isinstance(routing, RoutingConfig) else None


def _first_backend(rule: ModelRoute) -> str | None:
    return rule.deployments[0].backend if rule.deployments else None
