"""The Authenticator over a real database, with clocks the test moves (no sleeping)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from llm_gateway.auth.authenticate import Authenticator, presented_key
from llm_gateway.auth.cache import TtlCache
from llm_gateway.auth.secret import SECRET_FILE, load_hasher
from llm_gateway.config import parse_config
from llm_gateway.errors import AuthenticationFailed, PermissionDenied, ServiceUnavailable
from llm_gateway.principal import ANONYMOUS

from auth_support import SECRET, Clock

CONFIG = {
    "auth": {"mode": "keys", "cache_seconds": 10},
    "teams": {"research": {
        "models": ["gpt-4o-mini", "text-embedding-*"],
        "limits": {"rpm": 100},
        "budget": {"cost": 50, "period": "month"},
        "upstreams": {"openai": {"api_key_env": "RESEARCH_KEY", "project": "proj_r"}},
        "grouping": {"coalesce": "off", "shared_cache": True},
    }},
    "upstreams": {"openai": {"base_url": "http://127.0.0.1:9/v1"}},
    "models": [{"name": "gpt-4o-mini", "backend": "openai", "aliases": ["gpt-3.5-turbo"]},
               {"name": "gpt-*", "backend": "openai"}],
}
ENV = {"LLM_GATEWAY_KEY_SECRET": SECRET, "RESEARCH_KEY": "sk-research-own"}


class CountingDb:
    """The real database, counting the queries the authenticator makes."""

    def __init__(self, db) -> None:
        self.db = db
        self.queries = 0
        self.down = False

    def __getattr__(self, name):
        return getattr(self.db, name)

    async def fetchone(self, sql, *args):
        self.queries += 1
        if self.down:
            raise ConnectionError("database is down")
        return await self.db.fetchone(sql, *args)


def scope(key: str | None, header: bytes = b"authorization") -> dict:
    if key is None:
        return {"headers": []}
    value = f"Bearer {key}".encode() if header == b"authorization" else key.encode()
    return {"headers": [(b"host", b"x"), (header, value)]}


@pytest.fixture
async def auth(db, clock):
    ticks = Clock(0.0)
    counting = CountingDb(db)
    authenticator = Authenticator(parse_config(CONFIG, env={}), ENV, clock=clock,
                                  monotonic=ticks)
    await authenticator.start(counting)
    authenticator.ticks = ticks  # type: ignore[attr-defined]
    authenticator.counting = counting  # type: ignore[attr-defined]
    yield authenticator
    await authenticator.aclose()


async def test_principal_combines_key_and_team(auth):
    record, key = await auth.keys.create({"name": "a", "team": "research",
                                          "models": ["gpt-*"], "limits": {"tpm": 7}})
    p = await auth.authenticate(scope(key))
    assert p.key_id == record.id and p.team == "research"
    assert p.models == ("gpt-*",) and p.team_models == ("gpt-4o-mini", "text-embedding-*")
    assert p.key_limits.tpm == 7 and p.team_limits.rpm == 100 and p.team_budget.cost == 50
    creds = p.credentials_for("openai")
    assert creds.api_key == "sk-research-own" and creds.project == "proj_r"
    assert p.coalesce == "off" and p.shared_cache is True
    # Allowed: in both lists (an alias counts as its model); else 403 model_not_allowed.
    auth.check_model(p, "gpt-4o-mini")
    auth.check_model(p, "gpt-3.5-turbo")
    for model in ("gpt-4o", "text-embedding-3-small"):
        with pytest.raises(PermissionDenied) as err:
            auth.check_model(p, model)
        assert err.value.code == "model_not_allowed" and err.value.param == "model"


async def test_known_key_costs_no_query_and_revocation_waits_for_the_cache(auth, clock):
    record, key = await auth.keys.create({"name": "a"})
    await auth.authenticate(scope(key))
    before = auth.counting.queries
    for _ in range(5):
        await auth.authenticate(scope(key))
    assert auth.counting.queries == before
    await auth.keys.revoke(record.id)  # as another replica or the CLI would: no forget()
    auth.ticks.now += 9.9
    assert (await auth.authenticate(scope(key))).key_id == record.id
    auth.ticks.now += 0.2
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await auth.authenticate(scope(key))


async def test_unknown_keys_are_remembered_briefly(auth):
    wrong = "sk-lgw-" + "x" * 43
    for _ in range(3):
        with pytest.raises(AuthenticationFailed) as err:
            await auth.authenticate(scope(wrong))
        assert wrong not in err.value.message and "xxxx" not in err.value.message
    assert auth.counting.queries == 1
    auth.ticks.now += 11
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(scope(wrong))
    assert auth.counting.queries == 2


async def test_refusals_say_why(auth, clock):
    with pytest.raises(AuthenticationFailed, match="didn't provide an API key"):
        await auth.authenticate(scope(None))
    with pytest.raises(AuthenticationFailed, match="Incorrect API key"):
        await auth.authenticate(scope("sk-openai-not-ours"))
    disabled, key1 = await auth.keys.create({"name": "d"})
    await auth.keys.update(disabled.id, {"disabled": True})
    with pytest.raises(AuthenticationFailed, match="disabled"):
        await auth.authenticate(scope(key1))
    _, key2 = await auth.keys.create({"name": "e", "expires_at": clock.now + 60})
    assert await auth.authenticate(scope(key2))
    clock.now += 61  # a cached key still expires on time
    with pytest.raises(AuthenticationFailed, match="expired"):
        await auth.authenticate(scope(key2))


async def test_azure_api_key_header_and_bearer_parsing(auth):
    record, key = await auth.keys.create({"name": "a"})
    assert (await auth.authenticate(scope(key, b"api-key"))).key_id == record.id
    assert presented_key([(b"authorization", b"bearer  tok ")]) == "tok"
    assert presented_key([(b"authorization", b"Basic abc")]) is None
    assert presented_key([(b"authorization", b"Basic abc"), (b"api-key", b"k")]) == "k"


async def test_database_down_keeps_known_keys_working(auth):
    record, key = await auth.keys.create({"name": "a"})
    await auth.authenticate(scope(key))
    auth.counting.down = True
    auth.ticks.now += 60
    assert (await auth.authenticate(scope(key))).key_id == record.id
    with pytest.raises(ServiceUnavailable):
        await auth.authenticate(scope("sk-lgw-" + "n" * 43))


async def test_passthrough_and_none_modes(tmp_path):
    config = parse_config({"auth": {"mode": "passthrough"},
                           "storage": {"data_dir": str(tmp_path)}}, env={})
    auth = Authenticator(config, {})
    await auth.start(None)
    a = await auth.authenticate(scope("sk-client-one"))
    b = await auth.authenticate(scope("sk-client-two"))
    assert a.key_id.startswith("pt_") and len(a.key_id) == 3 + 16
    assert a.key_id != b.key_id and a == await auth.authenticate(scope("sk-client-one"))
    assert a.credentials_for("anything").api_key == "sk-client-one"
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(scope(None))
    none = Authenticator(parse_config({}, env={}), {})
    assert await none.authenticate(scope(None)) is ANONYMOUS


def test_generated_secret_is_private_and_stable(tmp_path: Path):
    config = parse_config({"storage": {"data_dir": str(tmp_path / "state")}}, env={})
    first = load_hasher(config, {})
    path = tmp_path / "state" / SECRET_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_hasher(config, {}).hash("k") == first.hash("k")
    assert load_hasher(config, {"LLM_GATEWAY_KEY_SECRET": SECRET}).hash("k") != first.hash("k")


def test_cache_bounds_and_expiry():
    ticks = Clock(0.0)
    cache: TtlCache[int] = TtlCache(5, 2, ticks)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # "b" was used least recently
    assert cache.get("b") is None and len(cache) == 2
    ticks.now = 5
    assert cache.get("a") is None and cache.stale("a") == 1
