// The prototype page: built from the model's signature (GET /ui/api/models/NAME), calling the V2 API.
"use strict";

const DATATYPES = { bool: "BOOL", int8: "INT8", int16: "INT16", int32: "INT32", int64: "INT64",
  uint8: "UINT8", uint16: "UINT16", uint32: "UINT32", uint64: "UINT64", float16: "FP16",
  float32: "FP32", float64: "FP64", str: "BYTES", bytes: "BYTES" };
const PAD = 280;             // drawing canvas, pixels
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
  panels.push(el("div", { id: "panel-values", role: "tabpanel" }, d.inputs.map(valuesField)));
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

function drawPanel(spec) {
  const pad = el("canvas", { class: "pad", id: "pad", width: PAD, height: PAD, tabindex: "0",
    "aria-label": `drawing area for ${spec.name}; draw with the mouse, a pen or a finger` });
  const preview = el("canvas", { class: "preview", id: "preview", width: spec.image.width, height: spec.image.height,
    "aria-label": "what the model sees" });
  const upload = el("input", { type: "file", accept: "image/*", id: "upload", class: "hidden",
    onchange: (e) => e.target.files[0] && uploadImage(e.target.files[0]) });
  clearPad(pad);
  let drawing = false;
  const point = (e) => {
    const box = pad.getBoundingClientRect();
    return [(e.clientX - box.left) * PAD / box.width, (e.clientY - box.top) * PAD / box.height];
  };
  const ctx = pad.getContext("2d");
  pad.addEventListener("pointerdown", (e) => {
    drawing = true; state.imageValues = null; pad.setPointerCapture(e.pointerId);
    ctx.beginPath(); ctx.moveTo(...point(e)); ctx.lineTo(...point(e)); ctx.stroke();
  });
  pad.addEventListener("pointermove", (e) => { if (drawing) { ctx.lineTo(...point(e)); ctx.stroke(); } });
  const stop = () => { if (drawing) { drawing = false; updatePreview(); } };
  pad.addEventListener("pointerup", stop);
  pad.addEventListener("pointercancel", stop);
  return el("div", { id: "panel-draw", role: "tabpanel" },
    el("div", { class: "draw" }, pad,
      el("div", {}, el("label", {}, `what the model sees (${spec.image.width}×${spec.image.height})`), preview,
        el("div", { class: "actions" },
          el("button", { type: "button", id: "clear-pad", onclick: () => { clearPad(pad); state.imageValues = null; updatePreview(); } }, "Clear drawing"),
          el("button", { type: "button", id: "upload-button", onclick: () => upload.click() }, "Upload image"), upload))));
}

function clearPad(pad) {
  const ctx = pad.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, PAD, PAD);
  ctx.strokeStyle = "#000"; ctx.lineWidth = PAD / 12; ctx.lineCap = "round"; ctx.lineJoin = "round";
}

function uploadImage(file) {
  const image = new Image();
  image.onload = () => {
    const pad = $("pad"), ctx = pad.getContext("2d");
    clearPad(pad);
    const scale = Math.min(PAD / image.width, PAD / image.height);
    const w = image.width * scale, h = image.height * scale;
    ctx.drawImage(image, (PAD - w) / 2, (PAD - h) / 2, w, h);
    state.imageValues = null;
    URL.revokeObjectURL(image.src);
    updatePreview();
  };
  image.onerror = () => showError(`${file.name} is not an image this browser can read`);
  image.src = URL.createObjectURL(file);
}

// The drawing as the model's input: the ink's bounding box, made square, averaged into H×W cells
// and scaled to the range of the model's sample (0..16 for the digits set).
function padValues(spec) {
  if (state.imageValues) return state.imageValues;
  const { width: W, height: H, channels: C } = spec.image;
  const lo = spec.min ?? 0, hi = spec.max ?? 1;
  const data = $("pad").getContext("2d").getImageData(0, 0, PAD, PAD).data;
  const lum = new Float32Array(PAD * PAD);
  for (let i = 0; i < lum.length; i++) lum[i] = (data[4 * i] * 0.299 + data[4 * i + 1] * 0.587 + data[4 * i + 2] * 0.114) / 255;
  let border = 0;
  for (let i = 0; i < PAD; i++) border += lum[i] + lum[(PAD - 1) * PAD + i] + lum[i * PAD] + lum[i * PAD + PAD - 1];
  const darkBackground = border / (4 * PAD) < 0.5;
  const ink = lum.map((v) => (darkBackground ? v : 1 - v));
  let x0 = PAD, y0 = PAD, x1 = -1, y1 = -1;
  for (let y = 0; y < PAD; y++) for (let x = 0; x < PAD; x++) if (ink[y * PAD + x] > 0.2) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const values = [];
  if (x1 < 0) return new Array(W * H * C).fill(lo);
  const side = Math.max(x1 - x0, y1 - y0) + 1, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const left = cx - side / 2, top = cy - side / 2;
  let peak = 0;
  const cells = [];
  for (let r = 0; r < H; r++) for (let c = 0; c < W; c++) {
    let sum = 0, count = 0;
    const ya = Math.floor(top + r * side / H), yb = Math.floor(top + (r + 1) * side / H);
    const xa = Math.floor(left + c * side / W), xb = Math.floor(left + (c + 1) * side / W);
    for (let y = ya; y < Math.max(yb, ya + 1); y++) for (let x = xa; x < Math.max(xb, xa + 1); x++) {
      count++;
      if (y >= 0 && y < PAD && x >= 0 && x < PAD) sum += ink[y * PAD + x];
    }
    const v = sum / count;
    cells.push(v);
    peak = Math.max(peak, v);
  }
  const integral = Number.isInteger(lo) && Number.isInteger(hi) && hi - lo > 1;
  for (const v of cells) {
    let scaled = lo + (hi - lo) * (peak ? v / peak : 0);
    if (integral) scaled = Math.round(scaled);
    for (let k = 0; k < C; k++) values.push(scaled);
  }
  return values;
}

