"""The schema is migrated on open. A store and a PostgreSQL database made by pallet from before
migrations (the code of commit BEFORE, run in a process of its own) open with every model,
alias, feedback record, rollout and batch run intact; an upgrade that cannot run says why in
one line."""

import inspect
import io
import json
import subprocess
import sys
import tarfile
import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from typer.testing import CliRunner

import pallet
from pallet.cli import app
from pallet.errors import PalletError
from pallet.store import Store
from pallet.store import schema
from pallet.store.database import make_engine
from pallet.store.migrate import CHECKPOINTS, HEADS, STORE, VERSION_TABLE, script_heads, stored_revisions

BEFORE = "280f2fea9f8dea2aae206b94a2f5a71a919b59ec"  # the last pallet that made its tables with create_all
REPO = Path(__file__).resolve().parents[2]
STORE_TABLES = sorted(schema.metadata.tables)


def summarize(store, output: str) -> dict:
    """What a user sees of every record through pallet's API. The old code runs this function too
    (its source is sent to the old process), so both read the records the same way."""
    import json
    from dataclasses import asdict

    from pallet.batch import RunLog
    from pallet.batch.sinks import SqlSink
    from pallet.rollout.state import RolloutState
    from pallet.ui.feedback import FeedbackLog

    engine = store.index.engine
    state = RolloutState(engine)
    rollout = state.get("iris")
    seen = {
        "versions": [[row.name, row.version, row.framework, row.runtime, row.size_bytes, row.metrics, row.tags,
                      aliases] for row, aliases in store.list()],
        "production": store.resolve("iris@production").manifest.version,
        "feedback": FeedbackLog(engine).records("iris"),
        "rollout": [rollout.revision, rollout.updated, json.loads(rollout.to_json())],
        "history": [asdict(event) for event in state.history("iris")],
        "runs": [record.to_dict() for record in RunLog(engine).list()],
        "checkpoint": asdict(SqlSink(output).checkpoint("old-unfinished")),
    }
    return json.loads(json.dumps(seen))


MAKE_OLD_STORE = '''
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import pallet
import pallet.batch
from pallet.batch.sinks import Checkpoint, SqlSink
from pallet.rollout.figures import Figures
from pallet.rollout.operations import Rollouts
from pallet.store import Store
from pallet.ui.feedback import FeedbackLog

home, db_url, output, work = sys.argv[1:]
x, y = load_iris(return_X_y=True)
store = Store(home, db_url)
for c in (0.1, 1.0, 10.0):
    store.save(LogisticRegression(C=c, max_iter=500).fit(x, y), "iris", sample=x[:5], metrics={"c": c},
               tags={"team": "search"})
store.tag("iris:2", "production")
store.tag("iris:1", "previous")
store.remove("iris:3")  # its number stays taken

feedback = FeedbackLog(store.index.engine)
feedback.add(model="iris", version=2, request_id="req-1", inputs={"input": x[:1].tolist()}, outputs={"label": [0]},
             rating="up", comment="right")
feedback.add(model="iris", version=2, request_id="req-2", inputs={"input": x[60:61].tolist()},
             outputs={"label": [2]}, rating="down", correct="1")

rollouts = Rollouts(store, actor="migration-test")
rollouts.start("iris", "iris:1", steps=[10, 50, 100], step_seconds=60)
figures = Figures()
figures.observe(0.01, True)
figures.observe(0.2, False)
rollouts.state.put_figures("iris", rollouts.get("iris").revision, "host-1:42", {"1": figures})

rows = pa.table({"id": list(range(20)), **{f"f{i}": x[:20, i] for i in range(4)}})
pcsv.write_csv(rows, f"{work}/input.csv")
pallet.batch.run("iris@production", f"{work}/input.csv", output, key=["id"], batch_size=8, store=store)
pallet.batch.run("iris@previous", f"{work}/input.csv", f"{work}/out.parquet", key=["id"], batch_size=8,
                 store=store)
# A run killed after its first chunk: its checkpoint waits in the output database for a resume.
SqlSink(output).write("old-unfinished", rows.slice(0, 5), None, Checkpoint(chunks=1, rows_read=5, rows_written=5))

print(json.dumps({"pallet": pallet.__file__, "seen": summarize(store, output)}))
'''


@pytest.fixture(scope="module")
def old_src(tmp_path_factory) -> Path:
    """pallet's source at BEFORE, from the git history."""
    done = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE, "src"], capture_output=True)
    if done.returncode:
        pytest.skip(f"needs pallet's git history with commit {BEFORE[:7]} (the code from before migrations): "
                    f"{done.stderr.decode().strip()}")
    folder = tmp_path_factory.mktemp("before")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(folder, filter="data")
    return folder / "src"


