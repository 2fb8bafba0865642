"""A pickle is unpickled only after its sha256 matches: every way of loading a stored scikit-learn model
refuses a tampered file, names the model and the file, and runs none of its code."""

import os
import pickle
import secrets

import httpx
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import pallet
from pallet.cli import app
from pallet.errors import IntegrityError
from pallet.runtimes.sklearn import SklearnRuntime
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store
from tests.serve.conftest import RunningServer

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


class Payload:
    """A pickle that creates a file when it is unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def store(tmp_path, monkeypatch):
    """iris:1 healthy; iris:2 whose model.joblib was replaced after saving by a pickle that runs code."""
    x, y = load_iris(return_X_y=True)
    store = Store(tmp_path / "home")
    model = LogisticRegression(max_iter=500).fit(x, y)
    pallet.save(model, "iris", sample=x[:3], store=store)
    pallet.save(model, "iris", sample=x[:3], store=store)
    path = store.resolve("iris:2").path / "model.joblib"
    path.chmod(0o644)
    path.write_bytes(pickle.dumps(Payload(tmp_path / "code-ran")))
    monkeypatch.setenv("PALLET_HOME", str(store.home))
    monkeypatch.delenv("PALLET_DB_URL", raising=False)
    return store


def test_the_runtime_itself_refuses_a_tampered_pickle(store, tmp_path):
    # Straight to the runtime, past the version's own check: the bytes are checked as they are read.
    folder = store.resolve("iris:2").path
    with pytest.raises(IntegrityError, match=r"file model.joblib of model iris:2 \(.*\) does not match its sha256"):
        SklearnRuntime.load(folder, {})
    assert not (tmp_path / "code-ran").exists()
    assert SklearnRuntime.load(store.resolve("iris:1").path, {}).estimator.predict([IRIS_ROW]).tolist() == [0]


def test_pallet_predict_refuses_it_with_one_line(store, tmp_path):
    result = CliRunner().invoke(app, ["predict", "iris:2", "--sample"])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: file model.joblib of model iris:2 (") and "sha256" in line
    assert "Traceback" not in result.output
    assert not (tmp_path / "code-ran").exists()
    assert CliRunner().invoke(app, ["predict", "iris:1", "--sample"]).exit_code == 0


def test_pallet_batch_run_refuses_it_with_one_line(store, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c,d\n" + "\n".join(",".join(map(str, IRIS_ROW)) for _ in range(3)) + "\n")
    output = f"sqlite:///{tmp_path / 'out.db'}?table=predictions"
    result = CliRunner().invoke(app, ["batch", "run", "iris:2", "--input", str(rows), "--output", output])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "iris:2" in errors[0] and "model.joblib" in errors[0] and "sha256" in errors[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "code-ran").exists()


def test_the_repository_load_endpoint_refuses_it_and_keeps_serving(store, tmp_path, monkeypatch):
    key = secrets.token_hex(16)
    monkeypatch.setenv("PALLET_API_KEY", key)
    with RunningServer(create_app(ServeConfig(models=["iris:1"]), store)) as running, \
            httpx.Client(base_url=running.url, headers={"X-API-Key": key}, timeout=30) as client:
        refused = client.post("/v2/repository/models/iris:2/load")
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert "iris:2" in error and "model.joblib" in error and "sha256" in error
        assert not (tmp_path / "code-ran").exists()
        # The healthy version goes on answering under the name.
        answer = client.post("/v1/models/iris:predict", json={"instances": [IRIS_ROW]})
        assert answer.status_code == 200 and answer.headers["x-model-version"] == "1"
        assert client.get("/v2/models/iris").json()["versions"] == ["1"]
        assert client.post("/v2/repository/models/iris:1/load").status_code == 200
    assert os.listdir(store.home / "tmp") == []


def test_a_file_that_leads_out_of_its_version_folder_is_refused(tmp_path):
    """A model file swapped for a link out of the store, or a manifest naming `../` paths, is refused
    before anything is read, even when the bytes found there match."""
    x, y = load_iris(return_X_y=True)
    store = Store(tmp_path / "home")
    pallet.save(LogisticRegression(max_iter=500).fit(x, y), "iris", sample=x[:3], store=store)
    folder = store.resolve("iris").path
    outside = tmp_path / "elsewhere.joblib"
    outside.write_bytes((folder / "model.joblib").read_bytes())
    (folder / "model.joblib").unlink()
    (folder / "model.joblib").symlink_to(outside)
    with pytest.raises(IntegrityError, match="leads outside the version's folder"):
        store.resolve("iris").verify()

    (folder / "model.joblib").unlink()
    manifest_path = folder / "manifest.json"
    manifest_path.chmod(0o644)
    manifest = manifest_path.read_text().replace('"model.joblib"', '"../../../elsewhere.joblib"')
    manifest_path.write_text(manifest)
    with pytest.raises(IntegrityError, match="elsewhere.joblib .*leads outside"):
        store.resolve("iris").verify()
