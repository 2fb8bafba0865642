"""Feedback records in SQLite and PostgreSQL, and their export as CSV and Parquet (library and CLI)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import pallet
from pallet.cli import app
from pallet.errors import PalletError
from pallet.ui.feedback import FeedbackLog, export

PALLET = str(Path(sys.executable).parent / "pallet")


def _add(log, model="digits", version=1, rating="up", **fields):
    return log.add(model=model, version=version, request_id=fields.pop("request_id", "r"),
                   inputs={"input": [[1.0, 2.0]]}, outputs={"label": [3]}, rating=rating, **fields)


def test_records_counts_and_versions(store):
    log = FeedbackLog(store.index.engine)
    first = _add(log, correct="3", comment="fine")
    _add(log, rating="down", version=2, request_id="r2")
    _add(log, model="iris", rating=None, comment="odd")
    records = log.records("digits")
    assert [r["id"] for r in records] == sorted(r["id"] for r in records) and records[0]["id"] == first
    assert records[0]["inputs"] == {"input": [[1.0, 2.0]]} and records[0]["outputs"] == {"label": [3]}
    assert (records[0]["correct"], records[0]["comment"]) == ("3", "fine")
    assert [r["request_id"] for r in log.records("digits", version=2)] == ["r2"]
    assert [r["version"] for r in log.records("digits", limit=1)] == [2]  # the newest
    assert log.counts() == {
        "digits": {"total": 2, "up": 1, "down": 1, "versions": {"1": {"total": 1, "up": 1, "down": 0},
                                                             "2": {"total": 1, "up": 0, "down": 1}}},
        "iris": {"total": 1, "up": 0, "down": 0, "versions": {"1": {"total": 1, "up": 0, "down": 0}}}}
    assert FeedbackLog(store.index.engine).records("digits")  # a second log sees the same table
    with pytest.raises(PalletError, match="rating must be 'up', 'down' or absent"):
        _add(log, rating="maybe")


def test_export_csv_and_parquet_round_trip(store, tmp_path):
    log = FeedbackLog(store.index.engine)
    _add(log, correct="7", comment='quotes " and, commas')
    _add(log, rating="down", request_id="r2")
    records = log.records("digits")
    with export(records, tmp_path / "out" / "f.csv", "csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["request_id"] for r in rows] == ["r", "r2"]
    assert rows[0]["comment"] == 'quotes " and, commas' and json.loads(rows[0]["inputs"]) == {"input": [[1.0, 2.0]]}
    table = pq.read_table(export(records, tmp_path / "f.parquet", "parquet")).to_pylist()
    assert [r["rating"] for r in table] == ["up", "down"] and table[1]["correct"] is None
    assert json.loads(table[0]["outputs"]) == {"label": [3]} and table[0]["version"] == 1
    with pytest.raises(PalletError, match="unknown format 'xlsx'"):
        export(records, tmp_path / "f.xlsx", "xlsx")


def test_cli_exports_a_models_feedback(demo_store_home, tmp_path, monkeypatch):
    home, store = demo_store_home
    log = FeedbackLog(store.index.engine)
    _add(log, model="iris", request_id="a")
    _add(log, model="iris", version=2, request_id="b")
    env = {**{k: v for k, v in os.environ.items() if k != "PALLET_DB_URL"}, "PALLET_HOME": str(home)}

    def pallet(*args):
        return subprocess.run([PALLET, "feedback", "export", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=120)

    done = pallet("iris", "--format", "parquet", "-o", "all.parquet")
    assert done.returncode == 0, done.stderr
    assert "wrote 2 feedback records of iris (every version)" in done.stdout
    assert [r["request_id"] for r in pq.read_table(tmp_path / "all.parquet").to_pylist()] == ["a", "b"]
    done = pallet("iris:1")
    assert done.returncode == 0 and "wrote 1 feedback records of iris:1 to feedback-iris.csv" in done.stdout
    assert (tmp_path / "feedback-iris.csv").read_text().count("\n") == 2
    monkeypatch.setenv("PALLET_HOME", str(home))
    monkeypatch.delenv("PALLET_DB_URL", raising=False)
    for args, message in [(["iris", "--format", "xlsx"], "'xlsx' is not one of: csv, parquet"), (["irsi"], "irsi"),
                          (["iris:9"], "iris"), (["bad name!"], "error: ")]:
        result = CliRunner().invoke(app, ["feedback", "export", *args])
        assert result.exit_code != 0 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.fixture
def demo_store_home(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from pallet.store import Store

    store = Store(tmp_path / "home")
    x, y = load_iris(return_X_y=True)
    pallet.save(LogisticRegression(max_iter=500).fit(x, y), "iris", sample=x[:3], store=store)
    return store.home, store
