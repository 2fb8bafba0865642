"""Exports and optimizations for real, on small models: parity, sizes, lineage, budgets, the CLI."""

import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pallet import save
from pallet.cli import app
from pallet.errors import NoRuntime
from pallet.export import Budget, ExportRefused, export
from pallet.export.data import split
from pallet.export.optimize import distill, quantize
from pallet.model import load_runtime
from pallet.nets import fit_classifier
from pallet.store import Store

PALLET = os.path.join(os.path.dirname(sys.executable), "pallet")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("export") / "home")
    x, y = split("digits", "train")
    x_test, _ = split("digits", "test")
    sklearn_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
    save(sklearn_model, "digits", sample=x_test[:5], tags={"dataset": "sklearn:digits"}, store=store)
    torch_model = fit_classifier(x, y, list(range(10)), [128], epochs=15)
    save(torch_model, "digits-torch", sample=x_test[:5].astype(np.float32), tags={"dataset": "sklearn:digits"}, store=store)
    return store


def pallet(store, *args):
    env = {k: v for k, v in os.environ.items() if k != "PALLET_DB_URL"}
    return subprocess.run([PALLET, *args], env={**env, "PALLET_HOME": str(store.home)}, capture_output=True,
                          text=True, timeout=300)


def cli(store, monkeypatch, *args):
    """The same command through typer's runner, in this process: for checks of its error line."""
    monkeypatch.setenv("PALLET_HOME", str(store.home))
    monkeypatch.delenv("PALLET_DB_URL", raising=False)
    return CliRunner().invoke(app, list(args))


def test_torch_module_round_trips_with_its_code_and_constructor_arguments(store):
    version = store.resolve("digits-torch")
    assert set(version.manifest.files) >= {"code/nets.py", "init.json", "weights.pt"}
    assert json.loads((version.path / "init.json").read_text())["hidden"] == [128]
    runtime = load_runtime(version)
    x_test, y_test = split("digits", "test")
    out = runtime.predict({"input": x_test.astype(np.float32)})
    assert out["probabilities"].shape == (450, 10) and (out["label"] == y_test).mean() > 0.9
    assert version.signature.outputs[1].labels == list(range(10))


def test_torch_export_program_is_stored_without_source_and_batches_when_its_batch_axis_is_free(tmp_path, store):
    module = load_runtime(store.resolve("digits-torch")).module
    x = torch.zeros((3, 64))
    free = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    fixed = torch.export.export(module, (x,))
    other = Store(tmp_path / "home")
    free_version = other.resolve(save(free, "free", sample=np.zeros((3, 64), np.float32), store=other))
    assert list(free_version.manifest.files) == ["model.pt2", "sample.npz"]
    assert load_runtime(free_version).batchable
    fixed_runtime = load_runtime(other.resolve(save(fixed, "fixed", sample=np.zeros((3, 64), np.float32), store=other)))
    assert not fixed_runtime.batchable


def imported_code() -> list[str]:
    """The modules stored versions' code was imported as (see pallet.runtimes.source)."""
    return sorted(name for name in sys.modules if name.startswith("pallet_models."))


def test_a_parent_and_a_conversion_release_the_code_they_loaded(store):
    from pallet.errors import PalletError
    from pallet.export.derive import Parent
    from pallet.export.worker import closing_loaded_runtimes, torch_module

    before = imported_code()
    with Parent.open(store, "digits-torch", None) as parent:
        assert any(name.endswith(".nets") for name in set(imported_code()) - set(before))
        assert parent.answers["probabilities"].shape[1] == 10
    assert imported_code() == before
    Parent.open(store, "digits-torch", None)  # a parent no one holds any more releases its runtime too
    assert imported_code() == before
    export(store, "digits-torch", "onnx", name="released-onnx")
    assert imported_code() == before

    version = store.resolve("digits-torch")
    with closing_loaded_runtimes():
        module, args, inputs, names = torch_module(version.path)
        assert any(name.endswith(".nets") for name in set(imported_code()) - set(before))
    assert imported_code() == before
    assert module(*args)[names[0]].shape[0] == 1 and inputs == ["input"]  # what it made outlives the runtime
    with pytest.raises(PalletError, match="inside closing_loaded_runtimes"):
        torch_module(version.path)
    assert imported_code() == before


