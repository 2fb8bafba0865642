"""Engines: what predicts a batch job's chunks. The runner hands an engine the job and how many rows
are done; the engine yields each later chunk's (predictions, rejects, rows read) in input order, and
the runner commits them. `local` predicts on threads here; `ray` on Ray Data (`ray_engine.py`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from pallet.batch.chunks import Job, Result, predict_chunk
from pallet.errors import PalletError
from pallet.model import Model

ENGINES = ("local", "ray")


class Engine(Protocol):
    workers: int

    def results(self, job: Job, skip: int) -> Iterator[Result]:
        """Each chunk's result after the first `skip` rows of the input, in input order."""
        ...


class LocalEngine:
    """`workers` chunks predicted at once on threads of this process, the model loaded once."""

    def __init__(self, workers: int = 1):
        self.workers = workers

    def results(self, job: Job, skip: int) -> Iterator[Result]:
        model = Model(job.version)
        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="pallet-batch") as pool:
                pending: deque = deque()
                first_row = skip
                for chunk in job.source.chunks(job.record.options.get("batch_size", 10_000), skip=skip):
                    pending.append(pool.submit(predict_chunk, chunk, job, model, first_row))
                    first_row += chunk.num_rows
                    if len(pending) > self.workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
        finally:
            model.close()  # the code the model imported goes with the run


def engine_named(name: str, workers: int = 1) -> Engine:
    """The engine `--engine` names."""
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        from pallet.batch.ray_engine import RayEngine  # Ray is imported only when asked for

        return RayEngine(workers)
    raise PalletError(f"--engine must be one of: {', '.join(ENGINES)}; got '{name}'")
