"""Device formats for real, each toolchain in its own environment (make edge, make tvm)."""

import json
import os

import numpy as np
import pytest

import pallet
from pallet.errors import NoRuntime, PalletError
from pallet.export import export
from pallet.export.data import split
from pallet.model import load_runtime
from pallet.nets import fit_classifier
from pallet.store import Store

pytestmark = pytest.mark.edge


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    for variable in ("PALLET_EDGE_PYTHON", "PALLET_TVM_PYTHON"):
        if not os.environ.get(variable):
            pytest.fail(f"{variable} is not set: run the suite with 'make test', which builds the toolchain "
                        "environments")
    store = Store(tmp_path_factory.mktemp("edge") / "home")
    x, y = split("digits", "train")
    x_test, _ = split("digits", "test")
    model = fit_classifier(x, y, list(range(10)), [32], epochs=10)
    pallet.save(model, "digits-torch", sample=x_test[:5].astype(np.float32), tags={"dataset": "sklearn:digits"}, store=store)
    return store


@pytest.mark.parametrize("target, runner", [("tflite", "ai-edge-litert"), ("executorch", "executorch"),
                                            ("tvm", "apache-tvm")])
def test_device_format_answers_like_its_parent_where_it_runs(store, target, runner):
    ref, report = export(store, "digits-torch", target)
    version = store.resolve(ref)
    assert report.parity.executed and runner in report.parity.runner
    assert report.parity.rows == 455 and report.parity.agreement == 1.0 and report.parity.max_abs_diff < 1e-4
    child = report.child
    assert child.size_bytes == version.manifest.size_bytes and child.p50_ms > 0 and child.rows_per_s > 0
    assert child.accuracy == report.figures[0].accuracy
    assert version.manifest.runtime == target and version.manifest.lineage["parent"] == "digits-torch:1"
    pinned = {"tflite": "ai-edge-litert", "executorch": "executorch", "tvm": "apache-tvm"}[target]
    assert pinned in version.manifest.packages  # the toolchain's version, read in its own environment
    assert version.signature == store.resolve("digits-torch").signature


def test_core_ml_is_checked_for_structure_and_says_it_was_not_executed(store, tmp_path):
    ref, report = export(store, "digits-torch", "coreml", out=tmp_path / "ios")
    assert not report.parity.executed and "only on macOS" in report.parity.runner
    assert report.parity.agreement is None and report.child.p50_ms is None
    assert report.structure["inputs"] == [{"name": "input", "dtype": "float32", "shape": [1, 64]}]
    assert [(o["name"], o["shape"]) for o in report.structure["outputs"]] == [("label", [1]),
                                                                             ("probabilities", [1, 10])]
    assert report.structure["kind"] == "mlProgram"
    assert (tmp_path / "ios" / "model.mlpackage" / "Manifest.json").is_file()
    manifest = json.loads((tmp_path / "ios" / "manifest.json").read_text())
    assert manifest["report"]["parity"]["executed"] is False and "coremltools" in manifest["packages"]
    with pytest.raises(NoRuntime, match="run only on macOS"):
        load_runtime(store.resolve(ref))


def test_device_formats_refuse_what_they_cannot_take(store, tmp_path):
    x, y = split("digits", "train")
    from sklearn.linear_model import LogisticRegression

    pallet.save(LogisticRegression(max_iter=500).fit(x, y), "digits-sk", sample=x[:3], store=store)
    with pytest.raises(PalletError, match="the tflite export takes torch models"):
        export(store, "digits-sk", "tflite")
    with pytest.raises(NoRuntime, match=r"LinearClassifier.*\(ai.onnx.ml\), which TVM's ONNX importer does not take"):
        export(store, "digits-sk", "tvm")


def test_a_missing_toolchain_environment_is_named(store, monkeypatch):
    monkeypatch.setenv("PALLET_TVM_PYTHON", "/nonexistent/python")
    with pytest.raises(NoRuntime, match="PALLET_TVM_PYTHON is /nonexistent/python, which does not exist: make tvm"):
        export(store, "digits-torch", "tvm", name="never")
