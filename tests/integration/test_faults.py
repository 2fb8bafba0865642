"""Faults in what pallet leans on, and nothing lost: PostgreSQL connections terminated under a batch run,
SIGKILL of a batch run (and of its resume) at any moment, SIGKILL of a server taking feedback.

Every fault is real: pg_terminate_backend on the run's own connections (found by their
application_name), a database that refuses connections, SIGKILL of real processes.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import pallet
from pallet.batch import RunLog
from pallet.model import load_runtime
from pallet.net import free_port, wait_ready
from pallet.store import Store
from tests.conftest import PG_URL

PALLET = str(Path(sys.executable).parent / "pallet")
X, Y = load_digits(return_X_y=True)


def wait_for(condition, seconds, message):
    """Poll `condition` until it is true (its value) or `seconds` pass (fail with `message`)."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


def digits_input(path, rows):
    """`rows` digits rows (the data set over and over) with an `id` key, as one Parquet file."""
    index = np.arange(rows) % len(X)
    pq.write_table(pa.table({"id": np.arange(rows), **{f"p{i}": X[index, i] for i in range(64)}}), path)
    return str(path)


def save_digits(store):
    pallet.save(LogisticRegression(max_iter=300).fit(X, Y), "digits", sample=X[:5], aliases=["production"], store=store)
    return load_runtime(store.resolve("digits")).predict({"input": X})  # a clean run's answers, per digits row


def assert_every_key_once(rows, count, expected):
    """`rows` of (id, label, probabilities_0): each id from 0 to count - 1 once, with a clean run's answers."""
    ids = np.array([r[0] for r in rows])
    assert len(ids) == count and np.array_equal(np.sort(ids), np.arange(count))  # no duplicate, none missing
    order = np.argsort(ids)
    labels = np.array([r[1] for r in rows])[order]
    first = np.array([r[2] for r in rows])[order]
    assert np.array_equal(labels, expected["label"][np.arange(count) % len(X)])
    assert np.allclose(first, expected["probabilities"][np.arange(count) % len(X), 0])


def pallet_env(home, db_url=None, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PALLET_DB_URL", "PGAPPNAME")}
    env.update(PALLET_HOME=str(home), **extra)
    if db_url:
        env["PALLET_DB_URL"] = db_url
    return env


# -- PostgreSQL connections terminated under a batch run -----------------------------------------


@pytest.fixture
def output_database(postgres_base_url):
    """A database of the test's own, so that refusing its connections touches nothing else."""
    name = f"pallet_fault_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield name, admin
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def terminate(admin, application_name, database=None) -> int:
    """Terminate the server connections of one client program; how many there were."""
    query = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :app "
             "AND pid <> pg_backend_pid()" + (" AND datname = :db" if database else ""))
    with admin.connect() as conn:
        return conn.execute(sa.text(query), {"app": application_name, "db": database}).scalar()



