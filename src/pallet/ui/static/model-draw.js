// The prototype page's drawing pad for image inputs: draw or upload, and see what the model sees.
"use strict";

const PAD = 280;  // drawing canvas, pixels

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