function updatePreview() {
  const spec = imageInput();
  if (!spec) return;
  const values = padValues(spec);
  paint($("preview"), spec, values);
  setFields(spec, values);
}

// Paint values on a canvas of the image's size, ink dark on white (or scaled up to the pad).
function paint(canvas, spec, values) {
  const { width: W, height: H, channels: C } = spec.image;
  const lo = spec.min ?? 0, hi = spec.max ?? 1;
  const ctx = canvas.getContext("2d");
  const cw = canvas.width / W, ch = canvas.height / H;
  for (let r = 0; r < H; r++) for (let c = 0; c < W; c++) {
    const v = values[(r * W + c) * C];
    const shade = Math.round(255 * (1 - Math.min(Math.max((v - lo) / ((hi - lo) || 1), 0), 1)));
    ctx.fillStyle = `rgb(${shade},${shade},${shade})`;
    ctx.fillRect(c * cw, r * ch, cw + 0.5, ch + 0.5);
  }
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
  try { inputs = collect(); } catch (error) { showError(error.message); return; }
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
    renderOutputs(outputs);
    $("meta").textContent = `${latency.toFixed(1)} ms round trip · version ${state.last.version} · request ${state.last.requestId}`;
    resetFeedback();
  } catch (error) {
    showError(error.message);
  } finally {
    $("predict").disabled = false;
  }
}

function reshape(flat, shape) {
  if (shape.length <= 1) return flat;
  const width = shape.slice(1).reduce((a, b) => a * b, 1);
  const rows = [];
  for (let i = 0; i < shape[0]; i++) rows.push(flat.slice(i * width, (i + 1) * width));
  return rows;
}

function renderOutputs(outputs) {
  const specs = state.desc.outputs;
  const rows = Object.values(outputs)[0].length;
  const out = $("output");
  if (rows === 1) {
    const parts = [];
    for (const spec of specs) {
      const value = outputs[spec.name];
      if (value === undefined) continue;
      const row = value[0];
      if (spec.kind === "label") {
        parts.push(el("div", {}, el("div", { class: "muted small" }, spec.name),
          el("div", { class: "label-out", "data-testid": "label" }, String([row].flat()[0]))));
      } else if (spec.kind === "probabilities") {
        parts.push(bars(spec, row));
      } else {
        parts.push(el("div", {}, el("div", { class: "muted small" }, spec.name), el("pre", {}, JSON.stringify(row))));
      }
    }
    out.replaceChildren(...parts);
    return;
  }
  const label = specs.find((s) => s.kind === "label" && outputs[s.name]);
  const probs = specs.find((s) => s.kind === "probabilities" && outputs[s.name]);
  const table = el("table", { "data-testid": "results" },
    el("thead", {}, el("tr", {}, el("th", { class: "num" }, "row"), label ? el("th", {}, label.name) : null,
      probs ? el("th", { class: "num" }, "confidence") : null)),
    el("tbody", {}, Array.from({ length: rows }, (_, i) => el("tr", {},
      el("td", { class: "num" }, i + 1),
      label ? el("td", {}, String([outputs[label.name][i]].flat()[0])) : null,
      probs ? el("td", { class: "num" }, percent(Math.max(...outputs[probs.name][i]))) : null))));
  out.replaceChildren(el("p", { class: "muted small" }, `${rows} rows`), el("div", { class: "scroll" }, table));
}

function bars(spec, row) {
  const top = row.indexOf(Math.max(...row));
  const labels = spec.labels || row.map((_, i) => i);  // classes unknown until the answer: their positions
  return el("div", { "data-testid": "probabilities" },
    el("div", { class: "muted small" }, spec.name),
    el("div", { class: "bars", role: "list" }, row.map((p, i) => [
      el("span", { class: "name" }, String(labels[i])),
      el("div", { role: "listitem", "aria-label": `${labels[i]}: ${percent(p)}` },
        el("div", { class: i === top ? "bar top" : "bar", style: `width:${Math.max(p * 100, 0.5)}%` })),
      el("span", { class: "value" }, percent(p)),
    ])));
}

// -- feedback ---------------------------------------------------------------------------------

function resetFeedback() {
  state.rating = null;
  $("thumbs-up").setAttribute("aria-pressed", "false");
  $("thumbs-down").setAttribute("aria-pressed", "false");
  $("correct").value = ""; $("comment").value = ""; $("feedback-status").textContent = "";
  const probs = state.desc.outputs.find((s) => s.kind === "probabilities");
  $("answers").replaceChildren(...(probs ? (probs.labels || []).map((l) => el("option", { value: String(l) })) : []));
  $("feedback").classList.remove("hidden");
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
        correct: $("correct").value || null, comment: $("comment").value || null },
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
