import json
import os
import pickle
import re
import stat

import numpy as np
import pytest

import pallet
from pallet.errors import IntegrityError, InvalidInput, ModelNotFound, NoRuntime
from pallet.store import ModelRef, Store
from pallet.store.manifest import MANIFEST, sha256


def save(store, model, x, name="digits", **kw):
    return pallet.save(model, name, sample=x[:5], **kw, store=store)


def test_save_returns_increasing_refs_and_writes_a_full_manifest(store, digits_model, digits):
    x, _ = digits
    first = save(store, digits_model, x, metrics={"accuracy": 0.97}, tags={"team": "vision"})
    second = save(store, digits_model, x)
    assert (first, second) == (ModelRef("digits", 1), ModelRef("digits", 2))
    assert repr(first) == "ModelRef('digits:1')"

    folder = store.home / "models" / "digits" / "1"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["name"] == "digits" and manifest["version"] == 1
    assert manifest["framework"] == "scikit-learn" and manifest["runtime"] == "sklearn"
    assert manifest["created"].endswith("+00:00")
    assert manifest["signature"]["inputs"] == [{"name": "input", "dtype": "float64", "shape": [-1, 64]}]
    outputs = {o["name"]: o for o in manifest["signature"]["outputs"]}
    assert outputs["label"]["shape"] == [-1]
    assert outputs["probabilities"]["shape"] == [-1, 10]
    assert outputs["probabilities"]["labels"] == list(range(10))
    assert manifest["python"].startswith("3.")
    assert set(manifest["packages"]) >= {"scikit-learn", "numpy", "joblib", "pallet"}
    assert manifest["metrics"] == {"accuracy": 0.97} and manifest["tags"] == {"team": "vision"}
    for name, entry in manifest["files"].items():
        assert sha256(folder / name) == entry["sha256"]
        assert (folder / name).stat().st_size == entry["size"]
    assert manifest["size_bytes"] == sum(f["size"] for f in manifest["files"].values())
    assert not (folder / "model.joblib").stat().st_mode & stat.S_IWUSR  # versions are immutable
    assert not list((store.home / "tmp").iterdir())  # nothing half-written left behind


def test_load_predicts_whichever_framework(store, digits_model, digits, monkeypatch):
    x, y = digits
    save(store, digits_model, x, aliases=["production"])
    model = pallet.load("digits@production", store=store)
    out = model.predict(x[:10])
    assert out["label"].tolist() == digits_model.predict(x[:10]).tolist()
    assert out["probabilities"].shape == (10, 10)
    assert np.allclose(out["probabilities"].sum(axis=1), 1)


def test_aliases_move_and_name_alone_means_newest(store, digits_model, digits):
    x, _ = digits
    save(store, digits_model, x)
    save(store, digits_model, x)
    assert store.resolve("digits").ref == ModelRef("digits", 2)
    assert store.resolve("digits@latest").ref == ModelRef("digits", 2)
    store.tag("digits:1", "production")
    assert store.resolve("digits@production").ref.version == 1
    store.tag("digits", "production")  # move it
    assert store.resolve("digits@production").ref.version == 2
    assert store.resolve("digits:2").aliases == ("production",)
    store.tag("digits:1", "staging")
    assert {a for _, aliases in store.list("digits") for a in aliases} == {"production", "staging"}
    store.untag("digits", "staging")
    with pytest.raises(ModelNotFound, match="model 'digits' has no alias 'staging'; its aliases are production"):
        store.resolve("digits@staging")
    with pytest.raises(ModelNotFound, match="model 'digits' has no alias 'staging'; its aliases are production"):
        store.untag("digits", "staging")
    with pytest.raises(ModelNotFound, match=f"^no model named 'x' in {re.escape(store.location)} \\(it has: digits\\)$"):
        store.untag("x", "staging")


def test_the_production_alias_of_a_name_with_a_rollout_moves_only_with_its_traffic(store, digits_model, digits):
    from pallet.errors import RolloutConflict
    from pallet.rollout import Rollouts

    x, _ = digits
    for _ in range(2):
        save(store, digits_model, x)
    store.tag("digits:1", "production")  # no rollout yet: an alias like any other
    store.untag("digits", "production")
    store.tag("digits:1", "production")
    Rollouts(store).promote("digits", "digits:2")
    assert store.resolve("digits@production").ref.version == 2
    store.tag("digits:2", "production")  # where it is already: nothing moves
    with pytest.raises(RolloutConflict, match="moves only with its traffic"):
        store.tag("digits:1", "production")
    with pytest.raises(RolloutConflict, match="cannot be removed"):
        store.untag("digits", "production")
    assert store.resolve("digits@production").ref.version == 2


