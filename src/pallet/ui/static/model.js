// The prototype page: built from the model's signature (GET /ui/api/models/NAME), calling the V2 API.
"use strict";

const DATATYPES = { bool: "BOOL", int8: "INT8", int16: "INT16", int32: "INT32", int64: "INT64",
  uint8: "UINT8", uint16: "UINT16", uint32: "UINT32", uint64: "UINT64", float16: "FP16",
  float32: "FP32", float64: "FP64", str: "BYTES", bytes: "BYTES" };
const MAX_FIELDS = 1024;     // past this, a tensor is entered as JSON rather than one field per value

const name = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const state = { desc: null, mode: "values", sample: 0, imageValues: null, last: null, rating: null };
const $ = (id) => document.getElementById(id);
const features = (spec) => spec.shape.slice(1).reduce((a, b) => a * Math.max(b, 1), 1);
const imageInput = () => state.desc.inputs.find((s) => s.kind === "image");

document.body.prepend(header());
load(new URLSearchParams(location.search).get("version"));

async function load(version) {
  state.pinned = Boolean(version);  // no version chosen: the server's traffic policy picks one per request
  try {
    const query = version ? `?version=${encodeURIComponent(version)}` : "";
    state.desc = (await api(`/ui/api/models/${encodeURIComponent(name)}${query}`)).body;
  } catch (error) {
    showError(error.message);
    return;
  }
  document.title = `pallet: ${name}`;
  renderTitle();
  renderInputs();
  fillSample(0);
}

function renderTitle() {
  const d = state.desc;
  const select = el("select", { id: "version", "aria-label": "version", onchange: (e) => load(e.target.value) },
    d.versions.map((v) => el("option", { value: v, selected: v === d.version }, `version ${v}`)));
  $("title").replaceChildren(
    el("h1", {}, d.name),
    el("p", { class: "muted" }, d.description || `${d.framework} model`),
    el("div", { class: "badges" }, el("span", { class: "badge" }, d.framework), metricBadges(d.metrics),
      d.versions.length > 1 ? select : el("span", { class: "badge" }, `version ${d.version}`)));
}

// -- inputs -----------------------------------------------------------------------------------

function renderInputs() {
  const d = state.desc;
  const modes = [];
  if (imageInput()) modes.push(["draw", "Draw or upload"]);
  modes.push(["values", "Values"]);
  if (d.inputs.length === 1 && d.inputs[0].kind !== "text") modes.push(["table", "Table (many rows)"]);
  $("tabs").replaceChildren(...modes.map(([id, text]) => el("button", {
    type: "button", role: "tab", id: `tab-${id}`, "aria-controls": `panel-${id}`, onclick: () => selectMode(id),
  }, text)));
  const panels = [];
  if (imageInput()) panels.push(drawPanel(imageInput()));
  panels.push(el("div", { id: "panel-values", role: "tabpanel" }, valueFields(d.inputs)));
  if (modes.some(([id]) => id === "table")) panels.push(tablePanel(d.inputs[0]));
  $("panels").replaceChildren(...panels);
  selectMode(modes[0][0]);
}

function selectMode(mode) {
  state.mode = mode;
  for (const tab of $("tabs").children) tab.setAttribute("aria-selected", String(tab.id === `tab-${mode}`));
  for (const panel of $("panels").children) panel.classList.toggle("hidden", panel.id !== `panel-${mode}`);
  // Other inputs of a multi-input model stay visible under the drawing.
  if (mode === "draw" && state.desc.inputs.length > 1) {
    $("panel-values").classList.remove("hidden");
    document.querySelector(`[data-input="${CSS.escape(imageInput().name)}"]`).classList.add("hidden");
  } else {
    document.querySelectorAll("[data-input]").forEach((n) => n.classList.remove("hidden"));
  }
}

// One number per row (a named column): one field under its name, side by side with the next such inputs.
const oneNumber = (spec) => spec.kind === "numbers" && spec.shape.length === 1;

function valueFields(inputs) {
  const nodes = [];
  let columns = null;
  for (const spec of inputs) {
    if (!oneNumber(spec)) { columns = null; nodes.push(valuesField(spec)); continue; }
    if (!columns) nodes.push(columns = el("div", { class: "fields" }));
    const id = `in-${spec.name}-0`;
    columns.append(el("div", { "data-input": spec.name },
      el("label", { for: id, title: `${spec.name} · ${spec.dtype}` }, spec.name),
      el("input", { type: "number", step: "any", inputmode: "decimal", id })));
  }
  return nodes;
}

