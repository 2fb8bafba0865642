import os

from pallet.serve import threads


def test_plan_divides_the_cores_between_workers(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    assert threads.plan_threads(1).threads == 8
    assert threads.plan_threads(4).threads == 2
    assert threads.plan_threads(16).threads == 1  # never zero
    chosen = threads.plan_threads(2, threads=6)
    assert chosen.threads == 6 and chosen.chosen
    assert "2 workers x 6 threads" in chosen.describe() and "as asked" in chosen.describe()
    assert "<= 8 cores" in threads.plan_threads(4).describe()


def test_runtime_options_reach_onnxruntime():
    plan = threads.ThreadPlan(workers=2, cores=2, threads=1, chosen=False)
    assert plan.runtime_options() == {"intra_op_threads": 1, "inter_op_threads": 1}


def test_apply_limits_blas_and_sets_the_environment(monkeypatch):
    from threadpoolctl import threadpool_info

    for name in threads.THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    threads.apply(threads.ThreadPlan(workers=2, cores=2, threads=1, chosen=False))
    try:
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["OPENBLAS_NUM_THREADS"] == "1"
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    finally:
        threads._limits.pop().restore_original_limits()
