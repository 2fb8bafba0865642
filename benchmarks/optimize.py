"""What each optimization buys: digits-torch and minilm, parent vs ONNX vs int8 vs fp16 (and a distilled student).

    .venv/bin/python benchmarks/optimize.py [--rounds 3] [--seconds 3]

Every variant is made with pallet's own commands' library calls (export, quantize, distill) in a
scratch store, then measured in this process, one thread each (torch and onnxruntime alike):
p50 latency with one row per call, throughput with 64 rows per call, size on disk (every file of the
stored version), and accuracy on the held-out digits (test split) or, for minilm, agreement with the
parent (cosine similarity >= 0.99) over 240 composed sentences. Medians over the rounds.
Results: benchmarks/results/optimize.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from run import machine  # noqa: E402

from pallet.demo import register_minilm, train_digits_torch  # noqa: E402
from pallet.export import export  # noqa: E402
from pallet.export.base import typed  # noqa: E402
from pallet.export.check import measure  # noqa: E402
from pallet.export.derive import Parent  # noqa: E402
from pallet.export.optimize import distill, quantize  # noqa: E402
from pallet.export.report import Figures, Parity, Report  # noqa: E402
from pallet.model import load_runtime  # noqa: E402
from pallet.store import Store  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def variants(store: Store, name: str, student: bool) -> list[tuple[str, str]]:
    refs = [("parent", f"{name}:1"), ("onnx", str(export(store, name, "onnx")[0]))]
    refs += [(kind, str(quantize(store, f"{name}-onnx", kind)[0])) for kind in ("int8", "fp16")]
    if student:
        refs.append(("student mlp:32", str(distill(store, name, "mlp:32", "sklearn:digits:train")[0])))
    return refs


def table(store: Store, name: str, refs: list[tuple[str, str]], rounds: int, seconds: float) -> Report:
    parent = Parent.open(store, f"{name}:1", None)
    rows = []
    for label, ref in refs:
        version = store.resolve(ref)
        runtime = load_runtime(version, intra_op_threads=1)
        runs = [measure(label, ref, version.manifest.size_bytes, typed(runtime), parent.held_out,
                        parent.held_out_answers if label != "parent" else None, seconds) for _ in range(rounds)]
        rows.append(Figures(label, ref, version.manifest.size_bytes,
                            float(np.median([r.p50_ms for r in runs])), float(np.median([r.rows_per_s for r in runs])),
                            runs[0].accuracy, runs[0].agreement))
        print(f"  {label:16} {ref:22} measured", file=sys.stderr)
    return Report("variants", f"{name}:1", Parity(len(parent.held_out), parent.held_out.name), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()
    command = " ".join([".venv/bin/python benchmarks/optimize.py", *sys.argv[1:]])
    results = {}
    with tempfile.TemporaryDirectory() as home:
        store = Store(Path(home) / "home")
        print("training digits-torch, registering minilm", file=sys.stderr)
        train_digits_torch(store)
        register_minilm(store)
        for name, student in (("digits-torch", True), ("minilm", False)):
            print(f"{name}: making the variants", file=sys.stderr)
            refs = variants(store, name, student)
            report = table(store, name, refs, args.rounds, args.seconds)
            results[name] = {"data": report.parity.data, "rows": report.parity.rows,
                             "variants": [f.__dict__ for f in report.figures], "markdown": report.markdown()}
            print(report.markdown())
    doc = {"benchmark": "optimize", "description": __doc__.strip().splitlines()[0], "command": command,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
           "versions": {n: metadata.version(n) for n in ("pallet", "torch", "onnxruntime", "onnx", "transformers",
                                                           "numpy")},
           "results": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "optimize.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
