"""The thread plan: cores // workers threads per worker (at least one), unless the user says otherwise.

Whoever runs models limits the native thread pools they use: BLAS and OpenMP
(through threadpoolctl and the usual environment variables, which spawned workers
and libraries loaded later read), torch's intra-op pool and onnxruntime's. Without a
plan, N workers each start one thread per core and fight over the cores. The limits
hold inside `with limited(plan):` and are undone after it, so a library call leaves
the process as it found it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class ThreadPlan:
    workers: int
    cores: int
    threads: int          # per worker
    chosen: bool          # True when the user gave --threads

    def describe(self) -> str:
        """The plan as arithmetic that holds: '4 workers x 1 thread = 4 threads on 2 cores (...)'."""
        total = self.workers * self.threads
        text = (f"{_count(self.workers, 'worker')} x {_count(self.threads, 'thread')} = {_count(total, 'thread')} "
                f"on {_count(self.cores, 'core')} (BLAS, OpenMP, onnxruntime)")
        if self.chosen:
            text += ", as asked (--threads)"
        return text + ("; more threads than cores, so they take turns" if total > self.cores else "")

    def runtime_options(self) -> dict[str, int]:
        return {"intra_op_threads": self.threads, "inter_op_threads": 1}


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_threads(workers: int, threads: int | None = None) -> ThreadPlan:
    cores = available_cores()
    return ThreadPlan(workers, cores, threads or max(1, cores // workers), threads is not None)


def export(plan: ThreadPlan) -> None:
    """Set the environment variables native libraries read when they start (inherited by workers)."""
    for name in THREAD_ENV:
        os.environ[name] = str(plan.threads)


@contextmanager
def limited(plan: ThreadPlan) -> Iterator[ThreadPlan]:
    """Within the block: the thread pools already loaded in this process limited to the plan (torch's
    too, when torch is loaded), and the environment variables set for libraries loaded later. All are
    restored when the block ends."""
    from threadpoolctl import threadpool_limits

    before = {name: os.environ.get(name) for name in THREAD_ENV}
    torch = sys.modules.get("torch")  # never imported here: only a torch already loaded has a pool to limit
    torch_before = torch.get_num_threads() if torch is not None else None
    export(plan)
    try:
        if torch is not None:
            torch.set_num_threads(plan.threads)
        with threadpool_limits(limits=plan.threads):
            yield plan
    finally:
        if torch is not None:
            torch.set_num_threads(torch_before)
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