function valuesField(spec) {
  const id = `in-${spec.name}`;
  const what = `${spec.name} · ${spec.dtype}[${spec.shape.join(", ")}]`;
  if (spec.kind === "text") {
    return el("div", { "data-input": spec.name },
      el("label", { for: id }, `${what} — one row per line`),
      el("textarea", { id, "data-testid": `text-${spec.name}` }));
  }
  const n = features(spec);
  if (n > MAX_FIELDS) {
    return el("div", { "data-input": spec.name },
      el("label", { for: id }, `${what} — one row as JSON`), el("textarea", { id }));
  }
  const cols = spec.image ? spec.image.width * spec.image.channels : 0;
  const fields = el("div", { class: cols ? "fields image" : "fields", style: cols ? `--cols:${cols}` : null });
  for (let i = 0; i < n; i++) {
    const label = spec.labels ? String(spec.labels[i]) : `${spec.name}[${i}]`;
    const input = el("input", { type: "number", step: "any", inputmode: "decimal", id: `${id}-${i}`,
      "aria-label": label, title: label });
    fields.append(cols ? input : el("div", {}, el("label", { for: `${id}-${i}` }, label), input));
  }
  return el("div", { "data-input": spec.name }, el("label", {}, what), fields);
}

function tablePanel(spec) {
  return el("div", { id: "panel-table", role: "tabpanel" },
    el("label", { for: "table" }, `Paste rows: CSV or tab-separated, ${features(spec)} values per row, one row per line ` +
      "(a header line is skipped)"),
    el("textarea", { id: "table", "data-testid": "table", rows: 8 }));
}

function setFields(spec, flat) {
  flat.forEach((v, i) => { const f = $(`in-${spec.name}-${i}`); if (f) f.value = v; });
}

function fillSample(index) {
  const d = state.desc;
  for (const spec of d.inputs) {
    if (!spec.sample || !spec.sample.length) continue;
    const row = spec.sample[index % spec.sample.length];
    if (spec.kind === "text") {  // with other inputs beside it, one row like theirs
      $(`in-${spec.name}`).value = d.inputs.length > 1 ? String(row) : spec.sample.join("\n");
      continue;
    }
    const flat = [row].flat(Infinity);
    if (features(spec) > MAX_FIELDS) $(`in-${spec.name}`).value = JSON.stringify(row);
    else setFields(spec, flat);
    if (spec.kind === "image") {
      state.imageValues = flat;
      paint($("pad"), spec, flat);
      paint($("preview"), spec, flat);
    }
  }
  if ($("table") && d.inputs[0].sample) $("table").value = d.inputs[0].sample.map((r) => [r].flat(Infinity).join(",")).join("\n");
}

function parseCell(text) {
  const t = text.trim();
  if (t === "") return null;  // a missing value: the server says so, naming the row and column
  return !Number.isNaN(Number(t)) ? Number(t) : t;  // the server names what does not fit
}

function splitLine(line) {
  for (const separator of ["\t", ",", ";"]) if (line.includes(separator)) return line.split(separator);
  return line.trim().split(/\s+/);
}

function collect() {
  const d = state.desc;
  const inputs = {};
  if (state.mode === "table") {
    const lines = $("table").value.split(/\r?\n/).filter((l) => l.trim());
    let rows = lines.map((l) => splitLine(l).map(parseCell));
    if (rows[0].every((c) => typeof c !== "number")) rows = rows.slice(1);  // a header: no numbers in it
    if (!rows.length) throw new Error("paste at least one row into the table");
    inputs[d.inputs[0].name] = rows;
    return inputs;
  }
  for (const spec of d.inputs) {
    if (spec.kind === "text") {
      const lines = $(`in-${spec.name}`).value.split(/\r?\n/).filter((l) => l !== "");
      if (!lines.length) throw new Error(`type at least one line of text for '${spec.name}'`);
      inputs[spec.name] = spec.shape.length > 1 ? lines.map((l) => [l]) : lines;
    } else if (spec.kind === "image" && state.mode === "draw") {
      inputs[spec.name] = [padValues(spec)];
    } else if (features(spec) > MAX_FIELDS) {
      try { inputs[spec.name] = [JSON.parse($(`in-${spec.name}`).value)]; }
      catch { throw new Error(`'${spec.name}' must be one row as JSON`); }
    } else {
      const row = [];
      for (let i = 0; i < features(spec); i++) row.push(parseCell($(`in-${spec.name}-${i}`).value));
      inputs[spec.name] = [row];
    }
  }
  return inputs;
}

const TRUE = new Set([true, 1, "1", "true", "True"]), FALSE = new Set([false, 0, "0", "false", "False"]);

function toV2(inputs) {
  return {
    inputs: state.desc.inputs.map((spec) => {
      const rows = inputs[spec.name];
      let flat = rows.flat(Infinity);
      if (spec.dtype === "bool") flat = flat.map((v) => (TRUE.has(v) ? true : FALSE.has(v) ? false : v));
      const perRow = features(spec);
      const dims = spec.shape.slice(1).map((d) => (d > 0 ? d : perRow));
      const shape = spec.shape.length === 1 ? [rows.length] : [rows.length, ...dims];
      if (spec.shape.length === 2 && Array.isArray(rows[0])) shape[1] = rows[0].length;  // the server checks widths
      return { name: spec.name, shape, datatype: DATATYPES[spec.dtype], data: flat };
    }),
  };
}

