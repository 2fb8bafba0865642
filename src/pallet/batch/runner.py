"""`pallet batch run`: a model over a data set, into a table, in resumable committed chunks."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from pallet import threads
from pallet.batch.chunks import Job
from pallet.batch.convert import keys_of, outputs_of, plan_columns
from pallet.batch.engines import ENGINES, engine_named
from pallet.batch.records import RunLog, RunRecord, now
from pallet.batch.sinks import Checkpoint, open_sink
from pallet.batch.sources import FileSource, normalize, open_source, split_url
from pallet.batch.summary import Summary
from pallet.errors import PalletError, first_line
from pallet.store import Store, default_store
from pallet.urls import redact

RECORD_EVERY_SECONDS = 1.0
Progress = Callable[[int, int | None], None]   # rows done, rows in all (None when unknown)


class TooManyRejects(PalletError):
    """More bad rows than --max-reject-rate allows."""


def run(ref: str, input: str, output: str, *, key: list[str] | tuple[str, ...] = (), batch_size: int = 10_000,
        workers: int = 1, max_reject_rate: float = 0.01, engine: str = "local", store: Store | None = None,
        progress: Progress | None = None) -> RunRecord:
    """Predict with `ref` on every row of `input` and write the predictions to `output`; the run record.

    Everything that can be checked is checked before any work: the model, the input, the output,
    and that the input's columns fit the model. A failure leaves a resumable run (`resume`).
    """
    if batch_size < 1:
        raise PalletError(f"--batch-size must be 1 or more, got {batch_size}")
    if workers < 1:
        raise PalletError(f"--workers must be 1 or more, got {workers}")
    if engine not in ENGINES:
        raise PalletError(f"--engine must be one of: {', '.join(ENGINES)}; got '{engine}'")
    if not 0 <= max_reject_rate <= 1:
        raise PalletError(f"--max-reject-rate is a fraction from 0 to 1, got {max_reject_rate}")
    store = store or default_store()
    runs = RunLog(store.index.engine)
    version = store.resolve(ref)
    input, output = normalize(input), normalize(output)
    _check_apart(input, output)
    source = open_source(input, list(key))
    if engine == "ray" and not isinstance(source, FileSource):
        raise PalletError("--engine ray reads CSV or Parquet files (ray.data); read SQL inputs with the local engine")
    if source.total_rows == 0:
        raise PalletError(f"input {source.description} has no rows")
    sink = open_sink(output)
    plan = plan_columns(version.signature, source.columns, list(key), version.ref.name)
    options = {"key": list(key), "batch_size": batch_size, "workers": workers, "max_reject_rate": max_reject_rate,
               "engine": engine, "fingerprint": source.fingerprint()}
    record = RunRecord(id=RunLog.new_id(), model_ref=str(ref), model=version.ref.name, version=version.ref.version,
                       input=input, output=output, started=now(), options=options)
    record.claim()
    runs.start(record)
    return _execute(Job(record, version, source, sink, plan, store.home), runs, progress)


def resume(run_id: str, *, store: Store | None = None, progress: Progress | None = None) -> RunRecord:
    """Finish a run that failed or was killed, from its last committed chunk, with the same model version."""
    store = store or default_store()
    runs = RunLog(store.index.engine)
    record = runs.get(run_id)
    if record.status == "succeeded":
        raise PalletError(f"run {run_id} already succeeded; start a new run to predict again")
    if not record.options.get("resumable", True):
        raise PalletError(f"run {run_id} failed on its rejected rows ({record.error}); fix the input and start "
                          "a new run")
    version = store.resolve(f"{record.model}:{record.version}")
    key = record.options.get("key", [])
    source, sink = open_source(record.input, key), open_sink(record.output)
    if source.fingerprint() != record.options.get("fingerprint", source.fingerprint()):
        raise PalletError(f"the input of run {run_id} changed since it started ({record.input}); resuming would "
                          "mix two inputs, so start a new run")
    plan = plan_columns(version.signature, source.columns, key, version.ref.name)
    plan.key_types = dict(record.options.get("key_types", {}))
    with _lock(store.home, run_id):  # not while another process runs it
        pass
    record.status, record.error, record.finished = "running", None, None
    record.claim()
    runs.update(record)
    return _execute(Job(record, version, source, sink, plan, store.home), runs, progress)


def latest_unfinished(input: str, output: str, ref: str, store: Store | None = None) -> RunRecord | None:
    """The newest run of the same job that did not succeed (for `--resume`)."""
    store = store or default_store()
    version = store.resolve(ref)
    input, output = normalize(input), normalize(output)
    for record in RunLog(store.index.engine).list(output=output):
        if record.status == "succeeded" or not record.options.get("resumable", True):
            return None
        if (record.input, record.model, record.version) == (input, version.ref.name, version.ref.version):
            current = open_source(input, record.options.get("key", [])).fingerprint()
            return record if current == record.options.get("fingerprint") else None  # changed input: a new run
    return None


def _check_apart(input: str, output: str) -> None:
    """The output is replaced at the end of a run: it must not be, or hold, the input."""
    if "://" in input or "://" in output:
        if input.split("?")[0] == output.split("?")[0] and split_url(input, ("table",))[1].get("table") == \
                split_url(output, ("table",))[1].get("table") is not None:
            raise PalletError("the output is the input table; write the predictions to another table")
        return
    source, target = Path(input), Path(output)
    if source == target or target in source.parents or source in target.parents:
        raise PalletError(f"the output {output} would replace the input {input}; name another folder")


def _lock(store_home: Path, run_id: str):
    """Held while a run executes: a second process on the same run stops at once (a dead one's lock is gone)."""
    import fcntl

    folder = store_home / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / f"batch-{run_id}.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise PalletError(f"run {run_id} is running in another process on this machine; wait for it to end") from None
    return handle


def _execute(job: Job, runs: RunLog, progress: Progress | None) -> RunRecord:
    """The run, holding its lock, with the thread plan for its workers in force until it ends."""
    plan = threads.plan_threads(job.record.options.get("workers", 1))
    with _lock(job.home, job.record.id), threads.limited(plan):
        return _execute_locked(job, runs, progress)


def _execute_locked(job: Job, runs: RunLog, progress: Progress | None) -> RunRecord:
    record, options = job.record, job.record.options
    state = job.sink.checkpoint(record.id)
    record.rows_read, record.rows_written, record.rows_rejected = state.rows_read, state.rows_written, state.rows_rejected
    summary = Summary.from_dict(record.summary)
    engine = engine_named(options.get("engine", "local"), options.get("workers", 1))
    total = job.source.total_rows
    allowed = options.get("max_reject_rate", 0.01)
    if progress:
        progress(record.rows_read, total)
    try:
        if not job.plan.key_types and job.plan.keys:  # decide text keys' type once, before any worker does
            first = next(job.source.chunks(options.get("batch_size", 10_000)), None)
            if first is not None:
                keys_of(first, job.plan, {})
        for result in engine.results(job, state.rows_read):
            _commit(result, job, state, summary, runs, progress, total, allowed)
        if record.rows_read and record.rows_rejected / record.rows_read > allowed:
            raise TooManyRejects(_too_many_rejects(record, allowed))
        job.sink.finish(record.id)
    except (Exception, KeyboardInterrupt) as e:
        record.status, record.finished, record.error = "failed", now(), _reason(e)
        # Too many bad rows is the data's fault: running on would fail again; a fixed input is a new run.
        record.options["resumable"] = not isinstance(e, TooManyRejects)
        hint = f" (resume it with 'pallet batch resume {record.id}')" if record.options["resumable"] else ""
        try:
            runs.update(record)
        except PalletError as unrecorded:  # the failure stands; its record says running, until resumed
            hint += f"; {unrecorded}"
        raise PalletError(f"batch run {record.id} failed: {record.error}{hint}") from None
    record.status, record.finished = "succeeded", now()
    runs.update(record)
    return record


def _commit(result, job: Job, state: Checkpoint, summary: Summary, runs: RunLog, progress, total, allowed) -> None:
    predictions, rejects, read = result
    record = job.record
    state.chunks += 1
    state.rows_read += read
    state.rows_written += predictions.num_rows
    state.rows_rejected += rejects.num_rows if rejects is not None else 0
    job.sink.write(record.id, predictions, rejects, state)
    record.rows_read, record.rows_written, record.rows_rejected = state.rows_read, state.rows_written, state.rows_rejected
    summary.add(outputs_of(predictions, job.version.signature))
    record.summary = summary.to_dict()
    record.options["key_types"] = job.plan.key_types
    if time.monotonic() - job.saved > RECORD_EVERY_SECONDS:  # the sink's checkpoint is the exact count
        runs.update(record)
        job.saved = time.monotonic()
    if total and record.rows_rejected > allowed * total:
        raise TooManyRejects(_too_many_rejects(record, allowed))
    if progress:
        progress(record.rows_read, total)


def _reason(error: BaseException) -> str:
    """Why a run failed, in one line."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, PalletError):
        return str(error)
    if isinstance(error, sa.exc.DBAPIError):  # SQLAlchemy's text adds the statement and a link
        return f"database error: {first_line(error.orig)}"
    return f"{type(error).__name__}: {first_line(error)}"


def _too_many_rejects(record: RunRecord, allowed: float) -> str:
    return (f"{record.rows_rejected} of {record.rows_read} rows rejected, over --max-reject-rate {allowed:g}; "
            f"the reasons are in the rejects of {redact(record.output)}")


__all__ = ["run", "resume", "latest_unfinished"]