def test_a_module_whose_constructor_argument_cannot_be_read_back_is_refused_with_the_fix(tmp_path):
    from tests.integration.torch_modules import Forgetful

    with pytest.raises(NoRuntime, match=r"takes 'width'.*self\.width"):
        save(Forgetful(8), "forgetful", sample=np.zeros((2, 8), np.float32), store=Store(tmp_path / "home"))


@pytest.mark.parametrize("parent", ["digits", "digits-torch"])
def test_onnx_export_answers_like_its_parent_and_records_lineage_and_report(store, parent):
    ref, report = export(store, parent, "onnx")
    child = store.resolve(ref)
    assert ref.name == f"{parent}-onnx" and child.manifest.runtime == "onnx"
    assert child.manifest.lineage["parent"] == f"{parent}:1" and child.manifest.lineage["operation"] == "export onnx"
    assert child.manifest.lineage["parent_files"] == {k: v["sha256"] for k, v in
                                                       store.resolve(parent).manifest.files.items()}
    assert report.parity.rows == 455 and report.parity.agreement == 1.0 and report.parity.max_abs_diff < 1e-4
    assert child.manifest.report["parity"]["agreement"] == 1.0
    parent_figures, child_figures = report.figures
    assert child_figures.size_bytes == child.manifest.size_bytes > 0
    assert child_figures.accuracy == parent_figures.accuracy > 0.9
    assert child_figures.p50_ms > 0 and child_figures.rows_per_s > 0
    assert "Gemm" in report.structure["operators"] or "LinearClassifier" in report.structure["operators"]


def test_an_export_past_its_tolerance_is_refused_with_the_figures_and_not_stored(store):
    with pytest.raises(ExportRefused, match="max abs diff .* is over the tolerance 0") as refused:
        export(store, "digits", "onnx", name="digits-strict", budget=Budget(atol=0.0))
    assert refused.value.report.parity.max_abs_diff > 0
    assert store.list("digits-strict") == []


