"""Turns a request's credentials into a Principal (auth.mode: none | keys | passthrough).

- none: everyone is ANONYMOUS.
- keys: `Authorization: Bearer sk-lgw-...` (or Azure-style `api-key: sk-lgw-...`) is required.
  The key's keyed hash is looked up in memory first: a known key costs one HMAC and a dict
  lookup, no query. Misses are remembered too, so a client retrying a wrong key does not
  reach the database each time. Entries are trusted for auth.cache_seconds: that is how long
  a revocation made elsewhere (another replica, the CLI) takes to reach this replica; changes
  made through this replica's admin API apply at once.
  While the database fails, the last successful lookup of a key decides: a refusal stays a
  refusal, and a key that was active then (and not changed here since) keeps working for up
  to auth.stale_seconds after that lookup; any other key gets a 503.
- passthrough: the client's own bearer key goes upstream; usage is attributed to
  "pt_" + a keyed hash of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import Scope

from llm_gateway.auth.cache import TtlCache
from llm_gateway.auth.keystore import KeyStore
from llm_gateway.auth.principals import allows, principal_for
from llm_gateway.auth.records import KeyRecord
from llm_gateway.auth.schema import AUTH_STEPS
from llm_gateway.auth.secret import LazyHasher, looks_like_key
from llm_gateway.auth.teamstore import TeamStore
from llm_gateway.auth.times import iso
from llm_gateway.config import Config
from llm_gateway.errors import AuthenticationFailed, PermissionDenied, ServiceUnavailable
from llm_gateway.principal import ANONYMOUS, Credentials, Principal

log = logging.getLogger(__name__)

MISSING = ("You didn't provide an API key. You need to provide your API key in an "
           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
INCORRECT = "Incorrect API key provided."  # never echoes the key, not even in part
DISABLED = "This API key has been disabled."
REVOKED = "This API key has been revoked."
CACHE_LIMIT = 100_000  # known keys remembered per replica
MISS_LIMIT = 10_000  # unknown hashes remembered per replica

# What a lookup learned: the principal and the key's expiry, or why the key is refused.
_Entry = tuple[Principal, float | None]
_Refusal = tuple[str | None, str]  # (the key's id when it has one, the 401's message)


class Authenticator:
    def __init__(
        self,
        config: Config,
        env: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.env = env
        self.mode = config.auth.mode
        self.clock = clock
        self.hasher = LazyHasher(config, env)
        self.admin_key: str | None = env.get(config.auth.admin_key_env) or None
        self.teams = TeamStore(None, config.teams, clock)
        self.keys: KeyStore | None = None  # once a database is there
        ttl = config.auth.cache_seconds
        self.stale_seconds = config.auth.stale_seconds
        self._known: TtlCache[_Entry] = TtlCache(ttl, CACHE_LIMIT, monotonic)
        self._refused: TtlCache[_Refusal] = TtlCache(ttl, MISS_LIMIT, monotonic)
        self._lookups: dict[str, asyncio.Future[_Entry | str]] = {}
        # Bumped by every change made through this replica: a lookup that was in flight
        # meanwhile may have read the row from before it, so its answer is not remembered.
        self._generation = 0
        # Aliases of exact routes, so a team allowed "gpt-4o-mini" may ask for its alias.
        self._canonical = {alias: rule.name for rule in config.models if not rule.is_pattern
                           for alias in rule.aliases}

    async def start(self, db: Any) -> None:
        """`db`: the opened storage.Database, or None when nothing is stored."""
        if self.mode != "none":
            self.hasher.load()  # a missing or unreadable secret fails the start, not a request
        if db is None:
            if self.mode == "keys":
                raise RuntimeError("auth.mode keys needs a database for its keys (storage.url)")
            return
        await db.migrate("auth", AUTH_STEPS)
        self.teams = TeamStore(db, self.config.teams, self.clock)
        self.keys = KeyStore(db, self.hasher, self.teams, self.clock)

    async def authenticate(self, scope: Scope) -> Principal:
        """The caller of this ASGI request; raises AuthenticationFailed (401)."""
        if self.mode == "none":
            return ANONYMOUS
        key = presented_key(scope["headers"])
        if key is None:
            raise AuthenticationFailed(MISSING)
        if self.mode == "passthrough":
            return Principal(key_id=self.hasher.passthrough_id(key),
                             credentials={"*": Credentials(api_key=key)})
        if not looks_like_key(key):
            raise AuthenticationFailed(INCORRECT)
        key_hash = self.hasher.hash(key)
        entry = self._known.get(key_hash)
        if entry is None:
            refused = self._refused.get(key_hash)
            if refused is not None:
                raise AuthenticationFailed(refused[1])
            found = await self._lookup(key_hash)
            if isinstance(found, str):
                raise AuthenticationFailed(found)
            entry = found
        principal, expires_at = entry
        if expires_at is not None and self.clock() >= expires_at:
            raise AuthenticationFailed(_expired(expires_at))
        return principal

    def allowed(self, principal: Principal, model: str) -> bool:
        if not principal.models and not principal.team_models:
            return True
        if allows(principal, model):
            return True
        canonical = self._canonical.get(model)
        return canonical is not None and allows(principal, canonical)

    def check_model(self, principal: Principal, model: str) -> None:
        """Raises PermissionDenied (403) when the principal may not use `model`."""
        if not self.allowed(principal, model):
            raise PermissionDenied(f"This key is not allowed to use the model '{model}'.",
                                   param="model", code="model_not_allowed")

    def forget(self) -> None:
        """Drop what the caches know (a change whose reach is not known precisely)."""
        self._generation += 1
        self._known.clear()
        self._refused.clear()

    def key_changed(self, record: KeyRecord, *, rotated: bool = False) -> None:
        """`record` was just changed through this replica: what was known of it goes, and a
        key that no longer works is remembered as refused, so that a database failure from
        now on cannot bring back its old, active entry. `rotated`: its old secret is dead."""
        self._generation += 1
        status = record.status(self.clock())
        refusal = INCORRECT if rotated else _REFUSALS.get(status)
        if refusal is None and status != "active":
            refusal = _expired(record.expires_at or 0.0)
        hashes = {h for h, (p, _) in self._known.items() if p.key_id == record.id}
        hashes.update(h for h, (key_id, _) in self._refused.items() if key_id == record.id)
        for key_hash in hashes:
            self._known.discard(key_hash)
            self._refused.discard(key_hash)
            if refusal is not None:
                self._refused.put(key_hash, (record.id, refusal))

    def team_changed(self, team: str) -> None:
        """Keys of `team` carry its old settings in their cached principals: drop them."""
        self._generation += 1
        for key_hash, (principal, _) in self._known.items():
            if principal.team == team:
                self._known.discard(key_hash)

    async def aclose(self) -> None:
        for lookup in list(self._lookups.values()):
            lookup.cancel()

    # --- cache misses ---------------------------------------------------------------------

    def _lookup(self, key_hash: str) -> asyncio.Future[_Entry | str]:
        # One query per hash however many requests present it at once; shielded, so a client
        # that goes away does not cancel the lookup the others wait for.
        lookup = self._lookups.get(key_hash)
        if lookup is None:
            lookup = asyncio.ensure_future(self._load(key_hash))
            self._lookups[key_hash] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(key_hash, None))
        return asyncio.shield(lookup)

    async def _load(self, key_hash: str) -> _Entry | str:
        if self.keys is None:
            raise ServiceUnavailable("Keys cannot be checked: no database is configured.")
        for attempt in range(3):
            generation = self._generation
            try:
                record = await self.keys.find_hash(key_hash)
                team = await self.teams.find(record.team) if record and record.team else None
            except Exception as exc:
                return self._unchecked(key_hash, exc)
            # Changed here while the query ran: read again, since the row may predate it.
            if generation == self._generation or attempt == 2:
                break
        return self._learn(key_hash, record, team, remember=generation == self._generation)

    def _learn(self, key_hash: str, record: KeyRecord | None, team: Any, *,
               remember: bool) -> _Entry | str:
        """What the database said of a key, remembered (only this, the latest answer)."""
        if record is None:
            message: str | None = INCORRECT
        else:
            status = record.status(self.clock())
            message = None if status == "active" else (
                _REFUSALS.get(status) or _expired(record.expires_at or 0.0))
        if remember:
            self._known.discard(key_hash)
            self._refused.discard(key_hash)
        if message is not None:
            if remember:
                self._refused.put(key_hash, (record.id if record else None, message))
            return message
        assert record is not None
        entry = (principal_for(record, team, self.env), record.expires_at)
        if remember:
            self._known.put(key_hash, entry)
        return entry

    def _unchecked(self, key_hash: str, exc: Exception) -> _Entry | str:
        """The database failed: answer from the last successful lookup, if recent enough."""
        refused = self._refused.stale(key_hash)
        if refused is not None:
            return refused[1]  # revoked, disabled or unknown then: no database says otherwise
        stale = self._known.stale(key_hash, self.stale_seconds)
        if stale is None:
            log.error("cannot look up a key: %r", exc)
            raise ServiceUnavailable("The gateway cannot check API keys right now; "
                                     "please retry.") from None
        # A key active at its last lookup, not changed here since (changes drop the entry):
        # it keeps working, asked again after cache_seconds.
        log.warning("cannot look up a key (%r); trusting its last lookup", exc)
        self._known.extend(key_hash, self.stale_seconds)
        return stale


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer token, else an `api-key` header's value (what Azure OpenAI clients send)."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            token = token.strip()
            if scheme.lower() == b"bearer" and token:
                return token.decode("latin-1")
        elif name == b"api-key" and value.strip():
            api_key = value.strip().decode("latin-1")
    return api_key


_REFUSALS = {"revoked": REVOKED, "disabled": DISABLED}


def _expired(expires_at: float) -> str:
    return f"This API key expired at {iso(expires_at)}."
