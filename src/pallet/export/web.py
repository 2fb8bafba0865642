"""A static page that predicts in the browser: the ONNX form, onnxruntime-web, and a page.

onnxruntime-web comes from the npm registry when the export is built (cached under
~/.cache/pallet), never from a CDN when the page runs, so the folder works offline
behind any static web server. The page reads the version's manifest.json for the
signature and the sample, and exposes `palletPredict(inputs)` to scripts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pallet.errors import PalletError
from pallet.export.base import Converted, Target
from pallet.export.onnx import FILE, describe_onnx, needs_more_than_a_graph, onnx_form
from pallet.runtimes.base import Runtime
from pallet.store import ModelVersion

ORT_WEB_VERSION = "1.30.0"
# The single-threaded-capable wasm build: works without cross-origin isolation headers.
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
STATIC = Path(__file__).parent / "web_static"


class WebTarget(Target):
    name = "web"
    suffix = "web"
    description = "a static web page running the ONNX form with onnxruntime-web (WebAssembly), offline"

    def convert(self, parent: ModelVersion, runtime: Runtime, folder: Path) -> Converted:
        converted = onnx_form(parent, runtime, folder)
        ort = onnxruntime_web()
        (folder / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copyfile(ort / name, folder / "ort" / name)
        for page in STATIC.iterdir():
            shutil.copyfile(page, folder / page.name)
        sample = {name: value.tolist() for name, value in parent.sample().items()}
        (folder / "sample.json").write_text(json.dumps(sample) + "\n")
        converted.notes.append(f"the page runs onnxruntime-web {ORT_WEB_VERSION} (WebAssembly); serve the folder "
                               "with any static web server, e.g. python -m http.server -d DIR")
        return converted

    def refuses(self, version: ModelVersion) -> str | None:
        return needs_more_than_a_graph(version, self.name)

    def describe(self, folder: Path, converted: Converted) -> dict[str, Any]:
        return {**describe_onnx(folder / FILE), "onnxruntime_web": ORT_WEB_VERSION,
                **super().describe(folder, converted)}


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pallet"


def onnxruntime_web() -> Path:
    """The folder of onnxruntime-web's dist files, installed from the npm registry on first use."""
    root = cache_dir() / f"onnxruntime-web-{ORT_WEB_VERSION}"
    dist = root / "node_modules" / "onnxruntime-web" / "dist"
    if all((dist / name).is_file() for name in ORT_FILES):
        return dist
    npm = shutil.which("npm")
    if npm is None:
        raise PalletError("a web export needs npm, to install onnxruntime-web from the npm registry once "
                          "(apt-get install npm)")
    root.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(root),
                                 f"onnxruntime-web@{ORT_WEB_VERSION}"], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise PalletError(f"npm took over 10 minutes to install onnxruntime-web {ORT_WEB_VERSION}") from None
    if result.returncode != 0 or not all((dist / name).is_file() for name in ORT_FILES):
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PalletError(f"npm could not install onnxruntime-web {ORT_WEB_VERSION}: {last}")
    return dist
