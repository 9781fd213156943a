"""Passthrough endpoint families per key and team: stored (SQLite; PostgreSQL when available),
migrated onto a database made before the column existed, and set from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llm_gateway.auth.keystore import KeyStore
from llm_gateway.auth.schema import AUTH_STEPS
from llm_gateway.auth.secret import KeyHasher
from llm_gateway.auth.teamstore import TeamStore
from llm_gateway.cli.main import main
from llm_gateway.config import parse_config
from llm_gateway.errors import InvalidRequest
from llm_gateway.storage.connect import connect

from auth_support import SECRET, keys_config


async def test_endpoints_round_trip_for_keys_and_teams(keys, teams):
    team = await teams.create({"name": "art", "endpoints": ["images", "threads", "images"]})
    assert team.config.endpoints == ["images", "assistants"]  # an alias is its family
    assert (await teams.get("art")).to_json()["endpoints"] == ["images", "assistants"]
    record, _ = await keys.create({"name": "a", "team": "art", "endpoints": ["files"]})
    assert (await keys.get(record.id)).endpoints == ("files",)
    cleared = await keys.update(record.id, {"endpoints": None})
    assert cleared.endpoints == () and (await keys.get(record.id)).to_json(0)["endpoints"] == []
    updated = await teams.update("art", {"endpoints": []})
    assert updated.config.endpoints == []
    for bad in ("files", ["Files"], ["a/b"], [1]):
        with pytest.raises(InvalidRequest) as caught:
            await keys.create({"name": "b", "endpoints": bad})
        assert caught.value.param == "endpoints"


async def test_an_old_auth_database_is_migrated(tmp_path: Path):
    config = parse_config({"storage": {"data_dir": str(tmp_path)}}, env={})
    db = await connect(None, config)
    try:
        await db.migrate("auth", AUTH_STEPS[:1])  # made before endpoints existed
        old_teams = TeamStore(db, {})
        await db.execute(
            "INSERT INTO auth_teams (name, models, limits, budget, upstreams, team_grouping,"
            " created_at, updated_at) VALUES ('old', '[]', NULL, NULL, '{}', '{}', 1, 1)")
        await db.migrate("auth", AUTH_STEPS)
        assert (await old_teams.find("old")).endpoints == []
        keys = KeyStore(db, KeyHasher(SECRET.encode()), TeamStore(db, {}))
        _, key = await keys.create({"name": "new", "team": "old"})
        assert (await keys.find(key)).endpoints == ()
    finally:
        await db.aclose()


def test_cli_sets_endpoints(fake, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv("LLM_GATEWAY__STORAGE__DATA_DIR", raising=False)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(keys_config(fake.url, str(tmp_path / "data"))))
    config = ("--config", str(path), "--format", "json")
    assert main(["teams", "create", "ml", "--endpoints", "files,batches", *config]) == 0
    assert json.loads(capsys.readouterr().out)["endpoints"] == ["files", "batches"]
    assert main(["keys", "create", "--name", "k", "--team", "ml", "--endpoints", "files",
                 *config]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["endpoints"] == ["files"]
    assert main(["keys", "update", created["id"], "--endpoints", "images", "audio",
                 *config]) == 0
    assert json.loads(capsys.readouterr().out)["endpoints"] == ["images", "audio"]