@pytest.mark.parametrize(
    "ref, message",
    [
        ("digits:99", "model 'digits' has no version 99; it has version 1"),
        ("nosuch@production", "no model named 'nosuch' in the store at .* \\(it has: digits\\)"),
        ("nosuch", "no model named 'nosuch'"),
        ("digits@canary", "model 'digits' has no alias 'canary'; it has no aliases yet"),
    ],
)
def test_unknown_references_are_one_clear_error(store, digits_model, digits, ref, message):
    save(store, digits_model, digits[0])
    with pytest.raises(ModelNotFound, match=message):
        store.resolve(ref)


def test_remove_deletes_folder_row_and_aliases(store, digits_model, digits):
    x, _ = digits
    save(store, digits_model, x)
    save(store, digits_model, x, aliases=["production"])
    assert store.remove("digits@production") == ModelRef("digits", 2)
    assert not (store.home / "models" / "digits" / "2").exists()
    assert [row.version for row, _ in store.list("digits")] == [1]
    with pytest.raises(ModelNotFound, match="no alias 'production'"):
        store.resolve("digits@production")
    assert save(store, digits_model, x).version == 3  # a removed number is never handed out again


def test_a_broken_version_can_still_be_removed(store, digits_model, digits):
    import shutil

    save(store, digits_model, digits[0])
    shutil.rmtree(store.home / "models" / "digits" / "1")
    assert store.remove("digits:1") == ModelRef("digits", 1)
    assert store.list() == []


def test_tagging_a_removed_version_is_refused(store, digits_model, digits):
    save(store, digits_model, digits[0])
    store.index.remove("digits", 1)
    with pytest.raises(ModelNotFound, match="has no version 1 \\(it was removed\\)"):
        store.index.set_alias("digits", "production", 1)


def test_a_changed_pickle_is_never_deserialized(store, digits_model, digits, tmp_path):
    save(store, digits_model, digits[0])
    path = store.home / "models" / "digits" / "1" / "model.joblib"
    marker = tmp_path / "code-ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    os.chmod(path, 0o644)
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(IntegrityError, match="file model.joblib of .* does not match its sha256"):
        pallet.load("digits", store=store)
    assert not marker.exists()


def test_a_missing_file_is_named(store, digits_model, digits):
    save(store, digits_model, digits[0])
    (store.home / "models" / "digits" / "1" / "model.joblib").unlink()
    with pytest.raises(IntegrityError, match="file model.joblib of .* is missing"):
        pallet.load("digits", store=store)


def test_a_missing_manifest_is_named(store, digits_model, digits):
    save(store, digits_model, digits[0])
    (store.home / "models" / "digits" / "1" / MANIFEST).unlink()
    with pytest.raises(IntegrityError, match="manifest.json is missing"):
        store.resolve("digits")


def test_a_manifest_naming_an_unknown_runtime_refuses_to_load(store, digits_model, digits):
    save(store, digits_model, digits[0])
    path = store.home / "models" / "digits" / "1" / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["runtime"] = "tensorflow"
    os.chmod(path, 0o644)
    path.write_text(json.dumps(manifest))
    with pytest.raises(NoRuntime, match="no runtime named 'tensorflow'; this pallet has: onnx, sklearn, torch, "
                                        "sentence, tflite, executorch, coreml, tvm, pipeline, python"):
        pallet.load("digits", store=store)


def test_objects_no_runtime_can_save_are_refused(store):
    with pytest.raises(NoRuntime, match="pallet cannot save a builtins.dict"):
        pallet.save({"weights": 1}, "thing", sample=[[1]], store=store)
    assert not (store.home / "models" / "thing").exists()


def test_a_model_that_fails_on_its_sample_is_not_stored(store, digits_model):
    with pytest.raises(InvalidInput, match="failed to predict on its sample"):
        pallet.save(digits_model, "digits", sample=np.zeros((2, 5)), store=store)
    assert store.list() == []


def test_sample_is_required(store, digits_model):
    with pytest.raises(InvalidInput, match="pass sample="):
        pallet.save(digits_model, "digits", sample=None, store=store)


def test_stored_sample_comes_back(store, digits_model, digits):
    x, _ = digits
    save(store, digits_model, x)
    assert np.array_equal(store.resolve("digits").sample()["input"], x[:5])


def test_a_second_store_on_the_same_database_sees_the_versions(store, digits_model, digits):
    save(store, digits_model, digits[0], aliases=["production"])
    again = Store(store.home, store.db_url)
    assert again.resolve("digits@production").ref == ModelRef("digits", 1)


def test_unreachable_database_is_one_clear_error(tmp_path):
    from pallet.errors import PalletError

    with pytest.raises(PalletError, match="cannot reach the model index"):
        Store(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(PalletError, match="is not a database URL"):
        Store(tmp_path, "not a url")
    (tmp_path / "broken.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(PalletError, match="cannot be used|cannot reach"):
        Store(tmp_path, f"sqlite:///{tmp_path / 'broken.db'}")
