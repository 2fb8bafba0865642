// The dashboard: polls GET /ui/api/dashboard (the server's own metrics) and draws plain SVG charts.
// Errors are two figures everywhere: client errors (4xx, requests refused) and failures (5xx, the model
// or the server could not answer). A chart's line breaks where an interval had no value (no requests).
"use strict";

const COLORS = ["#2f6fec", "#e8743b", "#19a979", "#945ecf", "#ed4a7b", "#13a4b4", "#525df4", "#bf399e"];
const $ = (id) => document.getElementById(id);

document.body.prepend(header());
refresh();

async function refresh() {
  let data;
  try {
    data = (await api("/ui/api/dashboard")).body;
    $("error").classList.add("hidden");
  } catch (error) {
    $("error").textContent = error.message;
    $("error").classList.remove("hidden");
    setTimeout(refresh, 5000);
    return;
  }
  render(data);
  setTimeout(refresh, data.server.interval_seconds * 1000);
}

function render(data) {
  const s = data.server;
  $("server").textContent = `pallet ${s.version} · up ${duration(s.uptime_seconds)} · ${s.workers} worker${s.workers > 1 ? "s" : ""} · ` +
    `updated ${new Date().toLocaleTimeString()}`;
  const models = data.models, other = data.no_model;  // `other`: requests that named no loaded model
  const sum = (f) => models.reduce((a, m) => a + (f(m) || 0), 0);
  const total = (key) => sum((m) => m.figures && m.figures[key]) + (other ? other[key] : 0);
  const unloaded = other && other.client_errors ? `${fmt(other.client_errors, 0)} for models not loaded` : null;
  const feedback = sum((m) => m.feedback.total), up = sum((m) => m.feedback.up), down = sum((m) => m.feedback.down);
  const kpi = (label, value, id, note) => el("div", { class: "card kpi", "data-testid": id },
    el("div", { class: "muted small" }, label), el("div", { class: "value" }, value),
    note ? el("div", { class: "muted small" }, note) : null);
  $("kpis").replaceChildren(
    kpi("models loaded", models.length, "kpi-models"),
    kpi("requests", fmt(total("requests"), 0), "kpi-requests"),
    kpi("req/s, last minute", fmt(sum((m) => m.figures && m.figures.last_minute.rps), 1), "kpi-rps"),
    kpi("client errors (4xx)", fmt(total("client_errors"), 0), "kpi-client-errors", unloaded),
    kpi("failures (5xx)", fmt(total("server_errors"), 0), "kpi-server-errors"),
    kpi("feedback", fmt(feedback, 0), "kpi-feedback", up + down ? `${percent(up / (up + down))} thumbs up` : null));
  $("rows").replaceChildren(...models.map((m) => {
    const f = m.figures, minute = f ? f.last_minute : null;
    const rated = m.feedback.up + m.feedback.down;
    return el("tr", { "data-model": m.name },
      el("td", {}, el("a", { href: `/ui/${encodeURIComponent(m.name)}` }, m.name)),
      el("td", {}, m.versions.join(", ")),
      el("td", { class: "num", "data-testid": "requests" }, fmt(f ? f.requests : 0, 0)),
      el("td", { class: "num" }, fmt(minute ? minute.rps : 0, 2)),
      el("td", { class: "num", "data-testid": "p50" }, fmt(minute && minute.p50_ms, 2)),
      el("td", { class: "num" }, fmt(minute && minute.p90_ms, 2)),
      el("td", { class: "num" }, fmt(minute && minute.p99_ms, 2)),
      el("td", { class: "num", "data-testid": "client-errors" }, fmt(f ? f.client_errors : 0, 0)),
      el("td", { class: "num", "data-testid": "server-errors" }, fmt(f ? f.server_errors : 0, 0)),
      el("td", { class: "num" }, fmt(f && f.mean_batch_rows, 2)),
      el("td", { class: "num" }, percent(f && f.cache_hit_rate)),
      el("td", { class: "num", "data-testid": "feedback" }, fmt(m.feedback.total, 0)),
      el("td", { class: "num" }, rated ? percent(m.feedback.up / rated) : "–"));
  }));
  $("version-rows").replaceChildren(...models.flatMap(versionRows));
  chart("rps", models, (p) => p.rps);
  chart("p99", models, (p) => p.p99_ms);
}

