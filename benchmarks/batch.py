"""Batch prediction benchmark: `pallet batch run` over 1,000,000 rows of digits features against the
in-process floor (read the file, call the model's vectorized predict on the whole array, write nothing).

    .venv/bin/python benchmarks/batch.py [--rows 1000000] [--rounds 3]

Each case runs in its own process; peak memory is that process's maximum resident set size.
Results go to benchmarks/results/batch.json with the machine, versions and command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from run import WORK, prepare_store, record

PALLET = str(Path(sys.executable).parent / "pallet")
PG = os.environ.get("PALLET_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
FLOOR = """
import sys, time, numpy as np, pyarrow.parquet as pq
from pallet.model import load_runtime
from pallet.store import Store
runtime = load_runtime(Store(sys.argv[1]).resolve("digits"))
started = time.perf_counter()
table = pq.read_table(sys.argv[2])
x = np.column_stack([table.column(f"p{i}").to_numpy() for i in range(64)])
out = runtime.predict({"input": x})
print(len(out["label"]), time.perf_counter() - started)
"""


def make_data(rows: int) -> tuple[Path, Path]:
    folder = WORK / "batch"
    parquet, csv = folder / f"digits-{rows}.parquet", folder / f"digits-{rows}.csv"
    if parquet.exists() and csv.exists():
        return parquet, csv
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    x = load_digits().data
    rng = np.random.default_rng(0)
    schema = pa.schema([("id", pa.int64()), *[(f"p{i}", pa.float64()) for i in range(64)]])
    with pq.ParquetWriter(parquet, schema) as pw, pcsv.CSVWriter(csv, schema) as cw:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            block = np.clip(x[rng.integers(0, len(x), n)] + rng.integers(-1, 2, (n, 64)), 0, 16).astype(np.float64)
            table = pa.table({"id": np.arange(start, start + n), **{f"p{i}": block[:, i] for i in range(64)}},
                             schema=schema)
            pw.write_table(table)
            cw.write_table(table)
    return parquet, csv


# A forked child starts with its parent's peak memory, so a small launcher starts each case and
# reports that case's own peak (in KiB) on its last line.
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def timed(command: list[str], env: dict) -> tuple[float, float, str]:
    """Seconds, peak resident memory (MiB) and stdout of one process."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *command], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    *out, last = done.stdout.strip().splitlines()
    peak, code = (int(v) for v in last.split())
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed")
    return seconds, peak / 1024, "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()
    home = prepare_store()
    env = {**os.environ, "PALLET_HOME": str(home)}
    env.pop("PALLET_DB_URL", None)
    parquet, csv = make_data(args.rows)
    small_parquet, _ = make_data(args.rows // 4)
    out = WORK / "batch" / "out"

    def pallet_case(source: Path, output: str) -> list[str]:
        return [PALLET, "batch", "run", "digits", "-i", str(source), "-o", output, "-k", "id",
                "--batch-size", str(args.batch_size)]

    cases = {
        "floor (read Parquet, one predict call, nothing written)": None,
        "Parquet -> Parquet": lambda: pallet_case(parquet, str(out / "parquet")),
        "CSV -> SQLite": lambda: pallet_case(csv, f"sqlite:///{out}/preds.db?table=predictions"),
        "Parquet -> PostgreSQL": lambda: pallet_case(parquet, f"{PG}?table=pallet_bench_predictions"),
        f"Parquet -> Parquet, {args.rows // 4:,} rows (memory check)": lambda: pallet_case(small_parquet, str(out / "small")),
    }
    figures, floor_whole = {}, []
    runs: dict[str, list] = {name: [] for name in cases}
    for round_ in range(args.rounds):  # A B C D, A B C D, ...: slow drifts of the machine hit every case alike
        for name, command in cases.items():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            print(f"  round {round_ + 1}/{args.rounds}: {name}", file=sys.stderr)
            if command is None:
                whole, peak, text = timed([sys.executable, "-c", FLOOR, str(home), str(parquet)], env)
                seconds = float(text.split()[1])  # the work alone, without interpreter start and model load
                floor_whole.append(whole)
            else:
                seconds, peak, _ = timed(command(), env)
            runs[name].append((seconds, peak))
    for name, measured in runs.items():
        rows = args.rows // 4 if "memory check" in name else args.rows
        seconds = statistics.median(s for s, _ in measured)
        figures[name] = {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds),
                         "peak_rss_mib": round(max(p for _, p in measured), 1),
                         "rounds": [round(s, 3) for s, _ in measured]}
    figures["floor, whole process (imports and model load included)"] = {
        "rows": args.rows, "seconds": round(statistics.median(floor_whole), 3),
        "rows_per_s": round(args.rows / statistics.median(floor_whole))}
    floor = figures["floor (read Parquet, one predict call, nothing written)"]["rows_per_s"]
    for name, entry in figures.items():
        entry["share_of_floor"] = round(entry["rows_per_s"] / floor, 3)
    command = f"benchmarks/batch.py --rows {args.rows} --rounds {args.rounds} --batch-size {args.batch_size}"
    record("batch", f"pallet batch run over {args.rows:,} rows of digits features (64 floats + id), model digits "
           "(logistic regression); whole command, process start and model load included; the floor times the "
           "work alone", figures, command)


if __name__ == "__main__":
    main()
