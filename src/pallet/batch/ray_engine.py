"""`--engine ray`: the same job on Ray Data. Ray reads the files and predicts (the model loaded once
per actor); the driver commits the chunks in input order through the same sink and checkpoints,
so a killed Ray run resumes (on either engine) with every key exactly once.

`ray.init()` joins the cluster `RAY_ADDRESS` names, or starts a local one. On a cluster, the
input files and PALLET_HOME must be readable from every node.
"""

from __future__ import annotations

import logging
import warnings

import pyarrow as pa
import pyarrow.compute as pc

ROW = "__pallet_row"  # each prediction's row in its chunk, so a resumed run can skip what is done


class ChunkPredictor:
    """Ray Data's callable class: one per actor, the model loaded in `__init__`."""

    def __init__(self, job):
        from pallet.model import Model

        self.job = job
        self.model = Model(job.version)

    def __call__(self, table: pa.Table) -> pa.Table:
        from pallet.batch.runner import _predict_chunk

        predictions, rejects, read = _predict_chunk(table, self.job, self.model, 0, with_rows=True)
        return pa.table({"predictions": [_ipc(predictions)], "rejects": [_ipc(rejects) if rejects else None],
                         "read": [read]})


def results(job, skip: int):
    """(predictions, rejects, rows read) for each chunk after the first `skip` rows, in input order."""
    import pyarrow.csv as pcsv
    import ray
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="ray")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        context = DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        files = [str(f) for f in job.source.files]
        if job.source.kind == "parquet":
            data = ray.data.read_parquet(files)
        else:  # every column as text, as the local engine reads it
            types = {c: pa.string() for c in job.source.columns}
            data = ray.data.read_csv(files, convert_options=pcsv.ConvertOptions(column_types=types,
                                                                                strings_can_be_null=True))
        options = job.record.options
        light = type(job)(job.record, job.version, None, None, job.plan, job.home)  # what the actors need, no connections
        # Half a CPU per actor leaves room for the read tasks beside them (a 2-CPU machine would stall).
        data = data.map_batches(ChunkPredictor, fn_constructor_kwargs={"job": light}, batch_format="pyarrow",
                                batch_size=options.get("batch_size", 10_000), num_cpus=0.5,
                                compute=ray.data.ActorPoolStrategy(size=options.get("workers", 1)))
        offset = 0
        for batch in data.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                predictions, read = _table(row["predictions"]), row["read"]
                rejects = _table(row["rejects"]) if row["rejects"] else None
                start, offset = offset, offset + read
                if offset <= skip:
                    continue  # committed before the run was resumed
                keep = max(skip - start, 0)
                predictions = predictions.filter(pc.greater_equal(predictions.column(ROW), keep)).drop_columns([ROW])
                if rejects is not None:
                    rejects = rejects.filter(pc.greater_equal(rejects.column("row"), keep))
                    rejects = rejects.set_column(rejects.schema.get_field_index("row"), "row",
                                                 pc.add(rejects.column("row"), start))
                yield predictions, rejects, read - keep
    finally:
        if started_here:
            ray.shutdown()


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
