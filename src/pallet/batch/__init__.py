"""Batch prediction: data to a table, in resumable chunks, with run records and checks.

`pallet.batch.run(...)` is what a scheduler (Airflow, Dagster, cron) calls; it returns the run record.
`pallet.batch.check.check(...)` tells whether an output is fresh, whole and like the run before.
"""

from pallet.batch.records import RunLog, RunRecord
from pallet.batch.runner import resume, run

__all__ = ["RunLog", "RunRecord", "resume", "run"]
