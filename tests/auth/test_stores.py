"""KeyStore and TeamStore against real databases (SQLite file; PostgreSQL when available)."""

from __future__ import annotations

import pytest

from llm_gateway.auth.records import Conflict
from llm_gateway.auth.secret import KEY_PREFIX, KeyHasher
from llm_gateway.errors import InvalidRequest, NotFound

from auth_support import SECRET


async def test_create_returns_the_key_once_and_stores_only_its_hash(keys, db):
    record, key = await keys.create({"name": "alice", "team": "research"})
    assert key.startswith(KEY_PREFIX) and len(key) >= len(KEY_PREFIX) + 32
    assert record.id.startswith("key_") and len(record.id) == 4 + 12
    assert record.last4 == key[-4:]
    rows = await db.fetch("SELECT * FROM auth_keys")
    assert len(rows) == 1
    stored = " ".join(str(v) for v in rows[0].values())
    assert key not in stored and key[len(KEY_PREFIX):] not in stored
    assert rows[0]["key_hash"] == KeyHasher(SECRET.encode()).hash(key)
    assert (await keys.find(key)).id == record.id


async def test_settings_round_trip(keys, clock):
    record, _ = await keys.create({
        "name": "bob", "team": "research", "models": ["gpt-4o-mini", "gpt-4*"],
        "limits": {"rpm": 5, "tpm": 1000}, "budget": {"tokens": 10, "cost": 1.5,
                                                      "period": "day"},
        "expires_at": "30d",
    })
    got = await keys.get(record.id)
    assert got == record
    assert got.models == ("gpt-4o-mini", "gpt-4*")
    assert got.limits.rpm == 5 and got.limits.tpm == 1000
    assert got.budget.tokens == 10 and got.budget.cost == 1.5 and got.budget.period == "day"
    assert got.expires_at == clock.now + 30 * 86400
    assert got.status(clock.now) == "active"
    assert got.status(clock.now + 31 * 86400) == "expired"


@pytest.mark.parametrize(("fields", "param"), [
    ({}, "name"),
    ({"name": "x", "team": "nope"}, "team"),
    ({"name": "x", "models": "gpt-4o"}, "models"),
    ({"name": "x", "limits": {"rpm": 0}}, "limits.rpm"),
    ({"name": "x", "budget": {"cost": -1}}, "budget.cost"),
    ({"name": "x", "budget": {"tokens": 5, "period": "week"}}, "budget.period"),
    ({"name": "x", "expires_at": "yesterday"}, "expires_at"),
    ({"name": "x", "expires_at": "2001-01-01"}, "expires_at"),
    ({"name": "x", "colour": "red"}, "colour"),
])
async def test_create_refuses_bad_settings(keys, fields, param):
    with pytest.raises(InvalidRequest) as err:
        await keys.create(fields)
    assert err.value.param == param


async def test_list_filters_by_team_and_status(keys, teams, clock):
    await teams.create({"name": "ml"})
    a, _ = await keys.create({"name": "a", "team": "research"})
    b, _ = await keys.create({"name": "b", "team": "ml"})
    c, _ = await keys.create({"name": "c", "team": "ml", "expires_at": clock.now + 10})
    d, _ = await keys.create({"name": "d"})
    await keys.update(d.id, {"disabled": True})
    assert {r.id for r in await keys.list()} == {a.id, b.id, c.id}
    assert {r.id for r in await keys.list(team="ml")} == {b.id, c.id}
    clock.now += 11
    assert [r.id for r in await keys.list(team="ml")] == [b.id]
    every = await keys.list(include_inactive=True)
    assert {r.id: r.status(clock.now) for r in every} == {
        a.id: "active", b.id: "active", c.id: "expired", d.id: "disabled"}


async def test_update_replaces_present_fields_and_null_clears(keys, clock):
    record, _ = await keys.create({"name": "a", "limits": {"rpm": 3}, "expires_at": "1d"})
    clock.now += 5
    changed = await keys.update(record.id, {"name": "renamed", "limits": None,
                                            "models": ["gpt-4o-mini"], "expires_at": None})
    assert changed.name == "renamed" and changed.limits is None and changed.expires_at is None
    assert changed.models == ("gpt-4o-mini",)
    assert changed.updated_at == clock.now and changed.created_at == record.created_at
    assert await keys.get(record.id) == changed


async def test_revoke_is_final_and_rotate_replaces_the_secret(keys):
    record, old = await keys.create({"name": "a", "models": ["m"]})
    rotated, new = await keys.rotate(record.id)
    assert new != old and rotated.id == record.id and rotated.models == ("m",)
    assert await keys.find(old) is None
    assert (await keys.find(new)).last4 == new[-4:]
    revoked = await keys.revoke(record.id)
    assert revoked.status(0) == "revoked"
    assert (await keys.find(new)).status(0) == "revoked"  # kept, so the 401 can say why
    for change in (keys.revoke(record.id), keys.rotate(record.id),
                   keys.update(record.id, {"disabled": False})):
        with pytest.raises(Conflict):
            await change


async def test_unknown_key_id_is_404(keys):
    with pytest.raises(NotFound):
        await keys.get("key_000000000000")
    with pytest.raises(NotFound):
        await keys.rotate("key_000000000000")


async def test_teams_from_config_and_database(teams, keys):
    created = await teams.create({
        "name": "ml", "models": ["gpt-*"], "limits": {"rpm": 10},
        "budget": {"cost": 100, "period": "month"},
        "upstreams": {"openai": {"api_key_env": "ML_OPENAI_KEY", "project": "proj_ml"}},
        "grouping": {"coalesce": "off", "shared_cache": True},
    })
    assert created.source == "api"
    await keys.create({"name": "k", "team": "ml"})
    listed = {t.name: t for t in await teams.list()}
    assert listed["research"].source == "config" and listed["ml"].key_count == 1
    ml = await teams.find("ml")
    assert ml.upstreams["openai"].api_key_env == "ML_OPENAI_KEY"
    assert ml.grouping.coalesce == "off" and ml.grouping.shared_cache is True
    updated = await teams.update("ml", {"limits": None, "models": []})
    assert updated.config.limits is None and updated.config.models == []
    assert (await teams.get("ml")).config.budget.cost == 100  # untouched


async def test_team_rules(teams):
    with pytest.raises(Conflict):
        await teams.create({"name": "research"})  # declared in the config
    with pytest.raises(Conflict):
        await teams.update("research", {"models": []})
    with pytest.raises(InvalidRequest):
        await teams.create({"name": "bad name!"})
    with pytest.raises(InvalidRequest) as err:
        # A pasted key instead of a variable name is refused, and not echoed.
        await teams.create({"name": "x", "upstreams": {"openai": {"api_key_env": "sk-abc-12"}}})
    assert "sk-abc" not in err.value.message
    with pytest.raises(NotFound):
        await teams.update("ghost", {"models": []})
    await teams.create({"name": "dup"})
    with pytest.raises(Conflict):
        await teams.create({"name": "dup"})