def test_export_copies_the_version_and_its_manifest_to_a_folder(store, tmp_path):
    ref, _ = export(store, "digits-torch", "onnx", name="digits-torch-out", out=tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["name"] == "digits-torch-out" and (tmp_path / "out" / "model.onnx").is_file()
    assert manifest["files"]["model.onnx"]["size"] == (tmp_path / "out" / "model.onnx").stat().st_size


@pytest.mark.parametrize("kind", ["int8", "fp16"])
def test_quantized_children_are_smaller_and_still_agree(store, kind):
    ref, report = quantize(store, "digits-torch", kind)
    child = store.resolve(ref)
    onnx_size = store.resolve(export(store, "digits-torch", "onnx", name=f"digits-torch-ref-{kind}")[0]).manifest
    assert child.manifest.files["model.onnx"]["size"] < onnx_size.files["model.onnx"]["size"] * 0.75
    assert report.parity.agreement > 0.97 and report.child.accuracy > 0.9
    assert child.manifest.lineage["operation"] == f"quantize {kind}"
    assert load_runtime(child).predict(child.sample())["probabilities"].dtype == np.float32


def test_budgets_make_the_optimization_fail_without_storing(store):
    with pytest.raises(ExportRefused, match=r"is over the budget of 1000 B \(1000 bytes\)"):
        quantize(store, "digits-torch", "int8", name="digits-tiny", budget=Budget(None, None, max_size=1000))
    assert store.list("digits-tiny") == []


def test_distilled_student_is_smaller_and_close_to_its_teacher(store):
    ref, report = distill(store, "digits-torch", "mlp:16", "sklearn:digits:train", epochs=40)
    student = store.resolve(ref)
    assert student.manifest.runtime == "torch" and student.manifest.size_bytes < store.resolve(
        "digits-torch").manifest.size_bytes / 2
    assert report.child.accuracy > 0.85 and report.child.agreement > 0.85
    assert student.manifest.lineage["operation"] == "distill mlp:16 on sklearn:digits:train"
    with pytest.raises(ExportRefused, match="below the minimum of 99.90%"):
        distill(store, "digits-torch", "mlp", "sklearn:digits:train", epochs=2, name="digits-bad",
                budget=Budget(None, None, min_accuracy=0.999))


def test_cli_export_optimize_and_their_errors(store, monkeypatch):
    done = pallet(store, "export", "digits", "--format", "onnx", "--name", "digits-cli")
    assert done.returncode == 0, done.stderr
    assert "export onnx of digits:1" in done.stdout and "agreement 100.00%" in done.stdout
    assert "stored digits-cli:1" in done.stderr
    done = pallet(store, "optimize", "digits-torch", "--quantize", "int8", "--max-size", "2KB", "--name", "x")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: quantize int8 of digits-torch:1 refused: size")
    assert "int8" in done.stderr and "Traceback" not in done.stderr  # the table, then one line
    for args, message in [(["export", "digits", "--format", "wasm"], "no export target 'wasm'; pallet exports to: onnx"),
                          (["optimize", "digits", "--quantize", "int4"], "--quantize takes int8 or fp16"),
                          (["optimize", "digits"], "say what to do"),
                          (["optimize", "digits", "--distill"], "--distill needs --data"),
                          (["optimize", "digits", "--distill", "--student", "cnn", "--data", "sklearn:digits"],
                           "is not mlp:HIDDEN"),
                          (["optimize", "digits", "--quantize", "int8", "--max-size", "huge"], "not a size"),
                          (["export", "nope", "--format", "onnx"], "no model named 'nope'")]:
        result = cli(store, monkeypatch, *args)
        assert result.exit_code != 0 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output


def test_cli_models_show_diff_and_list_report_size(store):
    export(store, "digits-torch", "onnx", name="digits-torch-diff")
    done = pallet(store, "models", "diff", "digits-torch:1", "digits-torch-diff:1", "--json")
    assert done.returncode == 0, done.stderr
    changes = json.loads(done.stdout)
    parent_size = store.resolve("digits-torch").manifest.size_bytes
    assert changes["size_bytes"]["a"] == parent_size
    assert changes["size_bytes"]["change"] == store.resolve("digits-torch-diff").manifest.size_bytes - parent_size
    assert changes["signature"] == {} and changes["lineage"]["b"] == "digits-torch:1"
    assert set(changes["files"]) == {"code/nets.py", "init.json", "weights.pt", "model.onnx"}
    done = pallet(store, "models", "diff", "digits:1", "digits-torch:1")
    assert "input input" in done.stdout and "float64[-1, 64]" in done.stdout  # the signatures differ
    shown = pallet(store, "models", "show", "digits-torch-diff")
    assert "derived from digits-torch:1 (export onnx)" in shown.stdout and "share" in shown.stdout
    assert "digits-torch-diff:1" in shown.stdout.split("derived from")[1]  # the report names this version
    assert re.search(r"model\.onnx\W+[\d.]+ KiB\W+9\d\.\d%", shown.stdout)  # the graph is nearly all of it
    listed = {f'{r["name"]}:{r["version"]}': r for r in json.loads(pallet(store, "models", "list", "--json").stdout)}
    assert listed["digits-torch-diff:1"]["size_bytes"] == store.resolve("digits-torch-diff:1").manifest.size_bytes


def test_fits_answers_which_variants_fit_and_fails_when_none_does(store):
    done = pallet(store, "fits", "digits-torch", "--device", "phone", "--json")
    assert done.returncode == 0, done.stderr
    fit = json.loads(done.stdout)
    assert fit["fits"] and fit["formats"] == {"tflite": "", "executorch": "", "coreml": ""}
    assert [c["variant"] for c in fit["candidates"]] == ["float32", "int8", "fp16"]
    assert all(c["size_bytes"] > 0 and c["device_latency_ms"] == pytest.approx(c["latency_ms"] * 5)
               for c in fit["candidates"])
    done = pallet(store, "fits", "digits-torch", "--device", "microcontroller")
    assert done.returncode == 1 and "which the device does not have" in done.stdout
    assert done.stderr.strip().endswith("does not fit microcontroller: no variant meets the budgets")
    done = pallet(store, "fits", "digits", "--device", "phone")
    assert done.returncode == 1 and "the tflite export takes torch models" in done.stdout
    done = pallet(store, "fits", "digits", "--device", "toaster")
    assert done.returncode == 1 and "no device profile 'toaster'; there are: browser, phone" in done.stderr


def test_quantizing_a_graph_with_nothing_to_quantize_is_refused(store):
    with pytest.raises(NoRuntime, match=r"int8 quantization changes nothing in this graph: .*LinearClassifier"):
        quantize(store, "digits", "int8", name="digits-int8")
    assert store.list("digits-int8") == []


def test_user_mistakes_in_data_out_and_device_files_are_one_line(store, tmp_path, monkeypatch):
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(tmp_path / "short.npz", input=np.zeros((4, 64)), label=np.zeros(3))
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "bad.yaml").write_text("devices:\n  kiosk:\n    max_size: 1MB\n    max_latency_ms: 5\n    formats: web\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    stored_before = len(store.list())
    for args, message in [
        (["export", "digits", "--format", "onnx", "--data", str(tmp_path / "broken.npz")], "cannot be read"),
        (["export", "digits", "--format", "onnx", "--data", str(tmp_path / "short.npz")], "has 3 labels for 4 rows"),
        (["export", "digits", "--format", "onnx", "--data", str(tmp_path / "ragged.csv")], "cannot be read"),
        (["optimize", "digits-torch", "--quantize", "int8", "--data", str(tmp_path / "latin1.txt")], "cannot be read"),
        (["export", "digits", "--format", "onnx", "--out", str(tmp_path / "afile")], "cannot write the export to"),
        (["export", "digits", "--format", "onnx", "--name", "../up"], "../up"),
        (["fits", "digits", "--device", "kiosk", "--config", str(tmp_path / "bad.yaml")],
         "formats must be a list of names"),
        (["fits", "digits", "--device", "phone", "--config", str(tmp_path / "binary.yaml")], "is not valid YAML"),
        (["optimize", "minilm-none", "--distill", "--data", "sentences"], "no model named 'minilm-none'"),
    ]:
        result = cli(store, monkeypatch, *args)
        assert result.exit_code == 1, (args, result.stderr)
        assert result.stderr.strip().splitlines()[-1].startswith("error: ") and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
    assert len(store.list()) == stored_before  # no failed command stored anything


def test_a_torch_model_the_exporter_cannot_trace_fails_with_its_cause_in_one_line(tmp_path):
    from tests.integration.torch_modules import Branchy

    other = Store(tmp_path / "home")
    save(Branchy(), "branchy", sample=np.ones((2, 4), np.float32), store=other)
    done = pallet(other, "export", "branchy", "--format", "onnx")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 2 and lines[-1].startswith("error: torch.onnx cannot export branchy:1: ")
    assert "data-dependent" in lines[-1] or "Could not guard" in lines[-1] or "control flow" in lines[-1]


def test_fits_leaves_out_variants_a_graph_does_not_have_and_says_how_it_measured(store):
    done = pallet(store, "fits", "digits", "--device", "browser", "--json")
    fit = json.loads(done.stdout)
    assert [c["variant"] for c in fit["candidates"]] == ["float32"]
    assert any(note.startswith("no int8 variant: int8 quantization changes nothing") for note in fit["notes"])
    phone = json.loads(pallet(store, "fits", "digits-torch", "--device", "phone", "--json").stdout)
    assert any("exports tflite, executorch and coreml in float32" in note for note in phone["notes"])
