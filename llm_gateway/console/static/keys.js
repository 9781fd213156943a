// Keys and teams. Every change is a call to the gateway's admin API (/ui/admin/... is
// /admin/... with the admin key, for an admin session only); this page never writes itself.
import { el, fillTable, getJSON, num, send, usd, when } from "./common.js";

const $ = (id) => document.getElementById(id);
const readOnly = !$("key-form");
let editing = null;  // {kind: "keys"|"teams", id}

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
const intOrNull = (v) => (v === "" ? null : parseInt(v, 10));
const floatOrNull = (v) => (v === "" ? null : parseFloat(v));

function say(message) {
  $("action-msg").hidden = false;
  $("action-msg").textContent = message;
}

function showKey(key) {
  $("new-key").hidden = false;
  $("new-key-value").textContent = key;
  $("copy-key").focus();
}

function settings(prefix) {
  const rpm = intOrNull($(`${prefix}-rpm`).value);
  const tpm = intOrNull($(`${prefix}-tpm`).value);
  const cost = floatOrNull($(`${prefix}-cost`).value);
  const tokens = intOrNull($(`${prefix}-tokens`).value);
  const period = $(`${prefix}-period`).value;
  return {
    models: list($(`${prefix}-models`).value),
    limits: rpm || tpm ? { rpm, tpm } : null,
    budget: cost !== null || tokens !== null ? { cost, tokens, period } : null,
  };
}

async function act(work, done) {
  try {
    const result = await work();
    if (done) say(done);
    await load();
    return result;
  } catch (error) {
    say(`Failed: ${error.message}`);
    return null;
  }
}

function keyActions(key) {
  if (readOnly || key.status === "revoked") return "";
  const path = `/ui/admin/keys/${encodeURIComponent(key.id)}`;
  const label = (verb) => `${verb} ${key.name} (${key.id})`;
  return el("span", {},
    el("button", { type: "button", class: "small", "aria-label": label(key.disabled ? "Enable" : "Disable"),
      onclick: () => act(() => send("PATCH", path, { disabled: !key.disabled }),
                         `${key.id} ${key.disabled ? "enabled" : "disabled"}.`) },
      key.disabled ? "Enable" : "Disable"),
    el("button", { type: "button", class: "small", "aria-label": label("Rotate"),
      onclick: async () => { const r = await act(() => send("POST", `${path}/rotate`), `${key.id} rotated.`);
                             if (r) showKey(r.key); } }, "Rotate"),
    el("button", { type: "button", class: "small", "aria-label": label("Edit"),
      onclick: () => edit("keys", key) }, "Edit"),
    el("button", { type: "button", class: "small danger", "aria-label": label("Revoke"),
      "data-revoke": key.id,
      onclick: () => confirm(`Revoke ${key.name} for good?`) &&
        act(() => send("DELETE", path), `${key.id} revoked.`) }, "Revoke"));
}

function edit(kind, item) {
  editing = { kind, id: kind === "keys" ? item.id : item.name };
  $("edit-form").hidden = false;
  $("edit-what").textContent = editing.id;
  $("e-models").value = (item.models || []).join(", ");
  $("e-rpm").value = item.limits?.rpm ?? "";
  $("e-tpm").value = item.limits?.tpm ?? "";
  $("e-cost").value = item.budget?.cost ?? "";
  $("e-tokens").value = item.budget?.tokens ?? "";
  $("e-period").value = item.budget?.period || "month";
  $("e-models").focus();
}

const limitText = (l) => (l ? [l.rpm && `${num(l.rpm)} rpm`, l.tpm && `${num(l.tpm)} tpm`].filter(Boolean).join(", ") || "-" : "-");
const budgetText = (b) => (b ? [b.cost != null && usd(b.cost), b.tokens != null && `${num(b.tokens)} tokens`]
  .filter(Boolean).join(", ") + ` / ${b.period}` : "-");

async function load() {
  const [keys, teams] = await Promise.all([getJSON("/ui/api/keys"), getJSON("/ui/api/teams")]);
  fillTable($("keys"), [
    { key: "id", label: "Id" }, { key: "name", label: "Name" },
    { label: "Team", render: (k) => k.team || "-" },
    { key: "status", label: "Status" }, { key: "redacted_key", label: "Key" },
    { label: "Models", render: (k) => k.models.join(", ") || "all" },
    { label: "Limits", render: (k) => limitText(k.limits) },
    { label: "Budget", render: (k) => budgetText(k.budget) },
    { label: "Expires", render: (k) => when(k.expires_at) },
    { label: "Actions", render: keyActions },
  ], keys.data, "No keys.");
  fillTable($("teams"), [
    { key: "name", label: "Team" }, { key: "source", label: "Defined in" },
    { label: "Models", render: (t) => (t.models || []).join(", ") || "all" },
    { label: "Limits", render: (t) => limitText(t.limits) },
    { label: "Budget", render: (t) => budgetText(t.budget) },
    { label: "Keys", num: true, render: (t) => num(t.key_count) },
    { label: "Actions", render: (t) => (readOnly || t.source === "config" ? "" :
      el("button", { type: "button", class: "small", "aria-label": `Edit team ${t.name}`,
                     onclick: () => edit("teams", t) }, "Edit")) },
  ], teams.data, "No teams.");
  if (!readOnly) {
    const current = $("k-team").value;
    $("k-team").replaceChildren(el("option", { value: "" }, "(none)"),
      ...teams.data.map((t) => el("option", { value: t.name }, t.name)));
    $("k-team").value = current;
  }
}

if (!readOnly) {
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: $("k-name").value.trim(), ...settings("k") };
    if ($("k-team").value) body.team = $("k-team").value;
    if ($("k-expires").value.trim()) body.expires_at = $("k-expires").value.trim();
    const made = await act(() => send("POST", "/ui/admin/keys", body), "Key created.");
    if (made) { showKey(made.key); event.target.reset(); }
  });
  $("team-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const s = settings("t");
    const body = { name: $("t-name").value.trim(), models: s.models };
    if (s.limits) body.limits = s.limits;
    if (s.budget) body.budget = s.budget;
    if (await act(() => send("POST", "/ui/admin/teams", body), "Team created.")) event.target.reset();
  });
  $("edit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const path = `/ui/admin/${editing.kind}/${encodeURIComponent(editing.id)}`;
    if (await act(() => send("PATCH", path, settings("e")), `${editing.id} saved.`)) {
      $("edit-form").hidden = true;
    }
  });
  $("cancel-edit").addEventListener("click", () => { $("edit-form").hidden = true; });
}
$("copy-key").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("new-key-value").textContent);
    say("Copied.");
  } catch {
    say("Copy failed: select the key and copy it yourself.");
  }
});
load().catch((error) => say(`Failed: ${error.message}`));
