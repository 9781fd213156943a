"""Which requests grouping touches, and how: coalescing, cache read, cache write.

Eligible operations are chat completions, completions and embeddings. The Responses API is
left alone: its answers are stored objects with ids of their own (``store``,
``previous_response_id``, background runs), which two clients must not share.

A request is *deterministic* when it asks for the same answer every time: ``temperature`` 0 or
a ``seed`` given (chat and completions), or any embeddings request (an embedding has no
sampling). Coalescing applies per the first setting found of: the team's
(``Principal.coalesce``), the model's (``grouping.models``, exact name before globs, globs in
file order), the gateway's (``grouping.coalesce``): ``deterministic`` (the default), ``all`` or
``off``. The cache only ever holds deterministic answers (``cache.enabled``, or the model's
``cache`` override).

Per request, headers say what the client wants:

* ``x-lgw-group: off``: no grouping at all (straight to the backend, no cache either);
* ``Cache-Control: no-cache`` or ``x-lgw-cache: bypass``: do not answer from the cache (a
  fresh answer still replaces the cached one; joining an identical request in flight is still
  fine: that answer is being made now);
* ``Cache-Control: no-store``: neither read nor write the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_gateway.call import Call
from llm_gateway.config.grouping import GroupingConfig, ModelGroupingConfig
from llm_gateway.config.routes import glob_regex, is_pattern
from llm_gateway.principal import Principal

GROUPABLE = frozenset({"createChatCompletion", "createCompletion", "createEmbedding"})
EMBEDDINGS = "createEmbedding"
_NO_OVERRIDE = ModelGroupingConfig()
_MEMO_LIMIT = 4096  # model names are client input: the per-name memo must stay bounded


@dataclass(frozen=True, slots=True)
class Plan:
    coalesce: bool  # share an identical call in flight
    cache_read: bool  # answer from the cache when it holds the answer
    cache_write: bool  # keep a complete answer in the cache


# Every plan there can be, made once (a frozen dataclass is slow to build, per request).
_PLANS = {(c, r, w): Plan(c, r, w) for c in (False, True) for r in (False, True)
          for w in (False, True)}


def is_deterministic(call: Call) -> bool:
    if call.operation == EMBEDDINGS:
        return True
    body = call.body
    temperature = body.get("temperature")
    # `type(...) in`: a bool is not a temperature, and `False == 0` would otherwise match.
    if type(temperature) in (int, float) and temperature == 0:
        return True
    seed = body.get("seed")
    return type(seed) is int


def _cache_directives(call: Call) -> tuple[bool, bool]:
    """(may read, may write) the cache, as the request's headers say."""
    read = write = True
    control = call.headers.get("cache-control")
    if control:
        words = {part.strip().lower() for part in control.split(",")}
        if "no-store" in words:
            return False, False
        if "no-cache" in words:
            read = False
    if call.hints.get("x-lgw-cache") == "bypass":
        read = False
    return read, write


def wants_cache(config: GroupingConfig) -> bool:
    """Whether any request could use the cache (the gateway's setting or a model's)."""
    return config.cache.enabled or any(m.cache for m in config.models.values())


class Policy:
    def __init__(self, config: GroupingConfig) -> None:
        self.config = config
        models = config.models
        self._exact = {name: cfg for name, cfg in models.items() if not is_pattern(name)}
        self._globs = [(glob_regex(name), cfg) for name, cfg in models.items()
                       if is_pattern(name)]
        self._memo: dict[str, ModelGroupingConfig] = {}
        # Nothing configured turns grouping on (a team may still): skip the per-request work.
        self.inert = config.coalesce == "off" and not wants_cache(config) and all(
            m.coalesce in (None, "off") for m in models.values())

    def model_settings(self, model: str) -> ModelGroupingConfig:
        found = self._memo.get(model)
        if found is None:
            found = self._exact.get(model)
            if found is None:
                found = next((cfg for rx, cfg in self._globs if rx.fullmatch(model)),
                             _NO_OVERRIDE)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[model] = found
        return found

    def plan(self, call: Call, principal: Principal | None) -> Plan | None:
        """How to group this call; None when it goes straight to the backend."""
        if call.operation not in GROUPABLE:
            return None
        if call.hints and call.hints.get("x-lgw-group") == "off":
            return None
        team_mode = principal.coalesce if principal is not None else None
        if self.inert and team_mode in (None, "off"):
            return None
        model = self.model_settings(call.model)
        mode = team_mode or model.coalesce or self.config.coalesce
        deterministic = is_deterministic(call)
        coalesce = mode == "all" or (mode == "deterministic" and deterministic)
        read = write = False
        if deterministic and (self.config.cache.enabled if model.cache is None else model.cache):
            read, write = _cache_directives(call)
        if not (coalesce or read or write):
            return None
        return _PLANS[coalesce, read, write]