@pytest.fixture
def postgres_database(postgres_base_url):
    """A PostgreSQL database of its own (public schema, as a user's would be), dropped afterwards."""
    name = f"pallet_migr_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield sa.make_url(postgres_base_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_databases(request, tmp_path) -> tuple[str, str]:
    """The store's database URL and a batch output URL: on SQLite two files, on PostgreSQL one database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.db'}", f"sqlite:///{tmp_path / 'out.db'}?table=preds"
    url = request.getfixturevalue("postgres_database")
    return url, f"{url}?table=preds"


def make_old_store(old_src: Path, home: Path, db_url: str, output: str, work: Path) -> dict:
    script = work / "make_old_store.py"
    script.write_text(inspect.getsource(summarize) + MAKE_OLD_STORE)
    done = subprocess.run([sys.executable, str(script), str(home), db_url, output, str(work)], cwd=work,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(old_src), "PALLET_HOME": str(home)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    made = json.loads(done.stdout.splitlines()[-1])
    assert Path(made["pallet"]).is_relative_to(old_src), made["pallet"]  # the old code made it, not today's
    return made["seen"]


def table_rows(url: str, names: list[str]) -> dict[str, list[tuple]]:
    """Every row of each table, in a stable order, read without pallet."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            meta = sa.MetaData()
            meta.reflect(conn, only=names)
            return {name: sorted(tuple(row) for row in conn.execute(sa.select(meta.tables[name])))
                    for name in names}
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def schema_differences(url: str, metadata: sa.MetaData) -> list:
    """How the database's copy of `metadata`'s tables differs from `metadata` (nothing, when current)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "version_table": VERSION_TABLE, "compare_type": True,
                "include_name": lambda name, kind, _: kind != "table" or name in metadata.tables})
            return [diff for diff in compare_metadata(context, metadata) if not _sqlite_checkpoint_key(conn, diff)]
    finally:
        engine.dispose()


def _sqlite_checkpoint_key(conn: sa.Connection, diff) -> bool:
    """The one difference SQLite shows: it lets a primary key that is not an integer hold NULL unless
    the column says NOT NULL, and the checkpoint table never said it (pallet never writes NULL there)."""
    return (conn.dialect.name == "sqlite" and isinstance(diff, list)
            and all(change[0] == "modify_nullable" and change[2:4] == ("pallet_batch_checkpoints", "run_id")
                    for change in diff))


def test_a_store_made_before_migrations_opens_with_every_record_intact(old_src, old_databases, tmp_path):
    db_url, output = old_databases
    output_db = output.removesuffix("?table=preds")
    home = tmp_path / "home"
    seen_before = make_old_store(old_src, home, db_url, output, tmp_path)

    # The old code filled every table pallet has, and recorded no revision.
    assert VERSION_TABLE not in table_names(db_url) | table_names(output_db)
    rows_before = table_rows(db_url, STORE_TABLES)
    assert all(rows_before.values()), {name: len(rows) for name, rows in rows_before.items()}
    checkpoints_before = table_rows(output_db, ["pallet_batch_checkpoints"])
    assert len(checkpoints_before["pallet_batch_checkpoints"]) == 1
    assert len(seen_before["versions"]) == 2 and len(seen_before["feedback"]) == 2
    assert len(seen_before["runs"]) == 2 and seen_before["checkpoint"]["rows_written"] == 5

    store = Store(home, db_url)  # today's code: the upgrade runs here
    assert summarize(store, output) == seen_before
    assert table_rows(db_url, STORE_TABLES) == rows_before
    assert table_rows(output_db, ["pallet_batch_checkpoints"]) == checkpoints_before

    # Both histories are at their head, and the schema is today's, column for column.
    assert HEADS[STORE] in stored_revisions(store.index.engine)
    assert HEADS[CHECKPOINTS] in stored_revisions(make_engine(output_db))
    assert schema_differences(db_url, schema.metadata) == []
    assert schema_differences(output_db, schema.checkpoint_metadata) == []

    # And it keeps working: numbers and ids go on from where the old code left them.
    from pallet.ui.feedback import FeedbackLog

    saved = pallet.save(_iris_model(), "iris", sample=_iris()[0][:5], store=store)
    assert saved.version == 4  # 3 was removed by the old code and stays taken
    log = FeedbackLog(store.index.engine)
    assert log.add(model="iris", version=4, request_id="req-3", inputs={}, outputs={}) == 3


def _iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


def _iris_model():
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    return LogisticRegression(max_iter=500).fit(x, y)


def test_the_head_revisions_pallet_checks_on_open_are_the_scripts_heads():
    assert script_heads() == HEADS


def test_a_new_database_gets_todays_schema_at_the_head_revision(tmp_path, db_url):
    store = Store(tmp_path / "home", db_url)
    assert stored_revisions(store.index.engine) == {HEADS[STORE]}
    assert set(STORE_TABLES) <= table_names(db_url)
    assert schema_differences(db_url, schema.metadata) == []
    from pallet.batch.sinks import SqlSink

    SqlSink(f"{db_url}&table=preds" if "?" in db_url else f"{db_url}?table=preds")
    assert stored_revisions(store.index.engine) == {HEADS[STORE], HEADS[CHECKPOINTS]}  # one table, two histories
    assert schema_differences(db_url, schema.checkpoint_metadata) == []


def test_a_database_with_some_of_the_tables_keeps_them_and_gets_the_rest(tmp_path, db_url):
    """Before migrations, each table was created when first used: a store that never recorded
    feedback has no feedback table."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        for table in (schema.versions, schema.removed, schema.aliases):
            table.create(conn)
        conn.execute(schema.versions.insert().values(name="old", version=1, created="2024-01-01T00:00:00+00:00",
                                                     framework="sklearn", runtime="sklearn", size_bytes=10,
                                                     metrics="{}", tags="{}"))
    engine.dispose()
    store = Store(tmp_path / "home", db_url)
    assert [(row.name, row.version) for row in store.index.versions()] == [("old", 1)]
    assert set(STORE_TABLES) <= table_names(db_url)
    assert stored_revisions(store.index.engine) == {HEADS[STORE]}


