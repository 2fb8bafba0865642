"""Draws benchmarks/results/serving.png from serving.json: throughput and p99 per server and concurrency."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    data = json.loads((RESULTS / "serving.json").read_text())
    servers = list(data["results"])
    levels = sorted({int(c) for figures in data["results"].values() for c in figures})
    fig, (rate_ax, p99_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(servers)
    for i, server in enumerate(servers):
        xs = [j + i * width for j in range(len(levels))]
        figures = [data["results"][server].get(str(c), {}) for c in levels]
        rate_ax.bar(xs, [f.get("rps", 0) for f in figures], width, label=server)
        p99_ax.bar(xs, [f.get("p99_ms", 0) for f in figures], width, label=server)
    for ax, title in ((rate_ax, "requests per second (higher is better)"), (p99_ax, "p99 latency, ms (lower is better)")):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(levels))], [f"c={c}" for c in levels])
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    p99_ax.set_yscale("log")
    rate_ax.legend(fontsize=8)
    fig.suptitle(f"digits classifier, one row per request, one core per server ({data['machine']['cpu']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(RESULTS / "serving.png", dpi=110)
    print(f"wrote {RESULTS / 'serving.png'}")


if __name__ == "__main__":
    main()
