// How the prototype page shows a model's answer: a label by its class name, probability bars, a table
// for many rows, and for an embedding model the cosine similarity of its vectors with their first values.
"use strict";

const FIRST_VALUES = 8;   // of a long vector, the values shown
const LONG_ROW = 16;      // a row longer than this is shown by its first values

function reshape(flat, shape) {
  if (shape.length <= 1) return flat;
  const width = shape.slice(1).reduce((a, b) => a * b, 1);
  const rows = [];
  for (let i = 0; i < shape[0]; i++) rows.push(flat.slice(i * width, (i + 1) * width));
  return rows;
}

// A class value as people call it: its name when the model's classes have names.
function className(spec, value) {
  const key = String([value].flat()[0]);
  return spec.names && Object.hasOwn(spec.names, key) ? spec.names[key] : key;
}

// The elements that show `outputs` (name -> rows); `inputs` (name -> rows) label an embedding's rows.
function outputView(specs, outputs, inputs) {
  const embedding = specs.find((s) => s.kind === "embedding" && outputs[s.name]);
  if (embedding) return embeddingView(embedding, outputs[embedding.name], rowNames(inputs, outputs[embedding.name].length));
  const rows = Object.values(outputs)[0].length;
  return rows === 1 ? oneRow(specs, outputs) : manyRows(specs, outputs, rows);
}

function oneRow(specs, outputs) {
  const parts = [];
  for (const spec of specs) {
    const value = outputs[spec.name];
    if (value === undefined) continue;
    const row = value[0];
    if (spec.kind === "label") {
      parts.push(el("div", {}, el("div", { class: "muted small" }, spec.name),
        el("div", { class: "label-out", "data-testid": "label" }, className(spec, row))));
    } else if (spec.kind === "probabilities") {
      parts.push(bars(spec, row));
    } else {
      parts.push(el("div", {}, el("div", { class: "muted small" }, spec.name), el("pre", {}, rowText(row))));
    }
  }
  return parts;
}

function manyRows(specs, outputs, rows) {
  const shown = specs.filter((s) => outputs[s.name] !== undefined);
  const cell = (spec, i) => {
    const value = outputs[spec.name][i];
    if (spec.kind === "label") return el("td", {}, className(spec, value));
    if (spec.kind === "probabilities") return el("td", { class: "num" }, percent(Math.max(...value)));
    return el("td", { class: "mono" }, rowText(value));
  };
  const heading = (spec) => (spec.kind === "probabilities" ? el("th", { class: "num" }, "confidence")
    : el("th", {}, spec.name));
  const table = el("table", { "data-testid": "results" },
    el("thead", {}, el("tr", {}, el("th", { class: "num" }, "row"), shown.map(heading))),
    el("tbody", {}, Array.from({ length: rows }, (_, i) => el("tr", {},
      el("td", { class: "num" }, i + 1), shown.map((spec) => cell(spec, i))))));
  return [el("p", { class: "muted small" }, `${rows} rows`), el("div", { class: "scroll" }, table)];
}

function bars(spec, row) {
  const top = row.indexOf(Math.max(...row));
  const labels = (spec.labels || row.map((_, i) => i)).map((l) => className(spec, l));
  return el("div", { "data-testid": "probabilities" },
    el("div", { class: "muted small" }, spec.name),
    el("div", { class: "bars", role: "list" }, row.map((p, i) => [
      el("span", { class: "name" }, labels[i]),
      el("div", { role: "listitem", "aria-label": `${labels[i]}: ${percent(p)}` },
        el("div", { class: i === top ? "bar top" : "bar", style: `width:${Math.max(p * 100, 0.5)}%` })),
      el("span", { class: "value" }, percent(p)),
    ])));
}

// A row of values as text: all of a short one; the first values of a long one, and how many there are.
function rowText(row) {
  if (!Array.isArray(row)) return String(row);
  const flat = row.flat(Infinity);
  if (flat.length <= LONG_ROW) return JSON.stringify(row);
  return `${flat.slice(0, FIRST_VALUES).map(short).join("  ")}  … ${flat.length} values`;
}

function short(value) {
  return typeof value === "number" ? value.toFixed(3) : String(value);
}

// What to call each row: the lines of the (first) text input, else "row 1", "row 2", ...
function rowNames(inputs, count) {
  const text = Object.values(inputs || {}).find((rows) => rows.length === count && rows.every((r) => typeof [r].flat()[0] === "string"));
  return Array.from({ length: count }, (_, i) => (text ? String([text[i]].flat()[0]) : `row ${i + 1}`));
}

// -- embeddings -------------------------------------------------------------------------------

function cosineMatrix(vectors) {
  const norms = vectors.map((v) => Math.sqrt(v.reduce((sum, x) => sum + x * x, 0)));
  return vectors.map((a, i) => vectors.map((b, j) => {
    if (!norms[i] || !norms[j]) return 0;
    let dot = 0;
    for (let k = 0; k < a.length; k++) dot += a[k] * b[k];
    return dot / (norms[i] * norms[j]);
  }));
}

function embeddingView(spec, vectors, names) {
  const dims = vectors[0].length;
  const parts = [];
  if (vectors.length > 1) {
    parts.push(heatmap(cosineMatrix(vectors), names));
  } else {
    parts.push(el("p", { class: "muted small" }, "Enter two or more lines to compare them."));
  }
  parts.push(el("div", { "data-testid": "vectors" },
    el("div", { class: "muted small" }, `${spec.name}: the first ${Math.min(FIRST_VALUES, dims)} of ${dims} values`),
    el("ol", { class: "vectors" }, vectors.map((v, i) => el("li", {},
      el("span", { class: "name", title: names[i] }, names[i]),
      el("code", {}, v.slice(0, FIRST_VALUES).map(short).join("  ")),
      el("span", { class: "muted small" }, ` … ${dims} dims`))))));
  return parts;
}

function heatmap(matrix, names) {
  const shade = (v) => {
    const t = Math.min(Math.max(v, 0), 1);
    return `background:hsl(220 75% ${Math.round(97 - 52 * t)}%);color:${t > 0.55 ? "#fff" : "var(--ink)"}`;
  };
  const label = (tag, name, attrs = {}) => el(tag, { class: "name", title: name, scope: attrs.scope }, name);
  return el("div", {},
    el("div", { class: "muted small" }, "cosine similarity (1: same meaning, 0: unrelated)"),
    el("div", { class: "scroll" }, el("table", { class: "heatmap", "data-testid": "similarity" },
      el("thead", {}, el("tr", {}, el("th", {}), names.map((n) => label("th", n, { scope: "col" })))),
      el("tbody", {}, matrix.map((row, i) => el("tr", {}, label("th", names[i], { scope: "row" }),
        row.map((v, j) => el("td", { class: "num", style: shade(v), "data-value": v.toFixed(4),
          "aria-label": `${names[i]} / ${names[j]}: ${v.toFixed(2)}` }, v.toFixed(2)))))))));
}
