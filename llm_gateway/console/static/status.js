// Live status: routes and deployments, local models and devices, workers (their own /health),
// refreshed every few seconds.
import { el, fillTable, getJSON, num, when } from "./common.js";

const $ = (id) => document.getElementById(id);
const PERIOD_MS = 5000;
const health = (ok, text) => el("span", { class: ok ? "ok" : "bad" }, text);
const pct = (v) => (v === null || v === undefined ? "-" : `${(v * 100).toFixed(0)}%`);

function deploymentRows(groups) {
  const rows = [];
  for (const group of groups) {
    for (const d of group.deployments || []) rows.push({ route: group.model, strategy: group.strategy, ...d });
  }
  return rows;
}

async function refresh() {
  try {
    const s = await getJSON("/ui/api/status");
    fillTable($("deployments"), [
      { key: "route", label: "Route" }, { key: "strategy", label: "Strategy" },
      { label: "Deployment", render: (d) => d.name }, { key: "backend", label: "Backend" },
      { label: "Health", render: (d) => health(d.state === "healthy", d.state) },
      { label: "Cooldown (s)", num: true, render: (d) => (d.cooldown_remaining_seconds ? d.cooldown_remaining_seconds.toFixed(1) : "-") },
      { label: "Failures", num: true, render: (d) => num(d.failures) },
      { label: "In flight", num: true, render: (d) => num(d.inflight) },
      { label: "Latency (ms)", num: true, render: (d) => num(d.latency_ms) },
    ], deploymentRows(s.deployments), "No balanced routes (each model has one backend).");
    fillTable($("models"), [
      { key: "model", label: "Model" }, { key: "load", label: "Load" },
      { label: "State", render: (m) => health(m.state === "loaded", m.state) },
      { label: "Workers ready", num: true, render: (m) => `${num(m.workers_ready)} / ${num(m.workers)}` },
      { label: "In flight", num: true, render: (m) => num(m.in_flight) },
      { label: "Waiting", num: true, render: (m) => num(m.waiting) },
      { label: "Memory (MiB, est./used)", num: true, render: (m) => `${num(m.estimated_mib)} / ${num(m.used_mib)}` },
      { label: "Last used", render: (m) => m.last_used || "-" },
    ], s.models.data, "No local models.");
    fillTable($("devices"), [
      { key: "device", label: "Device" },
      { label: "Budget (MiB)", num: true, render: (d) => num(d.budget_mib) },
      { label: "Booked (MiB)", num: true, render: (d) => num(d.booked_mib) },
      { label: "Used (MiB)", num: true, render: (d) => num(d.used_mib) },
    ], s.models.devices || [], "No memory budget.");
    fillTable($("workers"), [
      { key: "backend", label: "Backend" }, { key: "index", label: "#" },
      { label: "State", render: (w) => health(w.healthy, w.status) },
      { label: "In flight", num: true, render: (w) => num(w.in_flight) },
      { label: "Queue", num: true, render: (w) => num(w.queue_depth) },
      { label: "Active sequences", num: true, render: (w) => num(w.active) },
      { label: "KV use", num: true, render: (w) => pct(w.kv_cache_usage) },
      { label: "Tokens/s", num: true, render: (w) => (w.tokens_per_second == null ? "-" : w.tokens_per_second.toFixed(1)) },
      { label: "Restarts", num: true, render: (w) => num(w.restarts) },
    ], s.workers, "No local workers.");
    $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
  } catch (error) {
    $("updated").textContent = `Could not refresh: ${error.message}`;
  }
}

refresh();
setInterval(refresh, PERIOD_MS);