// The rows of one V2 tensor, nested by its shape (what feedback stores as the inputs).
function nest(flat, shape) {
  if (shape.length <= 1) return flat;
  const width = shape.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: shape[0] }, (_, i) => nest(flat.slice(i * width, (i + 1) * width), shape.slice(1)));
}

// -- prediction -------------------------------------------------------------------------------

async function predict(event) {
  if (event) event.preventDefault();
  hideError();
  let inputs;
  try { inputs = collect(); } catch (error) { clearPrediction(); showError(error.message); return; }
  const d = state.desc;
  $("predict").disabled = true;
  const started = performance.now();
  try {
    const request = toV2(inputs);
    const path = state.pinned ? `/versions/${encodeURIComponent(d.version)}/infer` : "/infer";
    const { body, response } = await api(`/v2/models/${encodeURIComponent(d.name)}${path}`, { json: request });
    inputs = Object.fromEntries(request.inputs.map((t) => [t.name, nest(t.data, t.shape)]));
    const latency = performance.now() - started;
    const outputs = {};
    for (const out of body.outputs) outputs[out.name] = reshape(out.data, out.shape);
    state.last = { requestId: response.headers.get("x-request-id"), version: body.model_version || d.version, inputs, outputs };
    $("output").replaceChildren(...outputView(d.outputs, outputs, inputs));
    $("meta").textContent = `${latency.toFixed(1)} ms round trip · version ${state.last.version} · request ${state.last.requestId}`;
    resetFeedback();
  } catch (error) {
    clearPrediction();  // an answer left beside a rejected input would look like its answer
    showError(error.message);
  } finally {
    $("predict").disabled = false;
  }
}

// -- feedback ---------------------------------------------------------------------------------

function clearPrediction() {
  state.last = null;
  $("output").replaceChildren(el("p", { class: "muted" }, "No prediction for this input."));
  $("meta").textContent = "";
  $("feedback").classList.add("hidden");
}

// A correct answer is asked of models that answer with a label or classes; of others (an embedding),
// only a rating and a comment.
function resetFeedback() {
  state.rating = null;
  $("thumbs-up").setAttribute("aria-pressed", "false");
  $("thumbs-down").setAttribute("aria-pressed", "false");
  $("correct").value = ""; $("comment").value = ""; $("feedback-status").textContent = "";
  const outputs = state.desc.outputs;
  const probs = outputs.find((s) => s.kind === "probabilities");
  $("answers").replaceChildren(...(probs ? (probs.labels || []).map((l) => el("option", { value: className(probs, l) })) : []));
  $("correct-field").classList.toggle("hidden", !outputs.some((s) => s.kind === "label" || s.kind === "probabilities"));
  $("feedback").classList.remove("hidden");
}

// A class name typed as the correct answer is stored as the class value, as the model answers.
function classValue(text) {
  for (const spec of state.desc.outputs) {
    const found = Object.entries(spec.names || {}).find(([, name]) => name === text.trim());
    if (found) return found[0];
  }
  return text;
}

function rate(rating) {
  state.rating = state.rating === rating ? null : rating;
  $("thumbs-up").setAttribute("aria-pressed", String(state.rating === "up"));
  $("thumbs-down").setAttribute("aria-pressed", String(state.rating === "down"));
}

async function sendFeedback(event) {
  event.preventDefault();
  const last = state.last;
  if (!last) return;
  const status = $("feedback-status");
  try {
    const { body } = await api(`/v2/models/${encodeURIComponent(state.desc.name)}/versions/${last.version}/feedback`, {
      json: { request_id: last.requestId, inputs: last.inputs, outputs: last.outputs, rating: state.rating,
        correct: $("correct-field").classList.contains("hidden") ? null : classValue($("correct").value) || null, comment: $("comment").value || null },
    });
    status.className = "small ok";
    status.textContent = `Thanks: saved as feedback #${body.id}`;
  } catch (error) {
    status.className = "small";
    status.textContent = "";
    showError(error.message);
  }
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.classList.remove("hidden");
}

function hideError() { $("error").classList.add("hidden"); }

$("form").addEventListener("submit", predict);
$("random").addEventListener("click", () => {
  const count = Math.max(...state.desc.inputs.map((s) => (s.sample || []).length), 1);
  let next = Math.floor(Math.random() * count);
  if (count > 1 && next === state.sample) next = (next + 1) % count;
  state.sample = next;
  fillSample(next);
  predict();
});
$("clear").addEventListener("click", () => {
  document.querySelectorAll("#panels input, #panels textarea").forEach((f) => { f.value = ""; });
  if ($("pad")) { clearPad($("pad")); state.imageValues = null; updatePreview(); }
  hideError();
});
$("thumbs-up").addEventListener("click", () => rate("up"));
$("thumbs-down").addEventListener("click", () => rate("down"));
$("feedback").addEventListener("submit", sendFeedback);
