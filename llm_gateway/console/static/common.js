// Shared by the console's pages: requests with the session's CSRF token, formatting, tables
// and small SVG bar charts (no library: a few bars do not need one).

export const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

export async function getJSON(path) {
  const answer = await fetch(path, { credentials: "same-origin" });
  return readAnswer(answer);
}

export async function send(method, path, body) {
  const answer = await fetch(path, {
    method, credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return readAnswer(answer);
}

async function readAnswer(answer) {
  const text = await answer.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!answer.ok) {
    const message = data?.error?.message || `${answer.status} ${answer.statusText}`;
    throw new Error(message);
  }
  return data;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const num = (n) => (n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"));
export const usd = (n) => (n === null || n === undefined ? "-" : "$" + Number(n).toFixed(n && n < 0.01 ? 6 : 4));
export const when = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16) : "-");

// columns: [{key, label, num?, render?}]
export function fillTable(table, columns, rows, empty = "Nothing yet.") {
  table.replaceChildren();
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, empty)));
  for (const row of rows) {
    body.append(el("tr", {}, columns.map((c) => {
      const value = c.render ? c.render(row) : row[c.key];
      return el("td", { class: c.num ? "num" : null }, value ?? "-");
    })));
  }
  table.append(body);
}

export function stats(dl, pairs) {
  dl.replaceChildren(...pairs.map(([name, value, id]) =>
    el("div", {}, el("dt", {}, name), el("dd", { id }, value))));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Horizontal bars, one per item: [{label, value}], with a text alternative for screen readers.
export function barChart(title, items, format, cls = "") {
  const row = 24, labelWidth = 110, width = 360;
  const max = Math.max(...items.map((i) => i.value), 0) || 1;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${Math.max(items.length, 1) * row + 4}`,
                             role: "img", "aria-label": `${title}: ` +
                             items.map((i) => `${i.label} ${format(i.value)}`).join(", ") });
  items.forEach((item, n) => {
    const y = n * row + 2, w = ((width - labelWidth - 80) * item.value) / max;
    chart.append(svg("text", { x: 0, y: y + 15 }, String(item.label).slice(0, 16)));
    chart.append(svg("rect", { x: labelWidth, y, width: Math.max(w, 1), height: row - 6, class: `bar ${cls}` }));
    chart.append(svg("text", { x: labelWidth + w + 6, y: y + 15 }, format(item.value)));
  });
  return el("figure", {}, el("figcaption", {}, title), chart);
}
