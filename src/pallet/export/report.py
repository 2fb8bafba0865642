"""The one report every export and optimization produces, and how it is read.

`Parity` says how closely a converted model answers like its parent; `Figures`
say what a version weighs and how fast and how well it answers; `Report` holds
both for the parent and the child. The CLI prints `Report.table()`, the manifest
stores `Report.to_dict()`, and the tables of docs/edge.md are `Report.markdown()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pallet.units import format_size


@dataclass
class Parity:
    rows: int                        # inputs both answered (the parent's sample plus held-out data)
    data: str                        # what the held-out data was
    executed: bool = True            # False: the format cannot run here, only its structure was checked
    runner: str = ""                 # what ran the child, e.g. onnxruntime 1.20 (CPU)
    max_abs_diff: float | None = None   # over every numeric output
    agreement: float | None = None      # label agreement (classifiers) or share within tolerance (regressors)

    def describe(self) -> str:
        if not self.executed:
            return f"not executed here ({self.runner}); structure checked"
        parts = [f"{self.rows} rows of {self.data}"]
        if self.agreement is not None:
            parts.append(f"agreement {self.agreement:.2%}")
        if self.max_abs_diff is not None:
            parts.append(f"max abs diff {self.max_abs_diff:.3g}")
        return ", ".join(parts)


@dataclass
class Figures:
    """One version, measured in this process on this machine."""

    label: str                       # parent, onnx, int8, fp16, student ...
    ref: str                         # name:version, or "" before it is stored
    size_bytes: int
    p50_ms: float | None = None      # one row per call
    rows_per_s: float | None = None  # 64 rows per call
    accuracy: float | None = None    # against the data's true labels, when it has them
    agreement: float | None = None   # with the parent's answers


@dataclass
class Report:
    operation: str                   # "export onnx", "quantize int8", "distill mlp:32"
    parent: str
    parity: Parity
    figures: list[Figures] = field(default_factory=list)   # parent first, then the child
    structure: dict[str, Any] = field(default_factory=dict)  # inputs, outputs, operators, files of the artifact
    notes: list[str] = field(default_factory=list)

    @property
    def child(self) -> Figures | None:
        return self.figures[-1] if len(self.figures) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(data["operation"], data["parent"], Parity(**data["parity"]),
                   [Figures(**f) for f in data.get("figures", [])], data.get("structure", {}),
                   list(data.get("notes", [])))

    def gate(self, max_size: int | None = None, min_accuracy: float | None = None) -> list[str]:
        """Why the child misses a budget: empty when it meets them all."""
        child, misses = self.child, []
        if child is None:
            return misses
        if max_size is not None and child.size_bytes > max_size:
            misses.append(f"size {format_size(child.size_bytes)} ({child.size_bytes} bytes) is over the budget "
                          f"of {format_size(max_size)} ({max_size} bytes)")
        if min_accuracy is not None:
            score, what = (child.accuracy, "accuracy") if child.accuracy is not None else (child.agreement, "agreement")
            if score is None:
                misses.append("no accuracy could be measured (the data has no labels)")
            elif score < min_accuracy:
                misses.append(f"{what} {score:.2%} is below the minimum of {min_accuracy:.2%}")
        return misses

    HEADER = ("version", "ref", "size", "p50 ms (batch 1)", "rows/s (batch 64)", "accuracy", "agreement")

    def rows(self) -> list[tuple[str, ...]]:
        return [(f.label, f.ref or "-", format_size(f.size_bytes), _num(f.p50_ms, "{:.3f}"),
                 _num(f.rows_per_s, "{:,.0f}"), _num(f.accuracy, "{:.2%}"), _num(f.agreement, "{:.2%}"))
                for f in self.figures]

    def table(self):
        from rich.table import Table

        table = Table(*self.HEADER, title=f"{self.operation} of {self.parent}: parity {self.parity.describe()}",
                      title_justify="left")
        for row in self.rows():
            table.add_row(*row)
        return table

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.HEADER) + " |", "|" + "---|" * len(self.HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        return "\n".join(lines)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
