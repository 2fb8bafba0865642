"""One chunk of a batch job, predicted: what every engine runs, on a worker thread or a Ray actor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pallet.batch.convert import Plan, arrow_column, keys_of, output_columns, raw_rows, to_inputs, validate
from pallet.batch.records import RunRecord
from pallet.batch.sinks import Sink
from pallet.batch.sources import Source
from pallet.errors import PredictionError
from pallet.model import Model
from pallet.store import ModelVersion

ROW = "__pallet_row"  # each prediction's row in its chunk, so a resumed run can skip what is done
Result = tuple[pa.Table, "pa.Table | None", int]  # predictions, rejects (None when none), rows read


@dataclass
class Job:
    record: RunRecord
    version: ModelVersion
    source: Source | None
    sink: Sink | None
    plan: Plan
    home: Path = Path(".")  # the store's folder: where run locks live
    saved: float = 0.0  # when the run record was last written

    def for_workers(self) -> Job:
        """The job without its source and sink: what a remote worker needs, with no open connections."""
        return Job(self.record, self.version, None, None, self.plan, self.home)


def predict_chunk(table: pa.Table, job: Job, model: Model, first_row: int, with_rows: bool = False) -> Result:
    """Predictions and rejects of one chunk (runs on a worker thread, or a Ray actor with `with_rows`:
    then each prediction also carries its row in the chunk)."""
    signature = job.version.signature
    arrays, bad = to_inputs(table, job.plan, signature)
    keys = keys_of(table, job.plan, bad)
    rows = np.setdiff1d(np.arange(table.num_rows), np.fromiter(bad, np.int64, len(bad))) if bad else np.arange(table.num_rows)
    rows, valid = validate(arrays, rows, signature, bad) if len(rows) else (rows, None)
    outputs: dict = {}
    if valid is not None:
        try:
            outputs = model.run(valid)
        except PredictionError:  # find the rows the model refuses; the others keep their predictions
            keep, parts = [], []
            for i in rows:
                try:
                    parts.append(model.run({name: a[i:i + 1] for name, a in arrays.items()}))
                    keep.append(i)
                except PredictionError as e:
                    bad[int(i)] = str(e)
            rows = np.array(keep, dtype=np.int64)
            outputs = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if parts else {}
    record = job.record
    columns = {name: column.take(pa.array(rows)) for name, column in keys.items()}
    for name, values in output_columns(outputs, signature).items():
        columns[name] = arrow_column(values)
    n = len(rows)
    columns["model"] = pa.array([record.model] * n, pa.string())
    columns["version"] = pa.array([record.version] * n, pa.int64())
    columns["run_id"] = pa.array([record.id] * n, pa.string())
    predictions = pa.table(columns) if outputs else _empty_predictions(keys, n, record)
    if with_rows:
        predictions = predictions.append_column(ROW, pa.array(rows, pa.int64()))
    rejects = None
    if bad:
        order = sorted(bad)
        rejects = pa.table({
            **{name: column.take(pa.array(order)).cast(pa.string()) for name, column in keys.items()},
            "row": pa.array([first_row + i for i in order], pa.int64()),
            "reason": pa.array([bad[i] for i in order], pa.string()),
            "input": pa.array(raw_rows(table, order), pa.string()),
            "run_id": pa.array([record.id] * len(order), pa.string()),
        })
    return predictions, rejects, table.num_rows


def _empty_predictions(keys, n, record) -> pa.Table:
    return pa.table({**{name: column.slice(0, 0) for name, column in keys.items()},
                     "model": pa.array([], pa.string()), "version": pa.array([], pa.int64()),
                     "run_id": pa.array([], pa.string())})
