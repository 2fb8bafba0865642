"""Adaptive batching: concurrent requests for one model become one `predict` call on axis 0.

While a batch computes, the next one fills, so batches grow with load by themselves.
When the model is free, the waiting requests run at once, unless the traffic is
concurrent (the last batch had company and requests arrive closer together than the
window): then the batch runs as soon as it is full, or when its oldest request has
waited `max_latency_ms`. A lone request is never held for the window.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(eq=False)
class Pending:
    inputs: Arrays
    rows: int
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)
    timing: dict[str, float] = field(default_factory=dict)   # when its predict call started and finished


class Batcher:
    def __init__(self, run: Callable[[Arrays], Arrays], executor: Executor, max_batch_size: int,
                 max_latency_ms: float, observe: Callable[[int, float], None] = lambda size, wait: None):
        self.run = run
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000
        self.observe = observe            # (batch rows, seconds the oldest request waited)
        self.queue: deque[Pending] = deque()
        self.wakeup = asyncio.Event()
        self.gap = float("inf")           # moving average of the time between arrivals
        self.last_arrival: float | None = None
        self.last_batch = 1               # requests in the previous batch
        self.busy = False                 # the model is computing (a batch, or a lone request)
        self.task: asyncio.Task | None = None
        self.closed = False

    async def submit(self, inputs: Arrays, timing: dict[str, float] | None = None) -> Arrays:
        """Outputs for one request's rows, computed in a batch with whatever else is waiting; `timing`
        gets when the predict call that answered it started and finished (`timed`)."""
        if self.closed:
            raise RuntimeError("the model was unloaded")
        rows = len(next(iter(inputs.values())))
        loop = asyncio.get_running_loop()
        timing = {} if timing is None else timing
        if rows >= self.max_batch_size:  # big enough on its own
            self.observe(rows, 0.0)
            return await loop.run_in_executor(self.executor, timed, self.run, inputs, timing)
        pending = Pending(inputs, rows, loop.create_future(), timing=timing)
        self._note_arrival(pending.arrived)
        if not self.busy and not self.queue and self.last_batch <= 1:
            # The model is free and nobody waits: run now, without a hand-over to the batch task.
            self.busy = True
            self.observe(rows, 0.0)
            try:
                return await loop.run_in_executor(self.executor, timed, self.run, inputs, timing)
            finally:
                self.busy = False
                if self.queue:
                    self.wakeup.set()
        self.queue.append(pending)
        self.wakeup.set()
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._serve())
        try:
            return await pending.future
        except asyncio.CancelledError:  # the caller went away: drop the request if it has not started
            if pending in self.queue:
                self.queue.remove(pending)
            raise

    def close(self) -> None:
        """Fail what still waits, let the running batch finish, and stop."""
        self.closed = True
        while self.queue:
            pending = self.queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the model was unloaded"))
        self.wakeup.set()

    def _note_arrival(self, now: float) -> None:
        if self.last_arrival is not None:
            gap = now - self.last_arrival
            self.gap = gap if self.gap == float("inf") else 0.8 * self.gap + 0.2 * gap
        self.last_arrival = now

    async def _serve(self) -> None:
        while not self.closed:
            while not self.queue or self.busy:
                if self.closed:
                    return
                self.wakeup.clear()
                await self.wakeup.wait()
            await self._fill()
            batch = self._take()
            if batch:
                await self._run(batch)

    async def _fill(self) -> None:
        """Wait for more requests while the batch is not full, traffic is concurrent, and time is left."""
        await asyncio.sleep(0)  # requests that have already arrived join without any wait
        while (self._queued_rows() < self.max_batch_size and self.last_batch > 1
               and self.gap < self.max_latency):
            left = self.queue[0].arrived + self.max_latency - time.perf_counter()
            if left <= 0:
                return
            self.wakeup.clear()
            try:  # stop as soon as arrivals pause: a closed loop of N clients sends N, then waits for us
                await asyncio.wait_for(self.wakeup.wait(), min(left, max(2 * self.gap, 0.0002)))
            except TimeoutError:
                return

    def _queued_rows(self) -> int:
        return sum(p.rows for p in self.queue)

    def _take(self) -> list[Pending]:
        """Requests from the front of the queue that fit one batch and share trailing shapes."""
        batch: list[Pending] = []
        rows = 0
        while self.queue:
            nxt = self.queue[0]
            if batch and (rows + nxt.rows > self.max_batch_size or not _compatible(batch[0], nxt)):
                break
            batch.append(self.queue.popleft())
            rows += nxt.rows
        return [p for p in batch if not p.future.done()]

    async def _run(self, batch: list[Pending]) -> None:
        self.busy = True
        try:
            await self._run_batch(batch)
        finally:
            self.busy = False

    async def _run_batch(self, batch: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        self.last_batch = len(batch)
        self.observe(sum(p.rows for p in batch), time.perf_counter() - batch[0].arrived)
        if len(batch) == 1:
            await self._run_alone(batch[0])
            return
        merged = {name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}
        clock: dict[str, float] = {}
        try:
            outputs = await loop.run_in_executor(self.executor, timed, self.run, merged, clock)
            parts = _split(outputs, [p.rows for p in batch])
        except Exception:  # one bad row must not fail its neighbours: run each request on its own
            for pending in batch:
                await self._run_alone(pending)
            return
        for pending, part in zip(batch, parts, strict=True):
            pending.timing.update(clock)
            if not pending.future.done():
                pending.future.set_result(part)

    async def _run_alone(self, pending: Pending) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.executor, timed, self.run, pending.inputs, pending.timing)
        except Exception as error:
            if not pending.future.done():
                pending.future.set_exception(error)
            return
        if not pending.future.done():
            pending.future.set_result(result)


def timed(run: Callable[[Arrays], Arrays], inputs: Arrays, timing: dict[str, float]) -> Arrays:
    """`run(inputs)`, noting in `timing` when it started and finished (perf_counter seconds)."""
    timing["started"] = time.perf_counter()
    try:
        return run(inputs)
    finally:
        timing["finished"] = time.perf_counter()


def _compatible(a: Pending, b: Pending) -> bool:
    return all(a.inputs[name].shape[1:] == b.inputs[name].shape[1:] for name in a.inputs)


def _split(outputs: Arrays, sizes: list[int]) -> list[Arrays]:
    total = sum(sizes)
    for name, array in outputs.items():
        if array.ndim == 0 or len(array) != total:
            raise ValueError(f"output '{name}' has no row per input row; cannot split a batch")
    edges = np.cumsum(sizes)[:-1]
    pieces = {name: np.split(array, edges) for name, array in outputs.items()}
    return [{name: pieces[name][i] for name in outputs} for i in range(len(sizes))]
