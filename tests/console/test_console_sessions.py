"""The console's sessions over plain HTTP: sign-in and out, cookie flags, expiry, CSRF, and
what a gateway-key session may not do."""

from __future__ import annotations

import time

import httpx

from llm_gateway.console.sessions import COOKIE
from llm_gateway.console.signin import CHAT_KEY_NAME
from llm_gateway.testing.gateway import GatewayServer

from auth_support import ADMIN_KEY, Admin, call, new_key
from console_support import asgi_get, client, csrf_of, set_cookies, sign_in, try_sign_in


def test_root_and_ui_redirect_to_the_playground_and_other_paths_stay_openai_errors(gw):
    browser = client(gw)
    assert browser.get("/").headers["location"] == "/ui/"
    assert browser.get("/ui/").headers["location"] == "/ui/playground"
    # Not signed in (keys mode): the sign-in page.
    assert browser.get("/ui/playground").headers["location"] == "/ui/login"
    for path in ("/nope", "/ui/nope", "/uix"):
        answer = browser.get(path)
        assert answer.status_code == 404
        assert answer.json()["error"]["type"] == "invalid_request_error"
    answer = browser.post("/")
    assert answer.status_code == 405
    assert "error" in answer.json()
    assert browser.get("/healthz").status_code == 200  # the gateway's own routes are intact


def test_the_session_cookie_is_httponly_strict_signed_and_holds_no_key(gw):
    browser = client(gw)
    answer = try_sign_in(browser, ADMIN_KEY)
    assert answer.status_code == 303
    cookie = next(c for c in set_cookies(answer) if c.startswith(COOKIE + "="))
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/ui" in flags
    assert "secure" not in flags  # plain http here; https adds it (see the next test)
    assert any(f.startswith("max-age=") and int(f.split("=")[1]) > 0 for f in flags)
    value = cookie.split(";")[0].split("=", 1)[1]
    assert ADMIN_KEY not in value and "sk-lgw" not in value
    # A tampered signature opens nothing.
    sid, _, sig = value.partition(".")
    forged = client(gw)
    forged.cookies.set(COOKIE, f"{sid}.{sig[::-1]}", path="/ui")
    assert forged.get("/ui/keys").headers["location"] == "/ui/login"
    assert browser.get("/ui/keys").status_code == 200


def test_the_cookie_is_secure_over_https(gw):
    # As uvicorn reports a request that a TLS proxy forwarded (X-Forwarded-Proto trusted).
    status, headers = asgi_get(gw.app, "/ui/login", "10.0.0.1", scheme="https")
    assert status == 200
    assert "Secure" in headers["set-cookie"].split("; ")


def test_a_wrong_key_or_a_stale_form_does_not_sign_in(gw):
    browser = client(gw)
    answer = try_sign_in(browser, "sk-lgw-" + "x" * 43)
    assert answer.status_code == 401
    assert "cannot sign in" in answer.text
    assert not [c for c in set_cookies(answer) if c.startswith(COOKIE + "=")]
    # No sign-in token (a form posted from another site): refused.
    answer = client(gw).post("/ui/login", data={"csrf": "forged", "key": ADMIN_KEY})
    assert answer.status_code == 403
    assert not [c for c in set_cookies(answer) if c.startswith(COOKIE + "=")]


