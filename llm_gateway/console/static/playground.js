// The playground: a streamed chat through /ui/v1/chat/completions (the gateway's own
// endpoint, with this session's key). Stop aborts the fetch: the gateway sees the client go
// and cancels the upstream call.
import { csrf, el, getJSON, num, stats, usd } from "./common.js";

const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;

async function loadModels() {
  try {
    const list = await getJSON("/ui/v1/models");
    const names = (list.data || []).map((m) => m.id).sort();
    $("model").replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  } catch (error) {
    $("chat-error").textContent = `Models: ${error.message}`;
  }
}

function bubble(role, text) {
  const body = el("span", { class: "text" }, text);
  $("messages").append(el("li", { class: role }, el("span", { class: "role" }, role), body));
  return body;
}

function requestBody() {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...history);
  const body = { model: $("model").value, messages, stream: true,
                 stream_options: { include_usage: true } };
  for (const [id, parse] of [["temperature", parseFloat], ["top_p", parseFloat],
                             ["max_tokens", (v) => parseInt(v, 10)], ["seed", (v) => parseInt(v, 10)]]) {
    const value = $(id).value.trim();
    if (value !== "") body[id] = parse(value);
  }
  return body;
}

// Server-sent events from a fetch body: calls onData with each `data:` payload.
async function readEvents(answer, onData) {
  const reader = answer.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart()).join("\n");
      if (data && data !== "[DONE]") onData(JSON.parse(data));
    }
  }
}

async function showStats(answer, body, usage, started, first, ended, stopped) {
  const grouping = answer.headers.get("x-lgw-cache") || "none";
  const completion = usage?.completion_tokens;
  const seconds = first && ended > first ? (ended - first) / 1000 : null;
  let cost = "-";
  if (usage && grouping !== "hit" && grouping !== "coalesced") {
    const params = new URLSearchParams({ model: body.model, served: usage.served || "",
      prompt: usage.prompt_tokens || 0, completion: completion || 0,
      cached: usage.prompt_tokens_details?.cached_tokens || 0 });
    try { cost = usd((await getJSON(`/ui/api/price?${params}`)).cost); } catch { cost = "?"; }
  } else if (usage) {
    cost = usd(0) + " (grouped)";
  }
  stats($("stats"), [
    ["Prompt tokens", num(usage?.prompt_tokens), "stat-prompt"],
    ["Completion tokens", num(completion), "stat-completion"],
    ["Time to first token", first ? `${Math.round(first - started)} ms` : "-", "stat-ttft"],
    ["Tokens/s", completion && seconds ? (completion / seconds).toFixed(1) : "-", "stat-rate"],
    ["Cost", cost, "stat-cost"],
    ["Backend", answer.headers.get("x-lgw-backend") || "-", "stat-backend"],
    ["Deployment", answer.headers.get("x-lgw-deployment") || "-", "stat-deployment"],
    ["Grouping", grouping, "stat-grouping"],
    ["Ended", stopped ? "stopped" : "complete", "stat-ended"],
  ]);
}

async function sendMessage(event) {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt || controller) return;
  $("chat-error").textContent = "";
  history.push({ role: "user", content: prompt });
  bubble("user", prompt);
  $("prompt").value = "";
  const target = bubble("assistant", "");
  const body = requestBody();
  controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  const started = performance.now();
  let first = 0, usage = null, text = "", stopped = false, answer = null;
  try {
    answer = await fetch("/ui/v1/chat/completions", {
      method: "POST", credentials: "same-origin", signal: controller.signal,
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(body),
    });
    if (!answer.ok) {
      const error = await answer.json().catch(() => null);
      throw new Error(error?.error?.message || `${answer.status} ${answer.statusText}`);
    }
    await readEvents(answer, (chunk) => {
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        if (!first) first = performance.now();
        text += delta;
        target.textContent = text;
      }
      if (chunk.usage) usage = { ...chunk.usage, served: chunk.model };
    });
  } catch (error) {
    if (error.name === "AbortError") stopped = true;
    else $("chat-error").textContent = error.message;
  } finally {
    controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
  history.push({ role: "assistant", content: text });
  target.parentElement.dataset.done = stopped ? "stopped" : "complete";
  if (answer && answer.ok) await showStats(answer, body, usage, started, first, performance.now(), stopped);
}

$("send-form").addEventListener("submit", sendMessage);
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("send-form").requestSubmit();
});
$("stop").addEventListener("click", () => controller?.abort());
$("clear").addEventListener("click", () => {
  history.length = 0;
  $("messages").replaceChildren();
  $("stats").replaceChildren();
});
loadModels();
