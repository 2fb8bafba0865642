// Shared by pallet's pages: element building, JSON requests with readable errors, formatting.
"use strict";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const init = { ...options, headers: { Accept: "application/json", ...(options.headers || {}) } };
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.body = JSON.stringify(options.json);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `the server did not answer (${error.message}); is pallet serve still running?`);
  }
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return { body, response };
}

function ms(value) {
  return value === null || value === undefined ? "–" : `${value.toFixed(2)} ms`;
}

function fmt(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (Math.abs(value) >= 1000) return value.toLocaleString(undefined, { maximumFractionDigits: 0 });
  return value.toLocaleString(undefined, { maximumFractionDigits: digits });
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`;
}

function bytes(size) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (size >= 1024 && i < units.length - 1) { size /= 1024; i++; }
  return `${i ? size.toFixed(1) : size} ${units[i]}`;
}

function metricBadges(metrics) {
  return Object.entries(metrics || {}).map(([k, v]) =>
    el("span", { class: "badge" }, `${k} ${typeof v === "number" ? v.toFixed(3) : v}`));
}

function header() {
  return el("header", { class: "top" },
    el("a", { class: "brand", href: "/" }, "pallet"),
    el("nav", { "aria-label": "main" },
      el("a", { href: "/ui/" }, "Models"),
      el("a", { href: "/dashboard" }, "Dashboard"),
      el("a", { href: "/docs" }, "API docs"),
      el("a", { href: "/metrics" }, "Metrics")));
}