def chunks_done(engine: sa.Engine) -> int:
    """Chunks a run has committed into the output database (0 before its first)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("pallet_batch_checkpoints"):
            return 0
        state = conn.execute(sa.text("SELECT state FROM pallet_batch_checkpoints")).scalar()
    return json.loads(state)["chunks"] if state else 0

def test_postgres_connections_terminated_mid_run_retried_then_failed_then_resumed(tmp_path, postgres_url,
                                                                                   output_database):
    database, admin = output_database
    store = Store(tmp_path / "home", postgres_url)  # run records (and the model index) in PostgreSQL too
    expected = save_digits(store)
    rows = 100_000
    source = digits_input(tmp_path / "in.parquet", rows)
    out_url = PG_URL.rsplit("/", 1)[0] + f"/{database}"
    output = out_url.replace("postgresql+psycopg", "postgresql") + "?table=preds"
    app = f"pallet-fault-{uuid.uuid4().hex[:8]}"  # libpq names every connection of the run so
    out = sa.create_engine(out_url)

    proc = subprocess.Popen([PALLET, "batch", "run", "digits", "-i", source, "-o", output, "-k", "id",
                             "--batch-size", "500"], env=pallet_env(store.home, postgres_url, PGAPPNAME=app),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: chunks_done(out) >= 5 or proc.poll() is not None, 120, "the run wrote nothing")
        assert proc.poll() is None, "the run finished before the fault; make the input bigger"

        # 1. Every connection of the run dropped once (output and run records): it reconnects and goes on.
        assert terminate(admin, app) >= 1
        before = chunks_done(out)
        wait_for(lambda: chunks_done(out) >= before + 5 or proc.poll() is not None, 60, "the run stopped writing")
        assert proc.poll() is None, "the run ended after one lost connection: " + proc.communicate()[1][-2000:]

        # 2. The output database goes away for good: the run tries a few times, then fails and says why.
        with admin.connect() as conn:
            conn.execute(sa.text(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false"))
        out.dispose()
        terminate(admin, app, database)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 1
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("error: batch run ") and "Traceback" not in stderr
    record = RunLog(store.index.engine).list()[0]
    assert record.status == "failed" and record.status_now() == "failed"
    assert record.error.startswith(f"cannot write output {output}: the database could not be reached in 4 tries")
    assert "not currently accepting connections" in record.error and "\n" not in record.error
    assert f"{record.error} (resume it with 'pallet batch resume {record.id}')" in lines[-1]
    assert 0 < record.rows_read < rows

    with admin.connect() as conn:
        conn.execute(sa.text(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
    done = subprocess.run([PALLET, "batch", "resume", record.id], env=pallet_env(store.home, postgres_url),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"run {record.id} succeeded: 100,000 rows read, 100,000 written" in done.stdout
    with out.connect() as conn:
        written = conn.execute(sa.text("SELECT id, label, probabilities_0 FROM preds")).all()
        left = conn.execute(sa.text("SELECT count(*) FROM pallet_batch_checkpoints")).scalar()
    out.dispose()
    assert_every_key_once(written, rows, expected)
    assert left == 0  # the finished run's checkpoint is gone with its staging table


# -- SIGKILL of a batch run, and of its resume ------------------------------------------------------


def test_sigkill_of_a_run_and_of_its_resumes_then_every_key_once(tmp_path, postgres_url):
    store = Store(tmp_path / "home")  # run records in the default SQLite database
    expected = save_digits(store)
    rows = 40_000
    source = digits_input(tmp_path / "in.parquet", rows)
    output = postgres_url.replace("postgresql+psycopg", "postgresql") + "&table=preds"
    out = sa.create_engine(postgres_url)
    env = pallet_env(store.home)

    def cli(*args):
        return subprocess.run([PALLET, "batch", *args], env=env, capture_output=True, text=True, timeout=120)

    run_id, moments = None, []
    # Killed: in its first chunks, in a resume well under way, in a resume just after its first commit.
    for more in (3, 10, 1):
        command = ["run", "digits", "-i", source, "-o", output, "-k", "id", "--batch-size", "500"]
        proc = subprocess.Popen([PALLET, "batch", *(command if run_id is None else ["resume", run_id])], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            before = chunks_done(out)
            if run_id is None:
                run_id = wait_for(lambda: RunLog(store.index.engine).list(), 60, "no run record")[0].id
            wait_for(lambda: chunks_done(out) >= before + more or proc.poll() is not None, 60, "the run wrote nothing")
            assert proc.poll() is None, "the run finished before it could be killed; make the input bigger"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        moments.append(chunks_done(out))
        record = RunLog(store.index.engine).get(run_id)
        assert record.status == "running" and record.status_now() == "interrupted"  # stored, and as it stands
        listed = json.loads(cli("runs", "--json").stdout)
        assert [(r["id"], r["status"]) for r in listed] == [(run_id, "interrupted")]
        shown = cli("show", run_id).stdout
        assert "status        interrupted" in shown and f"pallet batch resume {run_id}" in shown
    assert 0 < moments[0] < moments[1] < moments[2] < rows // 500  # three different points, none at the end

    done = cli("resume", run_id)
    assert done.returncode == 0, done.stderr
    assert f"run {run_id} succeeded: 40,000 rows read, 40,000 written" in done.stdout
    assert json.loads(cli("runs", "--json").stdout)[0]["status"] == "succeeded"
    with out.connect() as conn:
        written = conn.execute(sa.text("SELECT id, label, probabilities_0 FROM preds")).all()
    out.dispose()
    assert_every_key_once(written, rows, expected)
    with sqlite3.connect(store.home / "index.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# -- SIGKILL of a server taking feedback ------------------------------------------------------------


def start_server(home, db_url):
    port = free_port()
    proc = subprocess.Popen([PALLET, "serve", "iris", "--port", str(port), "--no-access-log"],
                            env=pallet_env(home, db_url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_sigkill_of_a_server_loses_no_acknowledged_feedback(tmp_path, database, request):
    from sklearn.datasets import load_iris

    from pallet.ui.feedback import FeedbackLog

    db_url = request.getfixturevalue("postgres_url") if database == "postgres" else None  # SQLite: the default
    store = Store(tmp_path / "home", db_url)
    x, y = load_iris(return_X_y=True)
    pallet.save(LogisticRegression(max_iter=500).fit(x, y), "iris", sample=x[:3], store=store)
    acknowledged: list[str] = []
    sent: list[str] = []
    for round_, kill_after in enumerate((1, 40, 150)):  # three moments: at once, early, well under way
        proc, url = start_server(store.home, db_url)
        stop = threading.Event()

        def post(worker):
            with httpx.Client(timeout=10) as client:
                for i in range(2000):  # bounded, whatever happens
                    if stop.is_set():
                        return
                    request_id = f"r{round_}-{worker}-{i}"
                    sent.append(request_id)
                    body = {"request_id": request_id, "rating": "up" if i % 2 else "down", "comment": f"n{i}",
                            "inputs": {"input": [x[i % 150].tolist()]}, "outputs": {"label": [int(y[i % 150])]}}
                    try:
                        response = client.post(f"{url}/v2/models/iris/feedback", json=body)
                    except httpx.HTTPError:  # the server died under this request: unknown, not acknowledged
                        return
                    if 200 <= response.status_code < 300:
                        acknowledged.append(request_id)
                    else:
                        raise AssertionError(f"feedback refused: {response.status_code} {response.text}")

        threads = [threading.Thread(target=post, args=(n,), daemon=True) for n in range(4)]
        start = len(acknowledged)
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: len(acknowledged) - start >= kill_after or not any(t.is_alive() for t in threads), 60,
                     "the server acknowledged too little feedback")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert not any(t.is_alive() for t in threads)

    stored = [r["request_id"] for r in FeedbackLog(store.index.engine).records("iris")]
    assert len(stored) == len(set(stored))  # none twice
    assert set(acknowledged) <= set(stored) <= set(sent)  # every acknowledged one kept; nothing invented
    assert len(acknowledged) >= 191
    if database == "sqlite":
        with sqlite3.connect(tmp_path / "home" / "index.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    print(f"\nfeedback, {database}: {len(sent)} sent, {len(acknowledged)} acknowledged, {len(stored)} stored, "
          f"3 SIGKILLs")
