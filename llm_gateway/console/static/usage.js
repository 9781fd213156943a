// Usage and spend: the ledger's report (the same numbers as `llm-gateway usage`), as bars,
// a table, totals with the tokens grouping saved, budgets, and the same query as CSV.
import { barChart, el, fillTable, getJSON, num, stats, usd } from "./common.js";

const $ = (id) => document.getElementById(id);
const LABEL = { day: "day", team: "team", key: "key_id", model: "model", deployment: "deployment" };

function params() {
  const p = new URLSearchParams();
  const since = $("from-date").value || $("since").value;  // a date (UTC) or a preset
  if (since) p.set("since", since);
  if ($("until-date").value) p.set("until", $("until-date").value);
  for (const [id, name] of [["filter-model", "model"], ["filter-team", "team"], ["filter-key", "key_id"]]) {
    const value = $(id)?.value.trim();
    if (value) p.set(name, value);
  }
  return p;
}

async function show(event) {
  event?.preventDefault();
  const p = params();
  const totals = (await getJSON(`/ui/api/usage?${p}`)).data[0] || {};
  stats($("totals"), [
    ["Requests", num(totals.requests), "total-requests"],
    ["Tokens", num(totals.total_tokens), "total-tokens"],
    ["Cost", usd(totals.cost), "total-cost"],
    ["Saved by grouping", num(totals.saved_tokens) + " tokens", "total-saved"],
    ["Retried", num(totals.retried_requests)],
    ["Fallbacks", num(totals.fallback_requests)],
  ]);
  const group = $("group_by").value;
  p.set("group_by", group);
  $("csv").href = `/ui/api/usage.csv?${p}`;
  const rows = (await getJSON(`/ui/api/usage?${p}`)).data;
  const name = (row) => row[LABEL[group]] ?? "(none)";
  $("charts").replaceChildren(
    barChart("Tokens", rows.map((r) => ({ label: name(r), value: r.total_tokens })), num),
    barChart("Cost (USD)", rows.map((r) => ({ label: name(r), value: r.cost })), usd, "cost"),
    barChart("Tokens saved by grouping", rows.map((r) => ({ label: name(r), value: r.saved_tokens })), num));
  fillTable($("usage-table"), [
    { label: group, render: name },
    { key: "requests", label: "Requests", num: true, render: (r) => num(r.requests) },
    { label: "Prompt", num: true, render: (r) => num(r.prompt_tokens) },
    { label: "Completion", num: true, render: (r) => num(r.completion_tokens) },
    { label: "Total tokens", num: true, render: (r) => num(r.total_tokens) },
    { label: "Cost", num: true, render: (r) => usd(r.cost) },
    { label: "Saved tokens", num: true, render: (r) => num(r.saved_tokens) },
  ], rows, "No requests in this range.");
  await budgets();
}

function meter(used, limit) {
  if (!limit) return "-";
  const share = Math.min(used / limit, 1);
  const bar = el("span", { class: used >= limit ? "over" : null });
  bar.style.width = `${(share * 100).toFixed(1)}%`;  // CSSOM: allowed by the page's CSP
  return el("div", { class: "meter", role: "meter", "aria-valuemin": 0, "aria-valuemax": limit,
                     "aria-valuenow": used, "aria-label": "used of limit" }, bar);
}

async function budgets() {
  const rows = (await getJSON("/ui/api/budgets")).data;
  fillTable($("budgets-table"), [
    { key: "scope", label: "Scope" }, { key: "name", label: "Team or key" },
    { key: "period", label: "Period" },
    { label: "Tokens used / limit", num: true, render: (r) => `${num(r.tokens_used)} / ${num(r.tokens_limit)}` },
    { label: "", render: (r) => meter(r.tokens_used, r.tokens_limit) },
    { label: "Cost used / limit", num: true, render: (r) => `${usd(r.cost_used)} / ${usd(r.cost_limit)}` },
    { label: "", render: (r) => meter(r.cost_used, r.cost_limit) },
  ], rows, "No budgets set.");
}

$("usage-form").addEventListener("submit", (e) => show(e).catch((error) => alertError(error)));
function alertError(error) {
  $("totals").replaceChildren(el("p", { class: "error", role: "alert" }, error.message));
}
show().catch(alertError);
