"""Batch prediction end to end: real files, SQLite and PostgreSQL, a real SIGKILL, the check's exit codes."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import pallet
from pallet.batch import RunLog, resume, run
from pallet.batch.check import check, prometheus_text
from pallet.batch.sinks import open_sink
from pallet.deploy.bundle import IMAGE_STORE
from pallet.errors import PalletError
from pallet.model import load_runtime
from pallet.store import Store
from pallet.units import parse_duration

PALLET = str(Path(sys.executable).parent / "pallet")
X, Y = load_digits(return_X_y=True)


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("batch") / "home")
    pallet.save(LogisticRegression(max_iter=300).fit(X, Y), "digits", sample=X[:5], aliases=["production"], store=store)
    return store


def _table(rows=len(X), start=0, features=X):
    index = np.arange(rows) % len(features)
    return pa.table({"id": np.arange(start, start + rows), **{f"p{i}": features[index, i] for i in range(64)}})


def _csv(path, table):
    pcsv.write_csv(table, path)
    return str(path)


def _sqlite_rows(path, table="preds"):
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT id, label, version, run_id FROM {table} ORDER BY id").fetchall()


def test_csv_to_sqlite_writes_every_key_once_with_predictions(digits_store, tmp_path):
    source = _csv(tmp_path / "in.csv", _table())
    record = run("digits@production", source, f"sqlite:///{tmp_path}/p.db?table=preds", key=["id"],
                 batch_size=400, store=digits_store)
    assert (record.status, record.rows_read, record.rows_written, record.rows_rejected) == ("succeeded", 1797, 1797, 0)
    with sqlite3.connect(tmp_path / "p.db") as conn:
        columns = [d[0] for d in conn.execute("SELECT * FROM preds").description]
        rows = conn.execute("SELECT id, label, probabilities_0, model, version, run_id FROM preds ORDER BY id").fetchall()
    assert columns == ["id", "label", *[f"probabilities_{i}" for i in range(10)], "model", "version", "run_id"]
    assert [r[0] for r in rows] == list(range(1797))
    expected = load_runtime(digits_store.resolve("digits")).predict({"input": X})
    assert [r[1] for r in rows] == expected["label"].tolist()
    assert np.allclose([r[2] for r in rows], expected["probabilities"][:, 0])
    assert {(r[3], r[4], r[5]) for r in rows} == {("digits", 1, record.id)}
    assert RunLog(digits_store.index.engine).get(record.id).status == "succeeded"
    assert set(record.summary["outputs"]) == {"label", "max_probabilities"}


def test_parquet_folder_to_parquet_folder_with_workers(digits_store, tmp_path):
    (tmp_path / "in").mkdir()
    pq.write_table(_table(1000), tmp_path / "in" / "a.parquet")
    pq.write_table(_table(797, start=1000), tmp_path / "in" / "b.parquet")
    record = run("digits", str(tmp_path / "in"), str(tmp_path / "out"), key=["id"], batch_size=128, workers=2,
                 store=digits_store)
    assert record.rows_written == 1797
    written = pq.read_table(tmp_path / "out").sort_by("id")
    assert written.column("id").to_pylist() == list(range(1797))
    assert written.column("label").to_pylist() == load_runtime(digits_store.resolve("digits")).predict(
        {"input": np.concatenate([X[:1000], X[:797]])})["label"].tolist()
    assert not list(tmp_path.glob(".out.staging-*"))  # swapped in


# In a process of its own: the limits are process-wide, and other tests' in-process servers hold theirs.
THREADS_DURING_A_RUN = """
import json, os, sys
import sklearn.linear_model  # the model's libraries loaded before the run: a pool loaded during it starts limited
from threadpoolctl import threadpool_info
from pallet.batch import run
from pallet.store import Store

def pools():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

environ, before, during = dict(os.environ), pools(), []
run("digits", sys.argv[2], sys.argv[3], key=["id"], batch_size=100, workers=2, store=Store(sys.argv[1]),
    progress=lambda done, total: during.append((os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_NUM_THREADS"),
                                                pools())))
