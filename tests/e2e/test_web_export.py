"""`pallet export --format web`: the page predicts in Chromium, offline, exactly as the server does."""

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest

from pallet.demo import train_demo_models
from pallet.export import export
from pallet.export.data import split
from pallet.model import load_runtime
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store
from tests.e2e.conftest import screenshot
from tests.serve.conftest import RunningServer

ROWS = split("digits", "test")[0][:40]


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("web") / "home")
    train_demo_models(store, torch_models=())
    out = tmp_path_factory.mktemp("site")
    ref, report = export(store, "digits", "web", out=out)
    static = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(out)))
    threading.Thread(target=static.serve_forever, daemon=True).start()
    with RunningServer(create_app(ServeConfig(models=["digits"], access_log=False), store)) as server:
        yield {"store": store, "ref": ref, "report": report, "out": out, "site": f"http://127.0.0.1:{static.server_port}",
               "server": server}
    static.shutdown()


def test_export_writes_the_page_the_model_and_the_runtime_and_stores_them(exported):
    out, version = exported["out"], exported["store"].resolve(exported["ref"])
    for name in ("index.html", "app.js", "model.onnx", "manifest.json", "sample.json", "ort/ort.wasm.min.js",
                 "ort/ort-wasm-simd-threaded.wasm"):
        assert (out / name).is_file(), name
    assert set(version.manifest.files) >= {"index.html", "model.onnx", "ort/ort-wasm-simd-threaded.wasm"}
    assert version.manifest.size_bytes > 5_000_000  # the WebAssembly runtime ships with the page
    assert exported["report"].structure["onnxruntime_web"] == "1.30.0"
    assert "cdn" not in (out / "index.html").read_text().lower() and "http" not in (out / "app.js").read_text()


def test_page_predicts_in_the_browser_exactly_as_the_server_does_and_never_leaves_127_0_0_1(exported, page):
    requested = []
    page.on("request", lambda request: requested.append(urlparse(request.url).hostname))
    page.goto(f"{exported['site']}/index.html")
    page.wait_for_selector("body[data-ready=true]")
    browser = page.evaluate("rows => palletPredict({input: rows})", ROWS.tolist())
    server = httpx.post(f"{exported['server'].url}/v2/models/digits/infer", json={"inputs": [
        {"name": "input", "datatype": "FP64", "shape": list(ROWS.shape), "data": ROWS.ravel().tolist()}]}).json()
    server = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in server["outputs"]}
    assert browser["label"] == server["label"].tolist()
    assert np.max(np.abs(np.array(browser["probabilities"]) - server["probabilities"])) < 1e-5
    assert set(requested) == {"127.0.0.1"}


def test_predict_button_shows_the_outputs_of_the_sample(exported, page):
    page.goto(f"{exported['site']}/index.html")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#title").inner_text() == str(exported["ref"])
    page.click("#predict")
    page.wait_for_function("document.querySelector('#outputs').textContent.includes('probabilities')")
    sample = load_runtime(exported["store"].resolve(exported["ref"])).predict(
        {"input": exported["store"].resolve(exported["ref"]).sample()["input"]})
    shown = page.locator("#outputs").inner_text()
    assert all(str(label) in shown for label in sample["label"].tolist())
    screenshot(page, "web-export")
    page.fill("#inputs", "{not json")
    page.click("#predict")
    assert page.locator("#outputs.error").is_visible()
