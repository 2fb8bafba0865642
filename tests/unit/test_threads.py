import json
import os
import subprocess
import sys

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


def test_apply_limits_blas_and_sets_the_environment():
    # In a fresh process: thread limits are process-wide state.
    code = (
        "import json, os, scipy.linalg\n"
        "from threadpoolctl import threadpool_info\n"
        "from pallet.serve import threads\n"
        "threads.apply(threads.ThreadPlan(workers=2, cores=2, threads=1, chosen=False))\n"
        "print(json.dumps([os.environ['OMP_NUM_THREADS'], [p['num_threads'] for p in threadpool_info()]]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in threads.THREAD_ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    omp, pools = json.loads(done.stdout)
    assert omp == "1" and pools and all(n == 1 for n in pools)