print(json.dumps({"before": before, "during": during, "after": pools(), "environ_kept": dict(os.environ) == environ}))
"""


def test_a_run_limits_threads_while_it_runs_and_leaves_the_process_as_it_found_it(digits_store, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MKL_NUM_THREADS"} | {"OMP_NUM_THREADS": "7"}
    done = subprocess.run([sys.executable, "-c", THREADS_DURING_A_RUN, str(digits_store.home),
                           _csv(tmp_path / "in.csv", _table(300)), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    plan_threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert seen["before"] and seen["during"]
    assert all(d == [str(plan_threads), str(plan_threads), [plan_threads] * len(seen["before"])] for d in seen["during"]), seen
    assert seen["after"] == seen["before"] and seen["environ_kept"]


def test_sqlite_table_to_postgres_and_a_postgres_query_back(digits_store, tmp_path, postgres_url):
    source = sa.create_engine(f"sqlite:///{tmp_path}/src.db")
    with source.begin() as conn:
        conn.execute(sa.text("CREATE TABLE features (id INTEGER, " + ", ".join(f"p{i} REAL" for i in range(64)) + ")"))
        conn.execute(sa.text("INSERT INTO features VALUES (" + ", ".join(f":{c}" for c in ["id", *[f"p{i}" for i in range(64)]]) + ")"),
                     _table(300).to_pylist()[::-1])  # stored out of order: read in key order
    pg = postgres_url.replace("postgresql+psycopg", "postgresql")
    record = run("digits", f"sqlite:///{tmp_path}/src.db?table=features", f"{pg}&table=preds", key=["id"],
                 batch_size=64, store=digits_store)
    assert record.rows_written == 300
    with sa.create_engine(postgres_url).connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM preds ORDER BY id"))]
    assert ids == list(range(300))
    with sa.create_engine(postgres_url).begin() as conn:
        conn.execute(sa.text("CREATE TABLE feats (id BIGINT, " + ", ".join(f"p{i} DOUBLE PRECISION" for i in range(64)) + ")"))
        conn.execute(sa.text("INSERT INTO feats VALUES (" + ", ".join(f":{c}" for c in ["id", *[f"p{i}" for i in range(64)]]) + ")"),
                     _table(300).to_pylist())
    back = run("digits", f"{pg}&query=SELECT * FROM feats WHERE id < 200 ORDER BY id",
               f"sqlite:///{tmp_path}/back.db?table=t", key=["id"], batch_size=50, store=digits_store)
    assert back.rows_written == 200 and [r[0] for r in _sqlite_rows(tmp_path / "back.db", "t")] == list(range(200))
    with pytest.raises(PalletError, match="the input has 14 columns besides the key"):
        run("digits", f"{pg}&query=SELECT * FROM preds", f"sqlite:///{tmp_path}/back.db?table=t", key=["id"],
            store=digits_store)


def test_bad_rows_go_to_rejects_with_their_reason(digits_store, tmp_path):
    table = _table(500).to_pylist()
    table[3]["p0"] = "abc"
    table[7]["p5"] = None
    lines = ["id," + ",".join(f"p{i}" for i in range(64))]
    lines += [",".join("" if row[c] is None else str(row[c]) for c in ["id", *[f"p{i}" for i in range(64)]]) for row in table]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    record = run("digits", str(tmp_path / "in.csv"), f"sqlite:///{tmp_path}/p.db?table=preds", key=["id"],
                 batch_size=100, store=digits_store)
    assert (record.rows_read, record.rows_written, record.rows_rejected) == (500, 498, 2)
    with sqlite3.connect(tmp_path / "p.db") as conn:
        rejects = conn.execute("SELECT id, row, reason, input, run_id FROM preds_rejects ORDER BY row").fetchall()
        assert conn.execute("SELECT count(*) FROM preds WHERE id IN (3, 7)").fetchone() == (0,)
    assert [(r[0], r[1]) for r in rejects] == [("3", 3), ("7", 7)]
    assert "column 'p0': 'abc' is not a number" in rejects[0][2]
    assert "NaN" in rejects[1][2] and json.loads(rejects[1][3])["id"] == "7" and rejects[1][4] == record.id


def test_too_many_rejects_fail_the_run_and_keep_the_old_output(digits_store, tmp_path):
    out = f"sqlite:///{tmp_path}/p.db?table=preds"
    good = run("digits", _csv(tmp_path / "good.csv", _table(200)), out, key=["id"], store=digits_store)
    bad = _table(200).to_pylist()
    for row in bad[:10]:
        row["p1"] = "x"
    lines = ["id," + ",".join(f"p{i}" for i in range(64))] + [",".join(str(row[c]) for c in row) for row in bad]
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PalletError, match=r"10 of \d+ rows rejected, over --max-reject-rate 0.01"):
        run("digits", str(tmp_path / "bad.csv"), out, key=["id"], batch_size=50, store=digits_store)
    failed = RunLog(digits_store.index.engine).list(output=out)[0]
    assert failed.status == "failed" and "max-reject-rate" in failed.error
    with pytest.raises(PalletError, match="failed on its rejected rows"):
        resume(failed.id, store=digits_store)  # it would only fail again: a fixed input is a new run
    assert {r[3] for r in _sqlite_rows(tmp_path / "p.db")} == {good.id}  # readers still see the good run
    loose = run("digits", str(tmp_path / "bad.csv"), out, key=["id"], max_reject_rate=0.1, store=digits_store)
    assert loose.status == "succeeded" and loose.rows_rejected == 10


def test_rerun_replaces_the_output(digits_store, tmp_path):
    out = f"sqlite:///{tmp_path}/p.db?table=preds"
    source = _csv(tmp_path / "in.csv", _table(300))
    first = run("digits", source, out, key=["id"], store=digits_store)
    second = run("digits", source, out, key=["id"], store=digits_store)
    rows = _sqlite_rows(tmp_path / "p.db")
    assert len(rows) == 300 and {r[3] for r in rows} == {second.id} and first.id != second.id


@pytest.mark.parametrize(
    "args, message",
    [
        (("nosuch", "{tmp}/in.csv", "{tmp}/out"), "no model named 'nosuch'"),
        (("digits", "{tmp}/missing.csv", "{tmp}/out"), "missing.csv does not exist"),
        (("digits", "{tmp}/in.txt", "{tmp}/out"), "pallet reads .csv and .parquet files"),
        (("digits", "{tmp}/empty", "{tmp}/out"), "holds no .csv or .parquet files"),
        (("digits", "{tmp}/in.csv", "{tmp}/in.txt/out"), "cannot write output"),
        (("digits", "{tmp}/empty", "{tmp}/empty"), "would replace the input"),
        (("digits", "{tmp}/in.csv", "{tmp}"), "would replace the input"),
        (("digits", "{tmp}/in.csv", "{tmp}/mine"), "holds files pallet did not write"),
        (("digits", "sqlite:///{tmp}/p.db?table=t", "sqlite:///{tmp}/p.db?table=t"), "the output is the input table"),
        (("digits", "{tmp}/in.csv", "sqlite:///{tmp}/p.db"), "add ?table=NAME"),
        (("digits", "sqlite:///{tmp}/p.db?table=nope", "{tmp}/out"), "no such table: nope"),
        (("digits", "{tmp}/in.csv", "notadb://x?table=t"), "output database"),
        (("digits", "{tmp}/narrow.csv", "{tmp}/out"), "the input has 3 columns besides the key"),
    ],
)
def test_mistakes_fail_before_any_work(digits_store, tmp_path, args, message):
    _csv(tmp_path / "in.csv", _table(10))
    _csv(tmp_path / "narrow.csv", pa.table({"id": [1], "a": [1.0], "b": [2.0], "c": [3.0]}))
    (tmp_path / "in.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("years of work")
    ref, source, output = (a.format(tmp=tmp_path) for a in args)
    before = len(RunLog(digits_store.index.engine).list())
    with pytest.raises(PalletError, match=message.replace("?", r"\?").replace(".", r"\.")):
        run(ref, source, output, key=["id"], store=digits_store)
    assert len(RunLog(digits_store.index.engine).list()) == before  # no run record for a run that never started
    with pytest.raises(PalletError, match="key column 'nokey' is not in the input"):
        run("digits", str(tmp_path / "in.csv"), str(tmp_path / "out"), key=["nokey"], store=digits_store)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "years of work"


def test_sql_inputs_need_a_key_and_keys_cannot_shadow_outputs(digits_store, tmp_path):
    sa_engine = sa.create_engine(f"sqlite:///{tmp_path}/src.db")
    with sa_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE f (label INTEGER, " + ", ".join(f"p{i} REAL" for i in range(64)) + ")"))
        conn.execute(sa.text("INSERT INTO f VALUES (" + ", ".join(["1"] * 65) + ")"))
    with pytest.raises(PalletError, match="a SQL input needs --key"):
        run("digits", f"sqlite:///{tmp_path}/src.db?table=f", str(tmp_path / "out"), store=digits_store)
    with pytest.raises(PalletError, match="key column 'label' has the name of an output column"):
        run("digits", f"sqlite:///{tmp_path}/src.db?table=f", str(tmp_path / "out"), key=["label"], store=digits_store)


def test_text_keys_stay_text_unless_they_are_plain_numbers(digits_store, tmp_path):
    table = _table(4)
    ids = pa.array(["007", "7", "8", "9"])
    _csv(tmp_path / "in.csv", table.set_column(0, "id", ids))
    run("digits", str(tmp_path / "in.csv"), str(tmp_path / "out"), key=["id"], store=digits_store)
    assert sorted(pq.read_table(tmp_path / "out").column("id").to_pylist()) == ["007", "7", "8", "9"]


def test_resume_refuses_an_input_that_changed(digits_store, tmp_path):
    source = _csv(tmp_path / "in.csv", _table(300))
    out = f"sqlite:///{tmp_path}/p.db?table=preds"
    log = RunLog(digits_store.index.engine)
    done = run("digits", source, out, key=["id"], store=digits_store)
    record = log.get(done.id)
    record.status = "failed"  # as if it had died
    log.update(record)
    time.sleep(0.01)
    _csv(tmp_path / "in.csv", _table(300, start=1000))  # tomorrow's data at the same path
    with pytest.raises(PalletError, match="changed since it started"):
        resume(done.id, store=digits_store)
    fresh = subprocess.run([PALLET, "batch", "run", "digits", "-i", source, "-o", out, "-k", "id", "--resume"],
                           env=_env(digits_store), capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0 and "resuming" not in fresh.stderr  # a new run, not a mix of two inputs
    assert [r[0] for r in _sqlite_rows(tmp_path / "p.db")] == list(range(1000, 1300))


def _env(store):
    return {**{k: v for k, v in os.environ.items() if k != "PALLET_DB_URL"}, "PALLET_HOME": str(store.home)}


@pytest.mark.parametrize("sink", ["sqlite", "parquet"])
def test_sigkill_mid_run_then_resume_writes_every_key_exactly_once(digits_store, tmp_path, sink):
    rows = 40_000
    source = _csv(tmp_path / "in.csv", _table(rows))
    output = f"sqlite:///{tmp_path}/p.db?table=preds" if sink == "sqlite" else str(tmp_path / "out")
    proc = subprocess.Popen([PALLET, "batch", "run", "digits", "-i", source, "-o", output, "-k", "id",
                             "--batch-size", "250"], env=_env(digits_store), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    sink_state = open_sink(output)
    deadline = time.monotonic() + 120
    run_id = None
    while time.monotonic() < deadline and proc.poll() is None:
        runs = RunLog(digits_store.index.engine).list(output=output)
        if runs and runs[0].status == "running":
            run_id = runs[0].id
            if sink_state.checkpoint(run_id).chunks >= 5:
                break
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed; make the input bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed = RunLog(digits_store.index.engine).get(run_id)
    assert killed.status == "running" and killed.rows_read < rows  # nothing told the record it died
    done = subprocess.run([PALLET, "batch", "resume", run_id], env=_env(digits_store), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"run {run_id} succeeded: 40,000 rows read, 40,000 written" in done.stdout
    ids = (sorted(r[0] for r in _sqlite_rows(tmp_path / "p.db")) if sink == "sqlite"
           else sorted(pq.read_table(tmp_path / "out").column("id").to_pylist()))
    assert ids == list(range(rows))  # every key exactly once: no duplicate, none lost


def test_resume_flag_and_resume_of_a_finished_run(digits_store, tmp_path):
    source = _csv(tmp_path / "in.csv", _table(100))
    out = str(tmp_path / "out")
    finished = run("digits", source, out, key=["id"], store=digits_store)
    with pytest.raises(PalletError, match="already succeeded"):
        resume(finished.id, store=digits_store)
    with pytest.raises(PalletError, match="no batch run 'nope'"):
        resume("nope", store=digits_store)
    done = subprocess.run([PALLET, "batch", "run", "digits", "-i", source, "-o", out, "-k", "id", "--resume"],
                          env=_env(digits_store), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "succeeded: 100 rows read" in done.stdout  # nothing unfinished: a new run
    assert "rows/s" in done.stderr  # the progress bar


def test_runs_and_show_list_the_records(digits_store, tmp_path):
    record = run("digits", _csv(tmp_path / "in.csv", _table(50)), str(tmp_path / "out"), key=["id"], store=digits_store)
    listed = subprocess.run([PALLET, "batch", "runs", "--json"], env=_env(digits_store), capture_output=True,
                            text=True, timeout=60)
    assert any(r["id"] == record.id and r["rows_written"] == 50 for r in json.loads(listed.stdout))
    shown = subprocess.run([PALLET, "batch", "show", record.id], env=_env(digits_store), capture_output=True,
                           text=True, timeout=60)
    assert "status        succeeded" in shown.stdout and "output        label:" in shown.stdout
    missing = subprocess.run([PALLET, "batch", "show", "nope"], env=_env(digits_store), capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no batch run 'nope'; 'pallet batch runs' lists them"


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        _Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_check_exit_codes_webhook_and_metrics_file(digits_store, tmp_path):
    out = f"sqlite:///{tmp_path}/p.db?table=preds"
    env = _env(digits_store)

    def pallet_check(*args):
        return subprocess.run([PALLET, "batch", "check", "--output", out, *args], env=env, capture_output=True,
                              text=True, timeout=60)

    nothing = pallet_check()
    assert nothing.returncode == 1 and "no batch run has written" in nothing.stderr

    source = _csv(tmp_path / "in.csv", _table(1000))
    run("digits", source, out, key=["id"], store=digits_store)
    fresh = pallet_check("--max-age", "1h", "--metrics-file", str(tmp_path / "batch.prom"))
    assert fresh.returncode == 0 and fresh.stdout.startswith(f"ok: {out} written by run")
    metrics = (tmp_path / "batch.prom").read_text()
    assert f'pallet_batch_check_ok{{output="{out}"}} 1' in metrics and "pallet_batch_rows_written" in metrics

    runs = RunLog(digits_store.index.engine)
    later = datetime.now(timezone.utc) + timedelta(hours=25)
    stale = check(runs, out, max_age_seconds=parse_duration("24h"), now=later)
    assert not stale.ok and "finished 1d1h ago, over the limit of 1d" in stale.problems[0]

    sevens = X[Y == 7]  # the same model on only one kind of digit: its predictions drift
    run("digits", _csv(tmp_path / "sevens.csv", _table(1000, features=sevens)), out, key=["id"], store=digits_store)
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        drifted = pallet_check("--webhook", f"http://127.0.0.1:{server.server_port}/alert", "--json")
    finally:
        server.shutdown()
    assert drifted.returncode == 1 and "output 'label' drifted: population stability index" in drifted.stderr
    assert len(drifted.stderr.strip().splitlines()) == 1
    alert = _Hook.received[-1]
    assert alert["ok"] is False and alert["psi"]["label"] > 0.25 and alert["output"] == out

    shrunk = run("digits", _csv(tmp_path / "few.csv", _table(100, features=sevens)), out, key=["id"], store=digits_store)
    result = check(runs, out)
    assert any("wrote 100 rows, -90% from 1000" in p for p in result.problems) and shrunk.status == "succeeded"
    assert 'pallet_batch_output_psi{output="' in prometheus_text(result)

    with pytest.raises(PalletError):
        run("digits", str(tmp_path / "missing.csv"), out, store=digits_store)  # fails before it starts: no record
    bad = _table(100).to_pylist()
    lines = ["id," + ",".join(f"p{i}" for i in range(64))] + [",".join(["1"] + ["x"] * 64) for _ in bad]
    (tmp_path / "junk.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PalletError):
        run("digits", str(tmp_path / "junk.csv"), out, key=["id"], store=digits_store)
    failed = pallet_check()
    assert failed.returncode == 1 and "the latest run" in failed.stderr and "failed" in failed.stderr
    assert pallet_check("--max-age", "soon").returncode == 1


def test_schedule_writes_a_crontab_and_a_valid_cronjob(digits_store, tmp_path):
    import kubernetes_validate

    done = subprocess.run([PALLET, "batch", "schedule", "digits@production", "-i", "in.csv",
                           "-o", "sqlite:///preds.db?table=predictions", "-k", "id", "--cron", "30 1 * * *",
                           "--out", str(tmp_path / "s")], env=_env(digits_store), capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [l for l in (tmp_path / "s" / "crontab.txt").read_text().splitlines() if not l.startswith("#")]
    assert lines[0].startswith("30 1 * * * cd ") and "batch run digits@production" in lines[0]
    assert f"--input {tmp_path}/in.csv" in lines[0] and "--resume" in lines[0]
    assert f"'sqlite:///{tmp_path}/preds.db?table=predictions'" in lines[0]
    assert lines[1].startswith("17 * * * * ") and "batch check --output" in lines[1]
    manifests = list(yaml.safe_load_all((tmp_path / "s" / "cronjob.yaml").read_text()))
    for manifest in manifests:
        kubernetes_validate.validate(manifest, "1.30", strict=True)
    assert manifests[0]["spec"]["schedule"] == "30 1 * * *" and manifests[0]["spec"]["concurrencyPolicy"] == "Forbid"
    text = (tmp_path / "s" / "cronjob.yaml").read_text()
    for here in (str(tmp_path), str(digits_store.home), str(Path.home()), sys.executable):
        assert here not in text  # the cluster runs none of this machine's paths
    for manifest in manifests:  # both jobs: the image's store, local files on the declared volume
        pod = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "pallet-batch-data"}}]
        container = pod["containers"][0]
        assert container["image"] == "pallet-bundle:latest"
        assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
        assert {"name": "PALLET_HOME", "value": IMAGE_STORE} in container["env"]
        assert "sqlite:////data/preds.db?table=predictions" in container["command"]
    assert manifests[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][:6] == [
        "pallet", "batch", "run", "digits@production", "--input", "/data/in.csv"]
    assert "the CronJob mounts the volume claim 'pallet-batch-data' at /data" in done.stdout
    assert f"  input   {tmp_path}/in.csv -> in.csv on the volume (/data/in.csv in the CronJob)" in done.stdout
    assert f"  output  {tmp_path}/preds.db -> preds.db on the volume (/data/preds.db in the CronJob)" in done.stdout
    elsewhere = subprocess.run([PALLET, "batch", "schedule", "digits", "-i", "s3://bucket/in.parquet", "-o",
                                "postgresql://db/app?table=t", "--claim", "shared", "--out", str(tmp_path / "t")],
                               env=_env(digits_store), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr
    job = next(yaml.safe_load_all((tmp_path / "t" / "cronjob.yaml").read_text()))
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "shared"
    assert pod["containers"][0]["command"][4:8] == ["--input", "s3://bucket/in.parquet",  # URLs stay as given
                                                    "--output", "postgresql://db/app?table=t"]
    bad = subprocess.run([PALLET, "batch", "schedule", "digits", "-i", "a", "-o", "b", "--cron", "daily"],
                         env=_env(digits_store), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 1 and "is not a cron schedule of five fields" in bad.stderr


def test_schedule_keeps_files_from_other_folders_on_the_volume_and_apart(digits_store, tmp_path):
    work = tmp_path / "work"
    work.mkdir()

    def schedule(*args):
        return subprocess.run([PALLET, "batch", "schedule", "digits", *args, "--out", str(tmp_path / "s")],
                              env=_env(digits_store), capture_output=True, text=True, timeout=60, cwd=work)

    done = schedule("-i", "../inputs/x.parquet", "-o", "/b/x.parquet")
    assert done.returncode == 0, done.stderr
    command = next(yaml.safe_load_all((tmp_path / "s" / "cronjob.yaml").read_text()))[
        "spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[4:8] == ["--input", "/data/inputs/x.parquet", "--output", "/data/b/x.parquet"]
    assert f"--input {tmp_path}/inputs/x.parquet " in (tmp_path / "s" / "crontab.txt").read_text()
    assert f"  input   {tmp_path}/inputs/x.parquet -> inputs/x.parquet on the volume" in done.stdout
    refused = schedule("-i", "/a/x/in.csv", "-o", "/b/x/in.csv")
    assert refused.returncode == 1 and refused.stderr.strip() == (
        "error: the input /a/x/in.csv and the output /b/x/in.csv would both be /data/x/in.csv on the CronJob's "
        "volume; rename one, or run from a folder that holds both")


def test_schedule_writes_no_password_and_its_jobs_read_the_urls_when_they_run(tmp_path, postgres_url):
    import kubernetes_validate

    secret = "hunter2"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@", 1)
    index, output = url, url.replace("postgresql+psycopg", "postgresql") + "&table=preds"
    home, user, work = tmp_path / "home", tmp_path / "user", tmp_path / "work"
    user.mkdir(), work.mkdir()
    pallet.save(LogisticRegression(max_iter=300).fit(X, Y), "digits", sample=X[:5], store=Store(home, index))
    _csv(work / "in.csv", _table(200))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PALLET_")}, "HOME": str(user)}
    done = subprocess.run([PALLET, "batch", "schedule", "digits", "-i", "in.csv", "-o", output, "-k", "id",
                           "--out", str(work / "s")], env={**env, "PALLET_HOME": str(home), "PALLET_DB_URL": index},
                          capture_output=True, text=True, timeout=60, cwd=work)
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr
    for path in (work / "s").iterdir():
        assert secret not in path.read_text(), f"{path} holds the password"
    manifests = list(yaml.safe_load_all((work / "s" / "cronjob.yaml").read_text()))
    for manifest in manifests:
        kubernetes_validate.validate(manifest, "1.30", strict=True)
        container = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert "$(PALLET_BATCH_OUTPUT)" in container["command"]  # Kubernetes puts the variable's value there
        for variable, key in (("PALLET_BATCH_OUTPUT", "output"), ("PALLET_DB_URL", "db")):
            assert {"name": variable, "valueFrom": {"secretKeyRef": {"name": "pallet-batch-digits-urls",
                                                                     "key": key}}} in container["env"]
    placeholder = output.replace(f":{secret}@", ":PASSWORD@")
    assert (f"kubectl create secret generic pallet-batch-digits-urls --from-literal=output='{placeholder}' "
            f"--from-literal=db='{index.replace(f':{secret}@', ':PASSWORD@')}'") in done.stdout
    env_file = user / ".config" / "pallet" / "pallet-batch-digits.env"
    assert f"the file {env_file} (chmod 600)" in done.stdout
    lines = done.stdout[done.stdout.index("(chmod 600)"):].splitlines()[1:]
    env_file.parent.mkdir(parents=True)
    env_file.write_text("\n".join(l.strip().replace(":PASSWORD@", f":{secret}@") for l in lines
                                   if l.strip().startswith("export ")) + "\n")
    for line in (work / "s" / "crontab.txt").read_text().splitlines()[1:]:  # as cron runs them, with sh
        command = line.split(" ", 5)[5].replace("\\%", "%")
        ran = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr + (work / "pallet-batch-digits.log").read_text()
    with sa.create_engine(postgres_url).connect() as conn:
        assert [r[0] for r in conn.execute(sa.text("SELECT id FROM preds ORDER BY id"))] == list(range(200))
    log = (work / "pallet-batch-digits.log").read_text()
    assert "ok: " in log and secret not in log  # the check found the run in the index, and named it redacted


def test_ray_engine_runs_the_same_job_with_the_same_answers(digits_store, tmp_path):
    rows = _table(600).to_pylist()
    rows[250]["p3"] = "oops"
    lines = ["id," + ",".join(f"p{i}" for i in range(64))] + [",".join(str(r[c]) for c in r) for r in rows]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    local = run("digits", str(tmp_path / "in.csv"), f"sqlite:///{tmp_path}/local.db?table=preds", key=["id"],
                batch_size=100, store=digits_store)
    done = subprocess.run([PALLET, "batch", "run", "digits", "-i", str(tmp_path / "in.csv"),
                           "-o", f"sqlite:///{tmp_path}/ray.db?table=preds", "-k", "id", "--batch-size", "100",
                           "--engine", "ray"], env=_env(digits_store), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "succeeded: 600 rows read, 599 written, 1 rejected" in done.stdout
    with sqlite3.connect(tmp_path / "local.db") as a, sqlite3.connect(tmp_path / "ray.db") as b:
        query = "SELECT id, label, probabilities_3 FROM preds ORDER BY id"
        here, there = a.execute(query).fetchall(), b.execute(query).fetchall()
        assert [r[:2] for r in here] == [r[:2] for r in there]
        # the same model; BLAS may add in another order with another thread count: last-bit differences
        assert np.allclose([r[2] for r in here], [r[2] for r in there], rtol=1e-9, atol=1e-15)
        assert b.execute("SELECT row, reason FROM preds_rejects").fetchall() == [
            (250, "column 'p3': 'oops' is not a number")]
    assert local.rows_rejected == 1
    with pytest.raises(PalletError, match="--engine ray reads CSV or Parquet files"):
        run("digits", f"sqlite:///{tmp_path}/local.db?table=preds", str(tmp_path / "out"), key=["id"], engine="ray",
            store=digits_store)
    with pytest.raises(PalletError, match="--engine must be one of: local, ray"):
        run("digits", str(tmp_path / "in.csv"), str(tmp_path / "out"), engine="spark", store=digits_store)


def test_ray_engine_skips_exactly_the_rows_a_resumed_run_has_done(digits_store, tmp_path):
    import logging
    import warnings

    from pallet.batch.chunks import Job
    from pallet.batch.convert import plan_columns
    from pallet.batch.engines import engine_named
    from pallet.batch.records import RunRecord
    from pallet.batch.sources import open_source

    rows = _table(600).to_pylist()
    rows[100]["p3"] = rows[400]["p3"] = "oops"
    lines = ["id," + ",".join(f"p{i}" for i in range(64))] + [",".join(str(r[c]) for c in r) for r in rows]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    version = digits_store.resolve("digits")
    source = open_source(str(tmp_path / "in.csv"), ["id"])
    plan = plan_columns(version.signature, source.columns, ["id"], "digits")
    plan.key_types = {"id": "int"}
    record = RunRecord(id="ray-skip", model_ref="digits", model="digits", version=version.ref.version,
                       input=str(tmp_path / "in.csv"), output="unused", started="now",
                       options={"batch_size": 128, "workers": 1})
    import ray  # noqa: F401  importing Ray sets up its loggers; a run must change nothing more
    from ray.data import DataContext

    context = DataContext.get_current()
    settings_before = context.execution_options.preserve_order, context.enable_progress_bars
    # the caller's own Ray Data settings, the opposite of what a run needs: they must survive it
    context.execution_options.preserve_order, context.enable_progress_bars = False, True

    def data_settings():
        return context.execution_options.preserve_order, context.enable_progress_bars

    levels = {name: logging.getLogger(name).level for name in ("ray", "ray.data")}
    filters = list(warnings.filters)
    try:
        chunks = engine_named("ray").results(Job(record, version, source, None, plan), skip=250)  # chunks don't align
        results = [next(chunks)]
        # Ray's loggers, warnings and Data settings are changed while Ray works, not while the caller holds a chunk
        assert {name: logging.getLogger(name).level for name in levels} == levels
        assert warnings.filters == filters
        assert data_settings() == (False, True)
        results += list(chunks)
        assert {name: logging.getLogger(name).level for name in levels} == levels
        assert warnings.filters == filters
        assert data_settings() == (False, True)
        (tmp_path / "gone.csv").write_text((tmp_path / "in.csv").read_text())
        failing = Job(record, version, open_source(str(tmp_path / "gone.csv"), ["id"]), None, plan)
        (tmp_path / "gone.csv").unlink()
        with pytest.raises(Exception, match="gone.csv"):
            list(engine_named("ray").results(failing, skip=0))
        assert data_settings() == (False, True)  # a run that fails puts them back too
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = settings_before
    ids = [i for predictions, _, _ in results for i in predictions.column("id").to_pylist()]
    assert ids == [i for i in range(250, 600) if i != 400]
    rejected = [r for _, rejects, _ in results if rejects is not None for r in rejects.column("row").to_pylist()]
    assert rejected == [400]  # the row before the resume point is not rejected twice, and rows count from the file's start
    assert sum(read for _, _, read in results) == 350
