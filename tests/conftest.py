import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from pallet.store import Store

PG_URL = os.environ.get("PALLET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# Under pytest-xdist (make test-fast), each worker takes ports from its own range below the
# system's ephemeral ones, so two workers never start servers on the same port.
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw") and "PALLET_PORT_RANGE" not in os.environ:
    _worker, _workers = int(os.environ["PYTEST_XDIST_WORKER"][2:]), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _width = 12000 // max(_workers, 1)
    os.environ["PALLET_PORT_RANGE"] = f"{20000 + _worker * _width}-{20000 + (_worker + 1) * _width - 1}"

# Load, fault and fuzz tests, torch exports, Ray, and any other test that takes more than about five
# seconds on two cores (measure with --durations=0), by file or by file::function. `make test` runs
# them; `make test-fast` leaves them out.
SLOW = {
    "unit/test_fuzz_coverage_guided.py",
    "serve/test_fuzz_api.py",
    "serve/test_cache_faults.py",
    "integration/test_faults.py",
    "integration/test_scale_out.py",
    "integration/test_rollout_cli.py::test_every_worker_of_every_replica_follows_the_cli",
    "integration/test_build.py::test_a_fresh_venv_built_as_the_dockerfile_says_serves_the_bundle",
    "integration/test_batch.py::test_sigkill_mid_run_then_resume_writes_every_key_exactly_once",
    "serve/test_limits_and_stopping.py::test_a_killed_worker_is_replaced_and_the_server_stays_ready",
    "serve/test_limits_and_stopping.py::test_sigterm_turns_readiness_off_lets_in_flight_requests_finish_and_exits_0",
    "serve/test_rollouts.py::test_promote_and_rollback_under_load_fail_no_request",
    "serve/test_rollouts.py::test_a_canary_to_a_bad_version_rolls_back_by_itself",
    "serve/test_rollouts.py::test_a_canary_to_a_good_version_reaches_100_percent",
    "serve/test_limits_and_stopping.py::test_a_model_that_fails_its_warm_up_is_not_served",
    "serve/test_torch_models.py::test_minilm_exports_to_onnx_and_int8_keeping_its_tokenizer",
    "integration/test_batch.py::test_ray_engine_runs_the_same_job_with_the_same_answers",
    "integration/test_batch.py::test_ray_engine_skips_exactly_the_rows_a_resumed_run_has_done",
    "integration/test_export.py::test_fits_answers_which_variants_fit_and_fails_when_none_does",
    "integration/test_export.py::test_fits_leaves_out_variants_a_graph_does_not_have_and_says_how_it_measured",
    "integration/test_export.py::test_cli_export_optimize_and_their_errors",
    "integration/test_export.py::test_cli_models_show_diff_and_list_report_size",
    "integration/test_export.py::test_distilled_student_is_smaller_and_close_to_its_teacher",
    "integration/test_export.py::test_quantized_children_are_smaller_and_still_agree",
    "integration/test_export.py::test_a_torch_model_the_exporter_cannot_trace_fails_with_its_cause_in_one_line",
    "integration/test_concurrent_saves.py",
    "integration/test_migrations.py::test_a_store_made_before_migrations_opens_with_every_record_intact",
    "integration/test_batch.py::test_check_exit_codes_webhook_and_metrics_file",
    "integration/test_build.py::test_serve_bundle_serves_exactly_what_it_holds",
    "serve/test_server.py::test_pallet_serve_with_two_workers_aggregates_metrics",
    "serve/test_server.py::test_serve_returns_with_the_environment_as_it_was",
    "serve/test_bench.py::test_bench_starts_a_server_and_reports_each_level",
    "integration/test_demo.py::test_a_second_demo_reuses_every_model_and_leaves_the_aliases_as_they_were",
    "integration/test_demo.py::test_retrain_stores_a_new_version_of_each_model_and_a_later_demo_reuses_those",
    "integration/test_cli_conventions.py::test_fits_marks_no_variant_yes_when_no_format_the_device_runs_carries_the_model",
    "integration/test_cli_conventions.py::test_fits_names_the_one_variant_that_fits_and_the_format_that_carries_it",
}

# Folders of the checkout that tests once wrote into: they must come out of a run as they went in.
GUARDED = ["docs/screenshots", "benchmarks/results"]
_guarded_key = pytest.StashKey[dict[str, str]]()
_changed_key = pytest.StashKey[list[str]]()


def pytest_collection_modifyitems(config, items):
    """Marks every browser test `e2e` and every test in SLOW `slow`, for `make test-fast`."""
    _check_slow_names()
    for item in items:
        where = Path(item.path).resolve()
        if TESTS / "e2e" in where.parents:
            item.add_marker(pytest.mark.e2e)
        module = where.relative_to(TESTS).as_posix() if TESTS in where.parents else None
        if module in SLOW or f"{module}::{getattr(item, 'originalname', item.name)}" in SLOW:
            item.add_marker(pytest.mark.slow)


def _check_slow_names() -> None:
    for entry in SLOW:
        module, _, function = entry.partition("::")
        path = TESTS / module
        if not path.is_file() or (function and f"def {function}(" not in path.read_text()):
            raise pytest.UsageError(f"tests/conftest.py SLOW names {entry}, which does not exist: update SLOW")


def _guarded_files() -> dict[str, str]:
    refreshed = os.environ.get("PALLET_SCREENSHOTS")  # `make screenshots` writes docs/screenshots on purpose
    found = {}
    for folder in GUARDED:
        if refreshed and Path(refreshed).resolve() == ROOT / folder:
            continue
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file():
                found[path.relative_to(ROOT).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def pytest_sessionstart(session):
    session.config.stash[_guarded_key] = _guarded_files()


def pytest_sessionfinish(session, exitstatus):
    """Fails the run when a test wrote into the checkout (screenshots and benchmark results go to scratch)."""
    before = session.config.stash.get(_guarded_key, None)
    if before is None:
        return
    after = _guarded_files()
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    session.config.stash[_changed_key] = changed
    if changed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    changed = config.stash.get(_changed_key, [])
    if changed:
        terminalreporter.section("files of the checkout changed during the test run", red=True)
        for name in changed:
            terminalreporter.write_line(name)
        terminalreporter.write_line("tests write to tmp_path or a scratch folder, never into the checkout")


def _postgres_reachable() -> str | None:
    try:
        with sa.create_engine(PG_URL).connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as e:  # any failure to connect means: skip, and say why
        return f"PostgreSQL not reachable at {PG_URL}: {type(e).__name__}"
    return None


@pytest.fixture(scope="session", autouse=True)
def scratch_default_store(tmp_path_factory):
    """PALLET_HOME in a scratch folder for the whole run (whatever the shell had), so no test reads or
    writes the real default store (~/.pallet) and no test depends on the folder it runs in; a test
    that needs a store of its own names it (the `home` fixture, or PALLET_HOME in a subprocess's env)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PALLET_HOME", str(tmp_path_factory.mktemp("default-store")))
        yield


@pytest.fixture(scope="session")
def postgres_base_url():
    reason = _postgres_reachable()
    if reason:
        pytest.skip(reason)
    return PG_URL


@pytest.fixture
def postgres_url(postgres_base_url):
    """A PostgreSQL URL whose tables live in a schema of their own, dropped afterwards."""
    schema = f"pallet_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(postgres_base_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"create schema {schema}"))
    yield f"{postgres_base_url}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"drop schema {schema} cascade"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """Each store test runs against SQLite and against PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(tmp_path, db_url):
    return Store(tmp_path / "home", db_url)


@pytest.fixture(scope="session")
def digits():
    x, y = load_digits(return_X_y=True)
    return x, y


@pytest.fixture(scope="session")
def digits_model(digits):
    x, y = digits
    return LogisticRegression(max_iter=300).fit(x[:600], y[:600])


@pytest.fixture
def home(tmp_path, monkeypatch):
    """PALLET_HOME in a fresh folder, for code that uses the default store."""
    path = tmp_path / "pallet-home"
    monkeypatch.setenv("PALLET_HOME", str(path))
    monkeypatch.delenv("PALLET_DB_URL", raising=False)
    return path


def rows(n: int = 3, features: int = 64) -> np.ndarray:
    return np.arange(n * features, dtype=np.float64).reshape(n, features) % 17