def test_writes_need_the_csrf_token_and_the_same_origin(gw):
    browser = sign_in(gw, ADMIN_KEY)
    token = csrf_of(browser)
    refused = browser.post("/ui/admin/keys", json={"name": "nope"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    wrong = browser.post("/ui/admin/keys", json={"name": "nope"}, headers={"x-csrf-token": "x"})
    assert wrong.status_code == 403
    elsewhere = browser.post("/ui/admin/keys", json={"name": "nope"},
                             headers={"x-csrf-token": token, "origin": "https://evil.example"})
    assert elsewhere.status_code == 403
    made = browser.post("/ui/admin/keys", json={"name": "yes"}, headers={"x-csrf-token": token})
    assert made.status_code == 201, made.text
    names = [k["name"] for k in browser.get("/ui/api/keys").json()["data"]]
    assert "yes" in names and "nope" not in names
    # Logout needs the token too.
    assert browser.post("/ui/logout", data={"csrf": "x"}).status_code == 403


def test_a_cookie_or_token_past_ascii_is_refused_not_a_crash(gw):
    for cookie in ("abc.\xe9x", "\xe9\xe9", "s\xe9.sig"):
        answer = httpx.get(gw.base + "/ui/keys", timeout=10,
                           headers=[(b"cookie", f"{COOKIE}={cookie}".encode("latin-1"))])
        assert answer.status_code in (302, 303, 307), answer.text
        assert answer.headers["location"] == "/ui/login"
    browser = sign_in(gw, ADMIN_KEY)
    refused = browser.post("/ui/admin/keys", json={"name": "x"},
                           headers=[(b"x-csrf-token", "\xe9".encode("latin-1"))])
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    page = client(gw)
    page.get("/ui/login")
    bad_form = page.post("/ui/login", data={"csrf": "\xe9", "key": ADMIN_KEY})
    assert bad_form.status_code == 403


def test_logout_forgets_the_session_at_once(gw):
    browser = sign_in(gw, ADMIN_KEY)
    cookie = browser.cookies.get(COOKIE)
    token = csrf_of(browser)
    answer = browser.post("/ui/logout", data={"csrf": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    replay = client(gw)
    replay.cookies.set(COOKIE, cookie, path="/ui")  # the old cookie, kept by an attacker
    assert replay.get("/ui/keys").headers["location"] == "/ui/login"
    assert replay.get("/ui/api/keys").status_code == 401


def test_a_session_expires(gw):
    sessions = gw.app.console.sessions
    browser = sign_in(gw, ADMIN_KEY)
    assert browser.get("/ui/keys").status_code == 200
    real = sessions.clock
    sessions.clock = lambda: real() + sessions.lifetime + 1
    try:
        assert browser.get("/ui/keys").headers["location"] == "/ui/login"
        assert browser.get("/ui/api/usage").status_code == 401
    finally:
        sessions.clock = real


def test_a_gateway_key_session_sees_its_team_only_and_changes_nothing(gw: GatewayServer):
    admin = Admin(gw)
    mine = admin("POST", "/admin/keys", json={"name": "alice", "team": "research"}).json()
    other = admin("POST", "/admin/keys", json={"name": "bob"}).json()
    assert call(gw, other["key"], "POST", "/chat/completions", json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    browser = sign_in(gw, mine["key"])
    page = browser.get("/ui/keys")
    assert page.status_code == 200 and "read-only" in page.text
    assert 'id="key-form"' not in page.text  # no create form on a read-only page
    keys = browser.get("/ui/api/keys").json()["data"]
    assert {k["team"] for k in keys} == {"research"} and other["id"] not in {k["id"] for k in keys}
    assert [t["name"] for t in browser.get("/ui/api/teams").json()["data"]] == ["research"]
    # Asking for another team's usage gives its own team's (empty here: alice made no call).
    usage = browser.get("/ui/api/usage", params={"team": "other"}).json()["data"]
    assert usage[0]["requests"] == 0
    token = csrf_of(browser)
    for method, path in (("POST", "/ui/admin/keys"), ("PATCH", f"/ui/admin/keys/{other['id']}"),
                         ("DELETE", f"/ui/admin/keys/{other['id']}")):
        answer = browser.request(method, path, json={"name": "x"},
                                 headers={"x-csrf-token": token})
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["error"]["code"] == "console_read_only"
    assert admin("GET", f"/admin/keys/{other['id']}").json()["status"] == "active"
    # Once its key is revoked, the session is over too.
    assert admin("DELETE", f"/admin/keys/{mine['id']}").status_code == 200
    assert browser.get("/ui/keys").headers["location"] == "/ui/login"
    assert browser.get("/ui/api/usage").status_code == 401


def test_admin_writes_go_through_the_admin_api_and_its_checks(gw):
    browser = sign_in(gw, ADMIN_KEY)
    token = csrf_of(browser)
    bad = browser.post("/ui/admin/keys", json={"name": "x", "limits": {"rpm": -1}},
                       headers={"x-csrf-token": token})
    assert bad.status_code == 400  # the admin API's own validation answered
    assert bad.json()["error"]["type"] == "invalid_request_error"
    made = browser.post("/ui/admin/keys", json={"name": "rot"}, headers={"x-csrf-token": token})
    key_id, old = made.json()["id"], made.json()["key"]
    rotated = browser.post(f"/ui/admin/keys/{key_id}/rotate", headers={"x-csrf-token": token})
    assert rotated.status_code == 200 and rotated.json()["key"] != old
    refused = call(gw, old, "GET", "/models")
    assert refused.status_code == 401
    assert call(gw, rotated.json()["key"], "GET", "/models").status_code == 200
    # Only writes pass this door: reads come from /ui/api/, and only with a session.
    assert browser.get(f"/ui/admin/keys/{key_id}").status_code == 405
    assert httpx.get(gw.base + "/ui/api/keys").status_code == 401


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_a_gateway_key_session_chats_as_its_key(gw):
    key_id, key = new_key(gw, name="carol", team="research")
    browser = sign_in(gw, key)
    token = csrf_of(browser, "/ui/playground")
    answer = browser.post("/ui/v1/chat/completions", json=CHAT, headers={"x-csrf-token": token})
    assert answer.status_code == 200, answer.text
    # The team's model list applies, as it would to the key itself.
    refused = browser.post("/ui/v1/chat/completions", headers={"x-csrf-token": token},
                           json={**CHAT, "model": "gpt-4o"})
    assert refused.status_code == 403
    models = [m["id"] for m in browser.get("/ui/v1/models").json()["data"]]
    assert "gpt-4o-mini" in models and "gpt-4o" not in models
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = browser.get("/ui/api/usage", params={"group_by": "key"}).json()["data"]
        if any(r["key_id"] == key_id for r in rows):
            break
        time.sleep(0.05)
    assert [r["requests"] for r in rows if r["key_id"] == key_id] == [1]


def test_an_admin_chats_with_a_key_of_its_session_revoked_at_logout(gw):
    browser = sign_in(gw, ADMIN_KEY)
    token = csrf_of(browser, "/ui/playground")
    answer = browser.post("/ui/v1/chat/completions", json=CHAT, headers={"x-csrf-token": token})
    assert answer.status_code == 200, answer.text
    again = browser.post("/ui/v1/chat/completions", json=CHAT, headers={"x-csrf-token": token})
    assert again.status_code == 200
    made = [k for k in browser.get("/ui/api/keys").json()["data"]
            if k["name"] == CHAT_KEY_NAME and k["status"] == "active"]
    assert len(made) == 1 and made[0]["expires_at"] is not None  # one per session, expiring
    assert browser.post("/ui/logout", data={"csrf": token}).status_code == 303
    shown = Admin(gw)("GET", f"/admin/keys/{made[0]['id']}").json()
    assert shown["status"] == "revoked"
