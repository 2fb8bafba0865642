"""A derived version: a parent turned into a new format or a smaller model, checked, then stored.

Every export and optimization ends here: the child answers the parent's sample and
the held-out data, its answers are compared with the parent's, both are measured,
the budgets are applied, and only then is the child stored, with its lineage and
its report in the manifest.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pallet.errors import PalletError
from pallet.export.base import Converted, Runner
from pallet.export.check import answers, compare, measure
from pallet.export.data import Data, load_data
from pallet.export.report import Figures, Parity, Report
from pallet.model import load_runtime
from pallet.runtimes.base import Runtime
from pallet.saving import save_files
from pallet.signature import Signature
from pallet.store import ModelRef, ModelVersion, Store
from pallet.store.manifest import Manifest, describe_files


class ExportRefused(PalletError):
    """A derived model that answers too differently from its parent, or misses a budget."""

    def __init__(self, message: str, report: Report):
        super().__init__(message)
        self.report = report


@dataclass
class Budget:
    atol: float | None = 1e-3           # largest absolute difference from the parent a conversion may make
    min_agreement: float | None = 0.99  # share of rows that must agree with the parent
    max_size: int | None = None         # bytes
    min_accuracy: float | None = None


@dataclass
class Parent:
    """The version being derived from, loaded, with its answers on the evaluation data. It owns its
    runtime: `close` (or the end of a `with` block, or dropping the parent) releases it."""

    version: ModelVersion
    runtime: Runtime
    data: Data                          # the parent's sample followed by the held-out rows: parity
    held_out: Data                      # the tail of `data`: the held-out rows (true labels when known), or the
                                        # sample when there are none: figures

    @classmethod
    def open(cls, store: Store, ref: str, data: str | None) -> Parent:
        version = store.resolve(ref)
        sample = Data("its sample", version.signature.validate(version.sample()))
        spec = data or version.manifest.tags.get("dataset")
        both = held_out = sample
        if spec:
            held_out = load_data(spec, version.signature)
            both = Data(f"its sample and {held_out.name}",
                        {k: np.concatenate([sample.inputs[k], held_out.inputs[k]]) for k in sample.inputs})
        runtime = load_runtime(version)
        try:
            return cls(version, runtime, both, held_out)
        except BaseException:  # it failed on its own data: nothing it loaded stays
            runtime.close()
            raise

    def __post_init__(self) -> None:
        self.answers = answers(self.runtime.predict, self.data)
        tail = len(self.data) - len(self.held_out)  # the held-out rows are answered already, at the end
        self.held_out_answers = {k: v[tail:] for k, v in self.answers.items()}
        self._release = weakref.finalize(self, self.runtime.close)
        self._release.atexit = False  # nothing to give back to a process that is ending

    def close(self) -> None:
        """Release the runtime (see `Runtime.close`); the parent is not used after."""
        self._release()

    def __enter__(self) -> Parent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def derive(store: Store, parent: Parent, operation: str, label: str, name: str, folder: Path, converted: Converted,
           child: Runner, budget: Budget, *, describe: dict | None = None,
           progress: Callable[[str], None] = lambda _: None) -> tuple[ModelRef, Report]:
    """Check `folder` (the child, in `converted`'s runtime) against the parent and store it."""
    data = parent.data
    if not child.executes:
        parity = Parity(len(data), data.name, executed=False, runner=child.name)
    else:
        progress(f"checking parity on {len(data)} rows ({data.name}) with {child.name}")
        answered = child.answers(data)
        max_diff, agreement = compare(parent.answers, answered)
        if max_diff is None and agreement is None:
            raise ExportRefused(f"{operation} of {parent.version.ref} refused: the child answers "
                                f"{', '.join(answered) or 'nothing'}, none of which it can be compared on with "
                                f"the parent's {', '.join(parent.answers)}",
                                Report(operation, str(parent.version.ref), Parity(len(data), data.name)))
        parity = Parity(len(data), data.name, True, child.name, max_diff, agreement)
    report = Report(operation, str(parent.version.ref), parity, structure=describe or {}, notes=converted.notes)
    progress("measuring parent and child (size, latency at batch 1, throughput at batch 64, accuracy)")
    size = sum(f["size"] for f in describe_files(folder).values())  # until the store says, with the sample
    report.figures = [
        measure("parent", str(parent.version.ref), parent.version.manifest.size_bytes, parent.runtime.predict,
                parent.held_out) if child.executes
        else Figures("parent", str(parent.version.ref), parent.version.manifest.size_bytes),
        child.figures(label, size, parent.held_out, parent.held_out_answers),
    ]
    child_figures = report.child

    def accept(manifest: Manifest) -> None:
        """Judged on the version exactly as it would be stored, its size included."""
        child_figures.size_bytes = manifest.size_bytes
        misses = _misses(report, budget)
        if misses:
            raise ExportRefused(f"{operation} of {parent.version.ref} refused: {'; '.join(misses)} "
                                f"(parity: {parity.describe()})", report)
        manifest.report = report.to_dict()

    metrics = {k: v for k, v in (("accuracy", child_figures.accuracy), ("agreement", parity.agreement))
               if v is not None}
    ref = save_files(store, 
        folder, name, runtime=converted.runtime, options=converted.options, sample=parent.version.sample(),
        signature=None if child.in_process else parent.version.signature, names=_names(parent.version.signature),
        metrics=metrics,
        tags={k: v for k, v in parent.version.manifest.tags.items() if k == "dataset"},
        requirements=[r for r in converted.requirements if _installed(r)],
        description=f"{parent.version.ref}, {operation}",
        lineage={"parent": str(parent.version.ref), "operation": operation,
                 "parent_files": {k: v["sha256"] for k, v in parent.version.manifest.files.items()}},
        accept=accept)
    child_figures.ref = str(ref)
    return ref, report


def _names(signature: Signature) -> dict[str, list[str] | None]:
    """The class and input names the parent was saved with, for a child that answers the same way."""
    inputs = signature.inputs
    named = len(inputs) == 1 and inputs[0].labels is not None
    return {"classes": None if signature.classes is None else list(signature.classes),
            "input_names": list(inputs[0].labels) if named else None}


def _misses(report: Report, budget: Budget) -> list[str]:
    misses = []
    parity = report.parity
    if parity.executed:
        if budget.atol is not None and parity.max_abs_diff is not None and parity.max_abs_diff > budget.atol:
            misses.append(f"max abs diff {parity.max_abs_diff:.3g} is over the tolerance {budget.atol:g}")
        if budget.min_agreement is not None and parity.agreement is not None \
                and parity.agreement < budget.min_agreement:
            misses.append(f"agreement {parity.agreement:.2%} is below {budget.min_agreement:.2%}")
    return misses + report.gate(budget.max_size, budget.min_accuracy)


def _installed(requirement: str) -> bool:
    """Whether a requirement can be pinned: pinned already (by the environment that made the export), or installed."""
    from importlib import metadata

    if "==" in requirement:
        return True
    try:
        metadata.version(requirement)
    except metadata.PackageNotFoundError:
        return False
    return True


def staging(store: Store) -> tempfile.TemporaryDirectory:
    (store.home / "tmp").mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=store.home / "tmp")


def copy_out(version: ModelVersion, out: Path) -> Path:
    """The stored version's files and manifest, written to `out` for a device or a web server."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(version.path, out, dirs_exist_ok=True, copy_function=shutil.copyfile)
    return out
