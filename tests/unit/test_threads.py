import json
import os
import subprocess
import sys

from pallet import threads


def test_plan_divides_the_cores_between_workers(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    assert threads.plan_threads(1).threads == 8
    assert threads.plan_threads(4).threads == 2
    assert threads.plan_threads(16).threads == 1  # never zero
    chosen = threads.plan_threads(2, threads=6)
    assert chosen.threads == 6 and chosen.chosen
    assert "2 workers x 6 threads" in chosen.describe() and "as asked" in chosen.describe()
    assert threads.plan_threads(4).describe().startswith("4 workers x 2 threads = 8 threads on 8 cores")


def test_runtime_options_reach_onnxruntime():
    plan = threads.ThreadPlan(workers=2, cores=2, threads=1, chosen=False)
    assert plan.runtime_options() == {"intra_op_threads": 1, "inter_op_threads": 1}


def test_limited_limits_blas_and_the_environment_inside_the_block_and_restores_both():
    # In a fresh process: thread limits are process-wide state. OMP_NUM_THREADS starts set to 3,
    # MKL_NUM_THREADS unset; BLAS starts with its own pool size.
    code = (
        "import json, os, scipy.linalg\n"
        "from threadpoolctl import threadpool_info\n"
        "from pallet import threads\n"
        "def pools(): return [p['num_threads'] for p in threadpool_info()]\n"
        "before = pools()\n"
        "with threads.limited(threads.ThreadPlan(workers=2, cores=2, threads=1, chosen=False)):\n"
        "    inside = [os.environ['OMP_NUM_THREADS'], os.environ['MKL_NUM_THREADS'], pools()]\n"
        "after = [os.environ.get('OMP_NUM_THREADS'), os.environ.get('MKL_NUM_THREADS'), pools()]\n"
        "print(json.dumps([before, inside, after]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in threads.THREAD_ENV}
    env["OMP_NUM_THREADS"] = "3"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    before, (omp, mkl, pools), after = json.loads(done.stdout)
    assert omp == "1" and mkl == "1" and pools and all(n == 1 for n in pools)
    assert after == ["3", None, before]
