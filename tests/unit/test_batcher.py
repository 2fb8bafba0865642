"""The batcher on its own: a real executor and a recording model, no server."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pallet.serve.batcher import Batcher


class Model:
    """Doubles its input; records every call's row count; can be held to let a queue build up."""

    def __init__(self):
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, inputs):
        x = inputs["x"]
        self.entered.set()
        self.gate.wait(timeout=30)
        self.calls.append(len(x))
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x * 2, "total": x.sum(axis=1)}


def rows(*values):
    return {"x": np.array([[v, v] for v in values], dtype=np.float64)}


async def hold_then_submit(batcher, model, first, others):
    """Run `first` and keep the model busy with it while `others` queue up; then let go."""
    model.gate.clear()
    head = asyncio.ensure_future(batcher.submit(first))
    while not model.entered.is_set():
        await asyncio.sleep(0)
    tail = [asyncio.ensure_future(batcher.submit(r)) for r in others]
    await asyncio.sleep(0)
    model.gate.set()
    return await asyncio.gather(head, *tail, return_exceptions=True)


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


def test_requests_that_wait_together_run_as_one_batch_in_order(executor):
    model = Model()

    async def main():
        batcher = Batcher(model, executor, max_batch_size=32, max_latency_ms=5)
        return await hold_then_submit(batcher, model, rows(0), [rows(i) for i in range(1, 10)])

    results = run(main())
    assert model.calls == [1, 9]  # the first ran alone at once; the other nine shared one call
    for i, result in enumerate(results):
        assert result["y"].tolist() == [[2 * i, 2 * i]]
        assert result["total"].tolist() == [2 * i]


def test_different_row_counts_batch_together_and_split_back(executor):
    model = Model()

    async def main():
        batcher = Batcher(model, executor, max_batch_size=32, max_latency_ms=5)
        return await hold_then_submit(batcher, model, rows(0), [rows(1, 2, 3), rows(4), rows(5, 6)])

    results = run(main())
    assert model.calls == [1, 6]
    assert [r["total"].tolist() for r in results[1:]] == [[2, 4, 6], [8], [10, 12]]


def test_batches_never_pass_the_maximum_and_big_requests_run_alone(executor):
    model = Model()

    async def main():
        batcher = Batcher(model, executor, max_batch_size=4, max_latency_ms=5)
        results = await hold_then_submit(batcher, model, rows(0), [rows(i) for i in range(1, 10)])
        big = await batcher.submit(rows(*range(7)))
        return results, big

    results, big = run(main())
    assert model.calls[:4] == [1, 4, 4, 1]
    assert model.calls[4] == 7  # larger than max_batch_size: one call of its own, not rejected
    assert big["total"].tolist() == [2 * i for i in range(7)]
    assert all(r["y"].shape == (1, 2) for r in results)


def test_a_failing_row_fails_only_its_own_request(executor):
    model = Model()

    async def main():
        batcher = Batcher(model, executor, max_batch_size=32, max_latency_ms=5)
        return await hold_then_submit(batcher, model, rows(0), [rows(1), rows(-1), rows(2)])

    results = run(main())
    assert isinstance(results[2], ValueError)
    assert results[1]["total"].tolist() == [2] and results[3]["total"].tolist() == [4]
    assert model.calls == [1, 3, 1, 1, 1]  # the batch of 3 failed, then each ran alone


def test_a_cancelled_request_is_dropped_before_it_runs(executor):
    model = Model()

    async def main():
        batcher = Batcher(model, executor, max_batch_size=32, max_latency_ms=5)
        model.gate.clear()
        head = asyncio.ensure_future(batcher.submit(rows(0)))
        while not model.entered.is_set():
            await asyncio.sleep(0)
        gone = asyncio.ensure_future(batcher.submit(rows(100)))
        kept = asyncio.ensure_future(batcher.submit(rows(1)))
        await asyncio.sleep(0)
        gone.cancel()  # its client disconnected while it waited
        await asyncio.sleep(0)
        model.gate.set()
        return await asyncio.gather(head, kept)

    head, kept = run(main())
    assert model.calls == [1, 1]  # the cancelled row never reached the model
    assert kept["total"].tolist() == [2]


def test_a_partial_batch_runs_when_the_window_ends(executor):
    model = Model()

    async def main():
        batcher = Batcher(model, executor, max_batch_size=32, max_latency_ms=50)
        batcher.gap, batcher.last_batch = 0.0, 8  # concurrent traffic: worth waiting for company
        return await asyncio.gather(batcher.submit(rows(1)), batcher.submit(rows(2)))

    results = run(main())
    assert model.calls == [2]  # not full, yet run once the oldest had waited its window
    assert [r["total"].tolist() for r in results] == [[2], [4]]


def test_a_closed_loop_client_is_never_held(executor):
    model = Model()

    async def main():
        batcher = Batcher(model, executor, max_batch_size=32, max_latency_ms=60_000)
        for i in range(20):  # one caller, back to back: arrivals are close, but nobody shares a batch
            await asyncio.wait_for(batcher.submit(rows(i)), timeout=10)

    run(main())
    assert model.calls == [1] * 20


def test_a_lone_request_is_not_held_for_the_window(executor):
    model = Model()

    async def main():
        batcher = Batcher(model, executor, max_batch_size=32, max_latency_ms=60_000)
        return await asyncio.wait_for(batcher.submit(rows(3)), timeout=10)

    assert run(main())["total"].tolist() == [6]
    assert model.calls == [1]


def test_outputs_without_a_row_each_fall_back_to_single_runs(executor):
    calls = []

    def summary(inputs):
        calls.append(len(inputs["x"]))
        return {"mean": np.array(inputs["x"].mean())}  # one value for the whole call

    model = Model()

    async def main():
        batcher = Batcher(summary, executor, max_batch_size=32, max_latency_ms=5)
        batcher.gap, batcher.last_batch = 0.0, 8
        return await asyncio.gather(batcher.submit(rows(1)), batcher.submit(rows(3)))

    results = run(main())
    assert [r["mean"].tolist() for r in results] == [1.0, 3.0]
    assert calls == [2, 1, 1]
    assert model.calls == []


def test_observe_reports_batch_rows(executor):
    seen = []
    model = Model()

    async def main():
        batcher = Batcher(model, executor, max_batch_size=32, max_latency_ms=5,
                          observe=lambda size, wait: seen.append((size, wait >= 0)))
        return await hold_then_submit(batcher, model, rows(0), [rows(1), rows(2, 3)])

    run(main())
    assert seen == [(1, True), (3, True)]