function versionRows(m) {
  const shares = m.traffic.shares, served = (m.figures && m.figures.versions) || {};
  const feedback = m.feedback.versions || {};
  const numbers = [...new Set([...Object.keys(shares), ...Object.keys(served), ...Object.keys(feedback)])]
    .sort((a, b) => Number(a) - Number(b));
  return numbers.map((v) => {
    const f = served[v] || {}, fb = feedback[v] || { total: 0, up: 0, down: 0 }, rated = fb.up + fb.down;
    const role = v === m.traffic.shadow ? "shadow" : shares[v] !== undefined ? m.traffic.mode : "";
    return el("tr", { "data-version": `${m.name}:${v}` },
      el("td", {}, m.name), el("td", {}, v), el("td", {}, role),
      el("td", { class: "num", "data-testid": "share" }, shares[v] !== undefined ? `${fmt(shares[v], 0)}%` : "–"),
      el("td", { class: "num", "data-testid": "version-requests" }, fmt(f.requests || 0, 0)),
      el("td", { class: "num", "data-testid": "version-client-errors" }, fmt(f.client_errors || 0, 0)),
      el("td", { class: "num", "data-testid": "version-server-errors" }, fmt(f.server_errors || 0, 0)),
      el("td", { class: "num" }, ms(f.p95_ms)),
      el("td", { class: "num", "data-testid": "version-feedback" }, fmt(fb.total, 0)),
      el("td", { class: "num" }, rated ? percent(fb.up / rated) : "–"));
  });
}

function chart(id, models, value) {
  const W = 600, H = 180, L = 44, B = 20, T = 8;
  const series = models.map((m, i) => ({ name: m.name, color: COLORS[i % COLORS.length],
    points: ((m.figures && m.figures.series) || []).map((p) => [p.time, value(p)]) }));
  const all = series.flatMap((s) => s.points).filter(([, v]) => v !== null);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", id === "rps" ? "requests per second over time" : "p99 latency over time");
  const add = (tag, attrs, text) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  const now = Date.now() / 1000, t0 = now - 300;
  const top = Math.max(1e-9, ...all.map(([, v]) => v)) * 1.15;
  const x = (t) => L + (W - L - 4) * (t - t0) / 300, y = (v) => H - B - (H - B - T) * v / top;
  for (const frac of [0, 0.5, 1]) {
    add("line", { x1: L, x2: W - 4, y1: y(top * frac), y2: y(top * frac), stroke: "#e1e5eb" });
    add("text", { x: L - 6, y: y(top * frac) + 4, "text-anchor": "end", "font-size": 11, fill: "#5d6778" }, fmt(top * frac, 1));
  }
  for (const [label, t] of [["5 min ago", t0], ["now", now]]) {
    add("text", { x: x(t), y: H - 4, "text-anchor": t === now ? "end" : "start", "font-size": 11, fill: "#5d6778" }, label);
  }
  if (!all.length) add("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#5d6778", "font-size": 13 }, "no requests in the last 5 minutes");
  for (const s of series) {
    for (const run of runs(s.points.filter(([t]) => t >= t0))) {
      const at = run.map(([t, v]) => [x(t).toFixed(1), y(v).toFixed(1)]);
      if (at.length === 1) add("circle", { cx: at[0][0], cy: at[0][1], r: 2.5, fill: s.color, "data-model": s.name });
      else add("polyline", { points: at.map((p) => p.join(",")).join(" "), fill: "none", stroke: s.color,
        "stroke-width": 2, "data-model": s.name });
    }
  }
  $(`chart-${id}`).replaceChildren(svg);
  $(`legend-${id}`).replaceChildren(...series.map((s) => el("span", {}, el("i", { style: `background:${s.color}` }), s.name)));
}

// The stretches of a series that have values: a null point (an interval without requests) ends one.
function runs(points) {
  const found = [[]];
  for (const point of points) {
    if (point[1] !== null && point[1] !== undefined) found[found.length - 1].push(point);
    else if (found[found.length - 1].length) found.push([]);
  }
  return found.filter((run) => run.length);
}

function duration(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}
