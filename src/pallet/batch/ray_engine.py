"""`--engine ray`: the same job on Ray Data. Ray reads the files and predicts (the model loaded once
per actor); the driver commits the chunks in input order through the same sink and checkpoints,
so a killed Ray run resumes (on either engine) with every key exactly once.

`ray.init()` joins the cluster `RAY_ADDRESS` names, or starts a local one. On a cluster, the
input files and PALLET_HOME must be readable from every node. Ray's log levels and warnings are
quietened while Ray starts, plans and computes the next chunk, and the Ray Data settings a run needs
(input order kept, no progress bars) hold only then too: all are put back before each chunk is
handed on, and when the run ends, fails or is abandoned, so the caller's own code runs with them as
it set them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc

from pallet.batch.chunks import ROW, Job, Result, predict_chunk
from pallet.model import Model

RAY_LOGGERS = ("ray", "ray.data")


class ChunkPredictor:
    """Ray Data's callable class: one per actor, the model loaded in `__init__`."""

    def __init__(self, job: Job):
        self.job = job
        self.model = Model(job.version)

    def __call__(self, table: pa.Table) -> pa.Table:
        predictions, rejects, read = predict_chunk(table, self.job, self.model, 0, with_rows=True)
        return pa.table({"predictions": [_ipc(predictions)], "rejects": [_ipc(rejects) if rejects else None],
                         "read": [read]})


class RayEngine:
    """Chunks predicted by a pool of `workers` Ray actors."""

    def __init__(self, workers: int = 1):
        self.workers = workers

    def results(self, job: Job, skip: int) -> Iterator[Result]:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            with _quiet_ray():
                ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR")
        try:
            with _ray_at_work():
                data = self._dataset(job)
            yield from _skipping(_chunk_rows(data), skip)
        finally:
            if started_here:
                with _quiet_ray():
                    ray.shutdown()

    def _dataset(self, job: Job):
        import ray

        from pallet.csv_reader import text_columns

        files = [str(f) for f in job.source.files]
        if job.source.kind == "parquet":
            data = ray.data.read_parquet(files)
        else:  # every column as text, as the local engine reads it
            data = ray.data.read_csv(files, convert_options=text_columns(job.source.columns))
        # Half a CPU per actor leaves room for the read tasks beside them (a 2-CPU machine would stall).
        return data.map_batches(ChunkPredictor, fn_constructor_kwargs={"job": job.for_workers()},
                                batch_format="pyarrow", batch_size=job.record.options.get("batch_size", 10_000),
                                num_cpus=0.5, compute=ray.data.ActorPoolStrategy(size=self.workers))


def _chunk_rows(data) -> Iterator[tuple[int, dict]]:
    """Each predicted chunk's first row in the input, and the chunk. Ray is quiet while it works on
    the next chunk, not while the caller holds this one."""
    offset = 0
    with _ray_at_work():
        batches = iter(data.iter_batches(batch_size=None, batch_format="pyarrow"))
    while True:
        with _ray_at_work():
            batch = next(batches, None)
        if batch is None:
            return
        for row in batch.to_pylist():
            yield offset, row
            offset += row["read"]


def _skipping(chunks: Iterator[tuple[int, dict]], skip: int) -> Iterator[Result]:
    """The chunks' results without the rows a resumed run already committed (chunks need not align)."""
    for start, row in chunks:
        predictions, read = _table(row["predictions"]), row["read"]
        rejects = _table(row["rejects"]) if row["rejects"] else None
        if start + read <= skip:
            continue  # committed before the run was resumed
        keep = max(skip - start, 0)
        predictions = predictions.filter(pc.greater_equal(predictions.column(ROW), keep)).drop_columns([ROW])
        if rejects is not None:
            rejects = rejects.filter(pc.greater_equal(rejects.column("row"), keep))
            rejects = rejects.set_column(rejects.schema.get_field_index("row"), "row",
                                         pc.add(rejects.column("row"), start))
        yield predictions, rejects, read - keep


@contextmanager
def _quiet_ray() -> Iterator[None]:
    """Ray's loggers at ERROR and its warnings ignored, inside the block only."""
    loggers = [logging.getLogger(name) for name in RAY_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="ray")
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextmanager
def _ray_at_work() -> Iterator[None]:
    """Ray quiet (`_quiet_ray`), and Ray Data keeping the input's order without progress bars, inside
    the block only: the process-wide DataContext gets back the values it had, whether the block ends or fails."""
    from ray.data import DataContext

    context = DataContext.get_current()
    options = context.execution_options
    before = options.preserve_order, context.enable_progress_bars
    try:
        with _quiet_ray():
            options.preserve_order, context.enable_progress_bars = True, False
            yield
    finally:
        options.preserve_order, context.enable_progress_bars = before


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
