"""`pallet doctor` on a healthy demo store, then on copies of it damaged one way at a time."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import pallet
from pallet.cli import app
from pallet.demo import train_demo_models
from pallet.doctor import check_store, healthy
from pallet.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def healthy_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("doctor") / "home"
    store = Store(home)
    train_demo_models(store, torch_models=())
    store.index.engine.dispose()  # the index fully written to index.db before it is copied
    return home


@pytest.fixture
def home(healthy_home, tmp_path, monkeypatch):
    """A copy of the healthy store for one test to damage."""
    copy = tmp_path / "home"
    shutil.copytree(healthy_home, copy, symlinks=True)
    monkeypatch.setenv("PALLET_HOME", str(copy))
    for variable in ("PALLET_DB_URL", "PALLET_EDGE_PYTHON", "PALLET_TVM_PYTHON"):
        monkeypatch.delenv(variable, raising=False)
    return copy


def doctor(*args):
    return runner.invoke(app, ["doctor", *args])


def problems(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]


def writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def test_a_healthy_store_passes(home):
    result = doctor()
    assert result.exit_code == 0, result.output
    assert problems(result) == []
    lines = result.stdout.splitlines()
    for ref in ("digits:1", "iris:1", "digits-onnx:1"):
        assert any(line.startswith("ok") and f"{ref}:" in line and "match their sha256" in line for line in lines)
    assert any(line.split()[:3] == ["ok", "package", "numpy"] for line in lines)
    assert any(line.split()[:2] == ["ok", "python"] for line in lines)
    assert "healthy" in result.stderr


def test_json_output_names_every_check(home):
    result = doctor("--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    checks = {f["check"] for f in report["findings"]}
    assert checks >= {"python", "package", "toolchain", "home", "index", "files", "permissions", "symlink"}
    assert {f["level"] for f in report["findings"]} <= {"ok", "info"}


def test_a_flipped_byte_in_a_model_file_is_named(home):
    path = writable(home / "models" / "digits" / "1" / "model.joblib")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    path.chmod(0o444)
    result = doctor()
    assert result.exit_code == 1
    (line,) = problems(result)
    assert "files" in line and "digits:1" in line and "model.joblib" in line and "sha256" in line
    report = json.loads(doctor("--json").stdout)
    assert report["healthy"] is False
    assert [f["check"] for f in report["findings"] if f["level"] == "problem"] == ["files"]


def test_a_deleted_file_is_named(home):
    (home / "models" / "iris" / "1" / "sample.npz").unlink()
    result = doctor()
    assert result.exit_code == 1
    (line,) = problems(result)
    assert "iris:1" in line and "sample.npz" in line and "missing" in line


def test_an_orphan_folder_and_a_version_without_folder_are_named(home):
    (home / "models" / "ghost" / "1").mkdir(parents=True)
    (home / "models" / "digits" / "7").mkdir()
    shutil.rmtree(home / "models" / "iris" / "1")
    result = doctor()
    assert result.exit_code == 1
    found = problems(result)
    assert any("orphan" in line and "models/ghost" in line for line in found)
    assert any("orphan" in line and "models/digits/7" in line for line in found)
    assert any("files" in line and "iris:1 is in the index but its folder" in line for line in found)
    assert len(found) == 3


def test_an_extra_file_in_a_version_folder_is_named(home):
    (home / "models" / "iris" / "1" / "payload.pkl").write_bytes(b"not in the manifest")
    result = doctor()
    assert result.exit_code == 1
    (line,) = problems(result)
    assert "iris:1" in line and "payload.pkl" in line


def test_a_symlink_leading_outside_the_store_is_named(home, tmp_path):
    # The same bytes, so the sha256 matches: only the symlink check can see it.
    model = home / "models" / "digits" / "1" / "model.joblib"
    outside = tmp_path / "elsewhere.joblib"
    shutil.copyfile(model, outside)
    writable(model).unlink()
    model.symlink_to(outside)
    (home / "models" / "iris" / "1" / "inside").symlink_to(home / "models" / "iris" / "1" / "sample.npz")
    result = doctor()
    assert result.exit_code == 1
    found = problems(result)
    assert any("symlink" in line and "model.joblib" in line and "outside the store" in line
               and str(outside) in line for line in found)
    assert any("symlink" in line and "iris/1/inside" in line and "outside the store" not in line for line in found)


def test_a_world_writable_artifact_is_named(home):
    path = home / "models" / "digits-onnx" / "1" / "model.onnx"
    path.chmod(0o666)
    result = doctor()
    assert result.exit_code == 1
    (line,) = problems(result)
    assert "permissions" in line and "model.onnx" in line and "writable by group or others" in line


def test_an_artifact_its_owner_cannot_read_is_named(home):
    path = home / "models" / "iris" / "1" / "model.joblib"
    path.chmod(0o044)
    try:
        result = doctor()
    finally:
        path.chmod(0o444)
    assert result.exit_code == 1
    assert any("permissions" in line and "not readable by its owner" in line for line in problems(result))


def test_an_alias_to_a_missing_version_is_named(home):
    engine = sa.create_engine(f"sqlite:///{home / 'index.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("insert into pallet_aliases (name, alias, version, updated) "
                             "values ('digits', 'staging', 9, '2024-01-01')"))
    engine.dispose()
    result = doctor()
    assert result.exit_code == 1
    (line,) = problems(result)
    assert "alias" in line and "digits@staging" in line and "version 9" in line


def test_a_configured_toolchain_is_reported(home, tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "litert_torch").mkdir(parents=True)
    (site / "litert_torch" / "__init__.py").write_text("")
    python = tmp_path / "edge-python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    monkeypatch.setenv("PALLET_EDGE_PYTHON", str(python))
    monkeypatch.setenv("PALLET_TVM_PYTHON", str(tmp_path / "no-such-python"))
    result = doctor()
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("info") and "edge: PALLET_EDGE_PYTHON" in line and "litert_torch installed" in line
               for line in lines)
    (line,) = problems(result)
    assert "tvm" in line and "no-such-python" in line


def test_an_unreachable_index_database_is_one_line_without_traceback(home, monkeypatch):
    monkeypatch.setenv("PALLET_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:1/test")
    result = doctor()
    assert result.exit_code == 1
    (line,) = problems(result)
    assert "index" in line and "127.0.0.1" in line and "cannot be reached" in line
    assert "Traceback" not in result.output


def test_a_missing_home_is_one_line_and_is_not_created(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("PALLET_HOME", str(missing))
    for variable in ("PALLET_DB_URL", "PALLET_EDGE_PYTHON", "PALLET_TVM_PYTHON"):
        monkeypatch.delenv(variable, raising=False)
    result = doctor()
    assert result.exit_code == 1
    (line,) = problems(result)
    assert "home" in line and str(missing) in line and "does not exist" in line
    assert "Traceback" not in result.output
    assert not missing.exists()


def test_a_db_url_that_is_not_a_database_url_is_one_line(home, monkeypatch):
    monkeypatch.setenv("PALLET_DB_URL", "not a url")
    result = doctor()
    assert result.exit_code == 1
    (line,) = problems(result)
    assert "index" in line and "not a database URL" in line


def test_progress_counts_every_version(home):
    calls = []
    findings = check_store(home, progress=lambda done, total: calls.append((done, total)))
    assert healthy(findings)
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_folders_without_any_index_are_orphans(home):
    (home / "index.db").unlink()
    result = doctor()
    assert result.exit_code == 1
    assert any(line.startswith("info") and "the store is empty" in line for line in result.stdout.splitlines())
    found = problems(result)
    assert len(found) == 3 and all("orphan" in line for line in found)
    assert not (home / "index.db").exists()  # the doctor reads; it made no index


def test_a_store_indexed_in_postgresql(tmp_path, postgres_url, monkeypatch):
    x, y = load_iris(return_X_y=True)
    store = Store(tmp_path / "pg-home", postgres_url)
    pallet.save(LogisticRegression(max_iter=500).fit(x, y), "iris", sample=x[:3], store=store)
    store.index.engine.dispose()
    assert healthy(check_store(store.home, postgres_url))
    monkeypatch.setenv("PALLET_HOME", str(store.home))
    monkeypatch.setenv("PALLET_DB_URL", postgres_url)
    assert doctor().exit_code == 0
    writable(store.home / "models" / "iris" / "1" / "model.joblib").write_bytes(b"changed")
    result = doctor()
    assert result.exit_code == 1
    (line,) = [line for line in problems(result) if "files" in line]
    assert "iris:1" in line and "model.joblib" in line
