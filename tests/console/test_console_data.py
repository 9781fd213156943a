"""The console's reads: budgets against the ledger, usage ranges, a chat's price, status."""

from __future__ import annotations

import datetime as dt
import time

from auth_support import ADMIN_KEY, Admin, call, new_key
from console_support import sign_in

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "budget me"}]}


def _wait(predicate, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_budgets_show_what_the_ledger_holds_for_the_period(gw):
    admin = Admin(gw)
    made = admin("POST", "/admin/teams", json={"name": "spenders",
                                               "budget": {"tokens": 100000, "period": "day"}})
    assert made.status_code == 201, made.text
    key_id, key = new_key(gw, name="spender", team="spenders",
                          budget={"tokens": 5000, "period": "month"})
    assert call(gw, key, "POST", "/chat/completions", json=CHAT).status_code == 200
    browser = sign_in(gw, ADMIN_KEY)

    def rows():
        found = {(r["scope"], r["name"]): r
                 for r in browser.get("/ui/api/budgets").json()["data"]}
        team = found.get(("team", "spenders"))
        return found if team and team["tokens_used"] > 0 else None

    found = _wait(rows)
    team, key_row = found[("team", "spenders")], found[("key", key_id)]
    assert team["tokens_limit"] == 100000 and team["period"] == "day"
    assert key_row["tokens_limit"] == 5000 and key_row["tokens_used"] == team["tokens_used"]
    assert team["resets_at"] > time.time()
    # The key's own session sees its team's budgets only.
    mine = sign_in(gw, key).get("/ui/api/budgets").json()["data"]
    assert {r["name"] for r in mine} == {"spenders", key_id}


def test_usage_takes_a_date_range_and_refuses_a_bad_one(gw):
    browser = sign_in(gw, ADMIN_KEY)
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    empty = browser.get("/ui/api/usage", params={"since": tomorrow}).json()["data"]
    assert empty[0]["requests"] == 0
    bad = browser.get("/ui/api/usage", params={"since": "yesterday-ish"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
    backwards = browser.get("/ui/api/usage", params={"since": "1d", "until": "2d"})
    assert backwards.status_code == 400
    assert browser.get("/ui/api/usage", params={"group_by": "colour"}).status_code == 400


def test_status_lists_backends_models_and_workers(gw):
    browser = sign_in(gw, ADMIN_KEY)
    status = browser.get("/ui/api/status").json()
    assert status["workers"] == [] and status["models"]["object"] == "list"
    assert "openai" in status["backends"]
