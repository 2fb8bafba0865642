"""What a traffic policy costs on the request path: digits, one row per request, under each policy.

    .venv/bin/python benchmarks/rollout.py [--rounds 3] [--seconds 10]

One `pallet serve digits` pinned to core 0, wrk on core 1 (c=1 and c=32), the policies alternating
within each round: no rollout; a promoted version (routing through a policy of one version); a
50/50 split; a shadow copying every request to a second version; a canary at 50% shadowing 20%
of the baseline's requests. Results: benchmarks/results/rollout.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys

import numpy as np
from sklearn.datasets import load_digits

from run import WORK, Running, _median, pallet_target, prepare_store, record, v2_body, wrk

import pallet
from pallet.net import free_port
from pallet.rollout import Rollouts
from pallet.store import Store

POLICIES = {
    "no rollout": None,
    "promoted (one version)": lambda r: r.promote("digits", "digits:2"),
    "split 50/50": lambda r: r.split("digits", {"digits:1": 50, "digits:2": 50}),
    "shadow 100%": lambda r: r.shadow("digits", "digits:2", fraction=1.0),
    "canary 50%, 20% shadowed": lambda r: r.start("digits", "digits:2", steps=[50, 100], step_seconds=3600),
}


def rollout_store(home) -> Store:
    """A copy of the benchmark store with a second digits version and its own rollout state."""
    target = WORK / "rollout-home"
    if not target.exists():
        shutil.copytree(home, target)
        x, y = load_digits(return_X_y=True)
        store = Store(target)
        model = pallet.load("digits:1", store=store).runtime.estimator  # the same model, a second version
        pallet.save(model, "digits", sample=x[:5], store=store)
    return Store(target)


def reset(store: Store) -> None:
    with store.index.engine.begin() as conn:
        for table in ("pallet_rollout_figures", "pallet_rollout_events", "pallet_rollouts"):
            conn.exec_driver_sql(f"DELETE FROM {table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    command = " ".join(["benchmarks/rollout.py", *sys.argv[1:]])
    home = prepare_store()
    store = rollout_store(home)
    Rollouts(store)  # the tables exist before the first reset
    x, _ = load_digits(return_X_y=True)
    body = v2_body(np.asarray(x[:1]))
    levels = [1, 32]
    runs = {name: {c: [] for c in levels} for name in POLICIES}
    for round_number in range(args.rounds):
        for name, apply in POLICIES.items():
            reset(store)
            if apply is not None:
                apply(Rollouts(store, actor="benchmark"))
            target = pallet_target(store.home, name.split()[0], "digits", body)
            print(f"  round {round_number + 1}/{args.rounds}: {name}", flush=True)
            server = Running(target, free_port())
            try:
                wrk(server.port, target, 32, 2)  # warm up, and the server has read the policy
                for level in levels:
                    runs[name][level].append(wrk(server.port, target, level, args.seconds))
            finally:
                server.stop()
    reset(store)
    figures = {name: {str(c): _median(r) for c, r in by_level.items()} for name, by_level in runs.items()}
    record("rollout", "digits, one row per request, under each traffic policy; server on core 0, wrk on core 1; "
           "medians", figures, command)
    for name, by_level in figures.items():
        print(f"{name:28} c=1 {by_level['1']['rps']:8.0f} req/s   c=32 {by_level['32']['rps']:8.0f} req/s  "
              f"p99 {by_level['32']['p99_ms']:.1f} ms  errors {by_level['32']['errors']}")


if __name__ == "__main__":
    main()
