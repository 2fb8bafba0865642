"""The CLI through typer's runner (in process) and as a real `pallet` subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pallet import save
from pallet.cli import app

PALLET = str(Path(sys.executable).parent / "pallet")
runner = CliRunner()


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    """A store with the demo models, made once by `pallet demo` in a subprocess."""
    home = tmp_path_factory.mktemp("demo") / "home"
    done = subprocess.run([PALLET, "demo"], env={**os.environ, "PALLET_HOME": str(home)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "stored 5 models" in done.stderr
    return home


def pallet(home, *args, stdin=None):
    env = {k: v for k, v in os.environ.items() if k != "PALLET_DB_URL"}
    return subprocess.run([PALLET, *args], env={**env, "PALLET_HOME": str(home)}, input=stdin,
                          capture_output=True, text=True, timeout=120)


def invoke(home, monkeypatch, *args, stdin=None):
    monkeypatch.setenv("PALLET_HOME", str(home))
    monkeypatch.delenv("PALLET_DB_URL", raising=False)
    return runner.invoke(app, list(args), input=stdin, prog_name="pallet")


def test_demo_registers_the_models_with_accuracy_and_production_alias(demo_home):
    done = pallet(demo_home, "models", "list", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert set(rows) == {"digits", "iris", "digits-onnx", "digits-torch", "minilm"}
    for row in rows.values():
        assert row["aliases"] == ["production"]
    for name in ("digits", "iris", "digits-onnx", "digits-torch"):
        assert rows[name]["metrics"]["accuracy"] > 0.9
    assert rows["digits-onnx"]["framework"] == "onnx" and rows["digits-torch"]["framework"] == "pytorch"
    assert rows["minilm"]["framework"] == "sentence-transformers" and rows["minilm"]["size_bytes"] > 80e6


def test_models_list_table(demo_home):
    done = pallet(demo_home, "models", "list")
    assert done.returncode == 0
    for name in ("digits", "digits-onnx", "iris", "production", "accuracy="):
        assert name in done.stdout


def test_models_show(demo_home, monkeypatch):
    result = invoke(demo_home, monkeypatch, "models", "show", "digits@production")
    assert result.exit_code == 0, result.output
    for text in ("digits:1", "scikit-learn", "float64", "[-1, 64]", "probabilities", "accuracy=",
                 "production", "model.joblib", "scikit-learn=="):
        assert text in result.output
    data = json.loads(invoke(demo_home, monkeypatch, "models", "show", "iris", "--json").output)
    assert data["signature"]["inputs"][0]["shape"] == [-1, 4]
    assert data["aliases"] == ["production"]
    assert data["size_bytes"] > 0


@pytest.mark.parametrize("ref", ["digits@production", "digits-onnx@production"])
def test_predict_from_json_file(demo_home, tmp_path, ref, digits):
    x, y = digits
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(x[:4].tolist()))
    done = pallet(demo_home, "predict", ref, "--input", str(path))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["outputs"]["label"] == y[:4].tolist()
    assert len(out["outputs"]["probabilities"]) == 4


def test_predict_from_csv_with_header_and_stdin(demo_home, monkeypatch):
    csv = "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"
    result = invoke(demo_home, monkeypatch, "predict", "iris", "--input", "-", "--format", "csv", stdin=csv)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outputs"]["label"] == [0, 2]


def test_predict_one_row_and_instances(demo_home, monkeypatch):
    result = invoke(demo_home, monkeypatch, "predict", "iris", "-i", "-", stdin="[5.1, 3.5, 1.4, 0.2]")
    assert json.loads(result.stdout)["outputs"]["label"] == [0]
    result = invoke(demo_home, monkeypatch, "predict", "iris", "-i", "-",
                    stdin='{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}')
    assert json.loads(result.stdout)["outputs"]["label"] == [0, 2]


def test_predict_on_the_stored_sample(demo_home):
    done = pallet(demo_home, "predict", "digits-onnx@production", "--sample")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["outputs"]["label"]) == 5


def test_tag_and_rm(tmp_path, monkeypatch, digits_model, digits):
    from pallet.store import Store

    store = Store(tmp_path / "home")
    for _ in range(2):
        save(digits_model, "digits", sample=digits[0][:2], store=store)
    result = invoke(store.home, monkeypatch, "models", "tag", "digits:1", "staging")
    assert result.exit_code == 0 and "digits@staging -> digits:1" in result.output
    result = invoke(store.home, monkeypatch, "models", "rm", "digits@staging", "--yes")
    assert result.exit_code == 1 and "carries alias staging" in result.output
    result = invoke(store.home, monkeypatch, "models", "rm", "digits@staging", "--yes", "--force")
    assert result.exit_code == 0 and "removed digits:1" in result.output
    result = invoke(store.home, monkeypatch, "models", "rm", "digits:2", stdin="n\n")
    assert result.exit_code != 0 and "aborted" in result.output
    assert [row.version for row, _ in store.list("digits")] == [2]
    result = invoke(store.home, monkeypatch, "models", "rm", "digits", "--all", "--yes")
    assert result.exit_code == 0 and store.list() == []


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["predict", "digits:99", "--sample"], None, "error: model 'digits' has no version 99; it has version 1"),
        (["predict", "nosuch@production", "--sample"], None, "error: no model named 'nosuch'"),
        (["models", "show", "bad name"], None, "error: bad model name 'bad name'"),
        (["models", "tag", "digits", "latest"], None, "error: bad alias 'latest'"),
        (["models", "rm", "digits"], None, "error: say which version to remove"),
        (["predict", "digits", "--input", "nope.json"], None, "error: input file nope.json does not exist"),
        (["predict", "digits"], None, "error: give the inputs with --input FILE"),
        (["predict", "digits", "-i", "-"], "[[1, 2]]", "error: input 'input': expected shape [-1, 64], got [1, 2]"),
        (["predict", "digits", "-i", "-"], "{not json", "error: input is not valid JSON"),
        (["predict", "iris", "-i", "-", "-f", "csv"], "1,2,3,4\n1,2,3\n", "error: CSV line 2 has 3 fields; expected 4"),
        (["predict", "iris", "-i", "-", "-f", "csv"], "1,2,x,4\n", "error: input 'input': expected numbers"),
        (["predict", "iris", "-i", "-", "-f", "xml"], "1", "error: unknown input format 'xml'"),
        (["nosuch"], None, "error: No such command 'nosuch'. (see 'pallet --help')"),
        (["models", "list", "nope"], None, "error: no model named 'nope'"),
        (["predict", "iris", "-i", "/bin/ls"], None, "error: input file /bin/ls is not UTF-8 text"),
        (["predict", "iris", "-i", "/tmp"], None, "error: /tmp is a folder"),
        (["models", "show", "iris:99999999999999999999"], None, "error: bad version"),
        (["models", "show"], None, "error: Missing argument 'REF'. (see 'pallet models show --help')"),
        (["predict", "digits", "--bogus"], None, "error: No such option: --bogus"),
    ],
)
def test_wrong_usage_is_one_line_and_non_zero(demo_home, monkeypatch, args, stdin, message):
    result = invoke(demo_home, monkeypatch, *args, stdin=stdin)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert message.lower() in result.stderr.lower()
    assert "Traceback" not in result.output


def test_help_for_every_command(demo_home, monkeypatch):
    for args in ([], ["demo"], ["predict"], ["models"], ["models", "list"], ["models", "show"],
                 ["models", "tag"], ["models", "rm"], ["rollout"], ["rollout", "start"], ["rollout", "split"],
                 ["rollout", "status"], ["rollout", "history"], ["pipeline", "save"], ["export"], ["optimize"],
                 ["fits"], ["models", "diff"]):
        result = invoke(demo_home, monkeypatch, *args, "--help")
        assert result.exit_code == 0, args
        assert "Usage: pallet" in result.stdout
    assert "Predict on a batch" in invoke(demo_home, monkeypatch, "--help").stdout
    assert "Usage: pallet" in pallet(demo_home, "--help").stdout  # the installed entry point too


def test_empty_store_says_where_it_looked_and_what_to_do(tmp_path):
    (tmp_path / "empty").mkdir()
    done = pallet(tmp_path / "empty", "models", "list")
    assert done.returncode == 0
    assert f"the store at {tmp_path / 'empty'} is empty: run 'pallet demo'" in done.stderr