def test_a_database_from_a_newer_pallet_is_one_line_and_untouched(tmp_path, db_url, monkeypatch):
    store = Store(tmp_path / "home", db_url)
    with store.index.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = 'store_9999'"))
    store.index.engine.dispose()
    with pytest.raises(PalletError, match="schema revision store_9999, which this pallet does not know") as e:
        Store(tmp_path / "home", db_url)
    assert "\n" not in str(e.value) and "upgrade pallet" in str(e.value)
    assert stored_revisions(sa.create_engine(db_url)) == {"store_9999"}

    monkeypatch.setenv("PALLET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PALLET_DB_URL", db_url)
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and "store_9999" in line


def test_an_upgrade_a_read_only_database_cannot_take_says_why(tmp_path):
    path = tmp_path / "index.db"
    engine = make_engine(f"sqlite:///{path}")  # as pallet made it before migrations: WAL, tables, no revision
    schema.metadata.create_all(engine)
    engine.dispose()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    with pytest.raises(PalletError) as e:
        Store(tmp_path / "home", read_only)
    message = str(e.value)
    assert "\n" not in message
    assert "needs its schema upgraded to revision store_0001, which cannot run" in message
    assert "readonly" in message
    assert VERSION_TABLE not in table_names(f"sqlite:///{path}")

    Store(tmp_path / "home", f"sqlite:///{path}")  # upgraded where it can be written,
    assert Store(tmp_path / "home", read_only).index.versions() == []  # it opens read-only from then on


def test_stores_opening_a_new_database_at_once_all_find_it_ready(tmp_path, db_url):
    openers = 6
    start, failures = threading.Barrier(openers), []

    def open_store() -> None:
        start.wait()
        try:
            Store(tmp_path / "home", db_url)  # each with an engine, so connections, of its own
        except Exception as e:  # noqa: BLE001  (collected for the assertion below)
            failures.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert stored_revisions(sa.create_engine(db_url)) == {HEADS[STORE]}


def test_doctor_prints_the_schema_revision_and_names_one_it_does_not_know(tmp_path):
    from pallet.doctor import INFO, OK, PROBLEM, check_store

    home, url = tmp_path / "home", f"sqlite:///{tmp_path / 'index.db'}"
    engine = make_engine(url)
    schema.metadata.create_all(engine)  # as pallet made it before migrations: tables, no revision
    home.mkdir()
    (finding,) = [f for f in check_store(home, url) if f.check == "index"]
    assert finding.level == INFO and "schema revision none" in finding.message and "store_0001" in finding.message

    (finding,) = [f for f in check_store(home, url) if f.check == "index"]  # the doctor opened the store
    assert finding.level == OK and finding.message.endswith("schema revision store_0001")

    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = 'store_9999'"))
    engine.dispose()
    (finding,) = [f for f in check_store(home, url) if f.check == "index"]
    assert finding.level == PROBLEM and "store_9999" in finding.message and "upgrade pallet" in finding.message
    with pytest.raises(PalletError) as opening:  # the doctor and the store say the same, naming it the same
        Store(home, url)
    assert str(opening.value) == finding.message and finding.message.startswith("the model index at sqlite:///")
