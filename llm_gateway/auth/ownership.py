"""Which team owns which upstream object, so that another team's objects do not exist for it.

The gateway usually reaches each upstream with one key of its own, so every team's stored
responses, files, batches, vector stores... sit in the same upstream account, where any id
is readable by whoever presents it. `claim` remembers the owner of each object created
through the gateway (in the database: `auth/objectstore.py`); `check` answers 404, exactly as
for an id nobody created, when the object belongs to someone else.

The owner is the caller's team, or its key for a key without a team (`owner_of`).

- auth.mode none: everyone is the same anonymous caller; nothing is refused or stored, but
  claims are still cached in this process (where a stored response was made).
- auth.mode keys: an id the gateway never saw created (made before the gateway tracked
  owners, or directly at the provider with the shared key) is refused like another team's,
  unless `auth.unknown_objects: forward`.
- auth.mode passthrough: each client's own upstream key decides what it may reach, so an
  unknown id is forwarded; an object created through the gateway is still its creator's
  (owner: the client's hashed key id).

Owners never change, so known owners are cached (bounded); unknown ids are always asked
again (another replica may have just created one). When the database cannot answer, the check
fails closed: 503. A claim that cannot be written is kept in this process's cache (the
creator can go on using the object here) and logged: the object stays unknown elsewhere, so
it is refused there, never opened to others.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from llm_gateway.auth.objectstore import MAX_ID, OBJECT_STEPS, ObjectStore, Owned
from llm_gateway.config import Config
from llm_gateway.echo import clip
from llm_gateway.errors import GatewayError, NotFound, ServiceUnavailable
from llm_gateway.principal import Principal

log = logging.getLogger(__name__)

CACHE_LIMIT = 100_000  # known owners remembered per process


def owner_of(principal: Principal) -> str:
    return f"team:{principal.team}" if principal.team else f"key:{principal.key_id}"


def not_found(kind: str, object_id: str) -> NotFound:
    """The 404 of an id that is not the caller's: the same for another team's and for none."""
    return NotFound(f"No {kind.replace('_', ' ')} found with id '{clip(object_id)}'.",
                    param=f"{kind}_id")


class Owners:
    def __init__(self, config: Config, cache_limit: int = CACHE_LIMIT) -> None:
        mode = config.auth.mode
        self.enabled = mode != "none"
        # Whether an id nobody claimed is refused (404) rather than forwarded.
        self.refuse_unknown = mode == "keys" and config.auth.unknown_objects == "refuse"
        self.store: ObjectStore | None = None
        self._cache: OrderedDict[tuple[str, str], Owned] = OrderedDict()
        self._cache_limit = cache_limit

    async def start(self, db: Any) -> None:
        """`db`: the opened storage.Database (None only where nothing is tracked)."""
        if not self.enabled:
            return
        if db is None:
            raise RuntimeError("object ownership needs a database (storage.url)")
        await db.migrate("objects", OBJECT_STEPS)
        self.store = ObjectStore(db)

    async def claim(self, kind: str, object_id: str, principal: Principal,
                    backend: str | None = None) -> None:
        """`principal` just created the object `object_id` (on `backend`)."""
        if not object_id or len(object_id) > MAX_ID or (kind, object_id) in self._cache:
            return  # known already (a batch polled again names the same files): first wins
        owned = Owned(owner_of(principal), backend)
        self._remember((kind, object_id), owned)
        if not self.enabled or self.store is None:
            return
        try:
            await self.store.add(kind, object_id, owned)
        except Exception as exc:  # kept here; refused wherever it is unknown (see above)
            log.error("cannot record the owner of %s %s: %r", kind, clip(object_id), exc)

    async def check(self, kind: str, object_id: str, principal: Principal) -> Owned | None:
        """The object's record when `principal` owns it; None for an unknown id that may be
        forwarded. Raises NotFound (404) for someone else's object or a refused unknown id,
        ServiceUnavailable (503) when it cannot be known. auth.mode none: what this process
        remembers of it, never a refusal."""
        if not self.enabled:
            return self._cache.get((kind, object_id))
        if len(object_id) > MAX_ID:
            raise not_found(kind, object_id)
        owned = await self._find(kind, object_id)
        if owned is None:
            if self.refuse_unknown:
                raise not_found(kind, object_id)
            return None
        if owned.owner != owner_of(principal):
            raise not_found(kind, object_id)
        return owned

    async def visible(self, kind: str, ids: Iterable[str], principal: Principal) -> set[str]:
        """Those of `ids` that `principal` may see: its own, and unknown ones when those are
        forwarded. Raises ServiceUnavailable (503) when it cannot be known."""
        ids = set(ids)
        if not self.enabled:
            return ids
        me = owner_of(principal)
        known: dict[str, Owned] = {}
        missing: list[str] = []
        for object_id in ids:
            cached = self._cache.get((kind, object_id))
            if cached is not None:
                known[object_id] = cached
            else:
                missing.append(object_id)
        if missing:
            found = await self._ask(lambda store: store.find_many(kind, missing))
            for object_id, owned in found.items():
                self._remember((kind, object_id), owned)
            known.update(found)
        return {i for i in ids if (i in known and known[i].owner == me)
                or (i not in known and not self.refuse_unknown and len(i) <= MAX_ID)}

    async def _find(self, kind: str, object_id: str) -> Owned | None:
        cached = self._cache.get((kind, object_id))
        if cached is not None:
            self._cache.move_to_end((kind, object_id))
            return cached
        owned = await self._ask(lambda store: store.find(kind, object_id))
        if owned is not None:
            self._remember((kind, object_id), owned)
        return owned

    async def _ask(self, query: Any) -> Any:
        if self.store is None:  # enabled without a database: nobody's objects can be told
            raise ServiceUnavailable("Object owners cannot be checked: no database is open.")
        try:
            return await query(self.store)
        except GatewayError:
            raise  # DatabaseUnavailable is already a 503
        except Exception as exc:
            log.error("cannot look up an object's owner: %r", exc)
            raise ServiceUnavailable("The gateway cannot check who owns this object right "
                                     "now; please retry.", code="database_unavailable"
                                     ) from None

    def _remember(self, key: tuple[str, str], owned: Owned) -> None:
        self._cache[key] = owned
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_limit:
            self._cache.popitem(last=False)
