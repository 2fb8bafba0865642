// Runs the exported model with onnxruntime-web, entirely in this page: nothing leaves the browser.
"use strict";

const TYPES = {
  float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, int8: Int8Array, int16: Int16Array, uint16: Uint16Array, bool: Uint8Array,
};

let session = null;
let manifest = null;

// The ONNX graph's own input types decide the tensor types (the manifest keeps the parent's).
async function tensorFor(name, rows) {
  const spec = manifest.signature.inputs.find((s) => s.name === name);
  const flat = rows.flat(Infinity);
  const shape = [rows.length, ...spec.shape.slice(1).map((d, i) => (d > 0 ? d : shapeOf(rows)[i + 1]))];
  const dtype = graphType(name) || spec.dtype;
  const Kind = TYPES[dtype];
  if (!Kind) throw new Error(`input ${name}: dtype ${dtype} is not supported in the browser`);
  const data = dtype === "int64" ? Kind.from(flat.map((v) => BigInt(Math.round(v)))) : Kind.from(flat);
  return new ort.Tensor(dtype, data, shape);
}

function shapeOf(value) {
  const shape = [];
  while (Array.isArray(value)) { shape.push(value.length); value = value[0]; }
  return shape;
}

function graphType(name) {
  const meta = session.inputMetadata && session.inputMetadata.find && session.inputMetadata.find((m) => m.name === name);
  const type = meta && meta.type;
  return type === "float16" ? "float32" : type;
}

function rowsOf(tensor) {
  const values = Array.from(tensor.data, (v) => (typeof v === "bigint" ? Number(v) : v));
  const dims = tensor.dims;
  if (dims.length <= 1) return values;
  const width = values.length / dims[0];
  return Array.from({ length: dims[0] }, (_, i) => values.slice(i * width, (i + 1) * width));
}

// inputs: {name: rows}; returns {output name: rows}, as the server's V2 answer would hold them.
async function palletPredict(inputs) {
  const feeds = {};
  for (const name of session.inputNames) {
    if (!(name in inputs)) throw new Error(`missing input '${name}'`);
    feeds[name] = await tensorFor(name, inputs[name]);
  }
  const results = await session.run(feeds);
  const outputs = {};
  for (const name of session.outputNames) outputs[name] = rowsOf(results[name]);
  return outputs;
}
window.palletPredict = palletPredict;

async function start() {
  const title = document.getElementById("title");
  try {
    manifest = await (await fetch("manifest.json")).json();
    ort.env.wasm.numThreads = 1;  // no cross-origin isolation needed
    ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href;
    session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
    const sample = await (await fetch("sample.json")).json();
    title.textContent = `${manifest.name}:${manifest.version}`;
    const model = manifest.files["model.onnx"].size;
    document.getElementById("facts").textContent = `${manifest.description} · model ${size(model)}, ` +
      `${size(manifest.size_bytes)} with its runtime · onnxruntime-web ${ort.env.versions.web}, offline`;
    document.getElementById("inputs").value = JSON.stringify(sample);
    const button = document.getElementById("predict");
    button.disabled = false;
    button.addEventListener("click", predictClicked);
    document.body.dataset.ready = "true";
  } catch (e) {
    title.textContent = "The model could not start";
    title.className = "error";
    document.getElementById("outputs").textContent = String(e);
    document.body.dataset.ready = "error";
  }
}

async function predictClicked() {
  const out = document.getElementById("outputs");
  try {
    const inputs = JSON.parse(document.getElementById("inputs").value);
    out.className = "";
    out.textContent = show(await palletPredict(inputs));
  } catch (e) {
    out.className = "error";
    out.textContent = String(e.message || e);
  }
}

function size(bytes) {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

// One line per row of each output, numbers to four significant digits.
function show(outputs) {
  const value = (v) => (typeof v === "number" && !Number.isInteger(v) ? Number(v.toPrecision(4)) : v);
  return Object.entries(outputs).map(([name, rows]) =>
    `${name}:\n` + rows.map((row, i) => `  ${i}: ${JSON.stringify(Array.isArray(row) ? row.map(value) : value(row))}`)
      .join("\n")).join("\n\n");
}

start();
