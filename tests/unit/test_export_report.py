"""The pieces every export and optimization shares: the report, the comparison, data specs, devices."""

import numpy as np
import pytest

from pallet.errors import InvalidInput, PalletError
from pallet.export.check import compare
from pallet.export.data import load_data, sentences, split
from pallet.export.devices import BUILTIN, load_devices
from pallet.export.report import Figures, Parity, Report
from pallet.signature import Signature, TensorSpec

TABLE = Signature((TensorSpec("input", "float32", (-1, 4)),))


def report(**child) -> Report:
    return Report("quantize int8", "m:1", Parity(10, "sample"),
                  [Figures("parent", "m:1", 1000, 1.0, 100.0, 0.9),
                   Figures("int8", "", child.pop("size", 400), 0.5, 200.0, child.pop("accuracy", 0.88),
                           child.pop("agreement", 0.97))])


def test_gate_names_each_budget_the_child_misses():
    assert report().gate(max_size=500, min_accuracy=0.85) == []
    misses = report(size=900).gate(max_size=500, min_accuracy=0.95)
    assert len(misses) == 2
    assert "900 bytes" in misses[0] and "500 bytes" in misses[0]
    assert "accuracy 88.00%" in misses[1] and "95.00%" in misses[1]


def test_gate_falls_back_to_agreement_without_labels_and_says_when_neither_exists():
    assert "agreement 97.00%" in report(accuracy=None).gate(min_accuracy=0.99)[0]
    assert "no accuracy" in report(accuracy=None, agreement=None).gate(min_accuracy=0.5)[0]


def test_report_round_trips_through_its_dict_and_renders_one_row_per_version():
    original = report()
    again = Report.from_dict(original.to_dict())
    assert again == original
    lines = again.markdown().splitlines()
    assert len(lines) == 4 and lines[2].startswith("| parent | m:1 | 1000 B |") and "88.00%" in lines[3]
    assert again.table().row_count == 2


def test_compare_labels_by_agreement_and_floats_by_max_difference():
    parent = {"label": np.array([1, 2, 3, 4]), "probabilities": np.array([[0.1, 0.9]] * 4)}
    child = {"label": np.array([1, 2, 3, 5]), "probabilities": np.array([[0.1, 0.9]] * 3 + [[0.4, 0.6]])}
    max_diff, agreement = compare(parent, child)
    assert agreement == 0.75
    assert max_diff == pytest.approx(0.3)


def test_compare_embeddings_by_cosine_and_narrow_outputs_by_relative_difference():
    rng = np.random.default_rng(0)
    parent = {"embedding": rng.normal(size=(10, 32))}
    child = {"embedding": parent["embedding"].copy()}
    child["embedding"][:3] = rng.normal(size=(3, 32))  # three rows point elsewhere
    assert compare(parent, child)[1] == 0.7
    regression = {"prediction": np.array([100.0, 200.0])}
    assert compare(regression, {"prediction": np.array([100.5, 230.0])})[1] == 0.5


def test_sklearn_data_sets_split_the_same_way_every_time():
    x_train, y_train = split("digits", "train")
    x_test, y_test = split("digits", "test")
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 450
    assert np.array_equal(split("digits", "test")[0], x_test)
    data = load_data("sklearn:iris", TABLE)
    assert data.inputs["input"].dtype == np.float32 and data.labels is not None and len(data) == 38
    with pytest.raises(InvalidInput, match="sklearn:digits"):
        load_data("sklearn:mnist", TABLE)
    with pytest.raises(InvalidInput, match="neither train nor test"):
        load_data("sklearn:iris:validation", TABLE)


def test_data_files_npz_with_labels_csv_and_txt(tmp_path):
    np.savez(tmp_path / "d.npz", input=np.ones((3, 4)), label=np.array([0, 1, 0]))
    data = load_data(str(tmp_path / "d.npz"), TABLE)
    assert data.labels.tolist() == [0, 1, 0] and data.inputs["input"].shape == (3, 4)
    (tmp_path / "d.csv").write_text("a,b,c,d,label\n1,2,3,4,1\n5,6,7,8,0\n")
    data = load_data(str(tmp_path / "d.csv"), TABLE)
    assert data.inputs["input"].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]] and data.labels.tolist() == [1, 0]
    (tmp_path / "t.txt").write_text("first line\n\nsecond line\n")
    text = Signature((TensorSpec("text", "str", (-1,)),))
    assert load_data(str(tmp_path / "t.txt"), text).inputs["text"].tolist() == ["first line", "second line"]
    with pytest.raises(InvalidInput, match="does not fit the model"):
        load_data(str(tmp_path / "t.txt"), TABLE)
    with pytest.raises(InvalidInput, match="neither a file nor a data set"):
        load_data(str(tmp_path / "missing.npz"), TABLE)


def test_sentences_are_distinct_and_stable():
    texts = sentences()
    assert len(set(texts)) == len(texts) == 240
    assert sentences()[17] == texts[17]


def test_device_profiles_from_pallet_yaml_are_checked(tmp_path):
    config = tmp_path / "pallet.yaml"
    config.write_text("devices:\n  kiosk:\n    max_size: 2MB\n    max_latency_ms: 10\n    formats: [web]\n")
    devices = load_devices(config)
    assert devices["kiosk"].max_size == 2_000_000 and devices["kiosk"].formats == ("web",)
    assert set(BUILTIN) <= set(devices)
    config.write_text("devices:\n  kiosk:\n    max_size: 2MB\n    formats: [wasm]\n    colour: red\n")
    with pytest.raises(PalletError, match="unknown key.*colour.*missing max_latency_ms"):
        load_devices(config)
    config.write_text("devices:\n  kiosk:\n    max_size: 2MB\n    max_latency_ms: 1\n    formats: [wasm]\n")
    with pytest.raises(PalletError, match="unknown format.*wasm"):
        load_devices(config)
