"""Exports and optimizations: a stored version turned into another format or a smaller model.

One module per target behind `Target` (convert, run where possible, describe);
every result goes through `derive`, which checks parity, measures, applies the
budgets and stores the child with its lineage and `Report`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from pallet.errors import NoRuntime, PalletError
from pallet.export.base import Converted, Target
from pallet.export.derive import Budget, ExportRefused, Parent, copy_out, derive, staging
from pallet.export.report import Figures, Parity, Report
from pallet.store import ModelRef, Store
from pallet.store.refs import check_name

TARGETS = {
    "onnx": "pallet.export.onnx:OnnxTarget",
    "web": "pallet.export.web:WebTarget",
    "tflite": "pallet.export.tflite:TfliteTarget",
    "executorch": "pallet.export.executorch:ExecutorchTarget",
    "coreml": "pallet.export.coreml:CoremlTarget",
    "tvm": "pallet.export.tvm:TvmTarget",
}


class UnknownTarget(PalletError):
    pass


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise UnknownTarget(f"no export target '{name}'; pallet exports to: {', '.join(TARGETS)}")
    module, cls = TARGETS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def export(store: Store, ref: str, to: str, *, name: str | None = None, data: str | None = None,
           budget: Budget = Budget(), out: str | Path | None = None,
           progress: Callable[[str], None] = lambda _: None) -> tuple[ModelRef, Report]:
    """Convert `ref` to the `to` format, check it answers like its parent, store it (and copy it to `out`)."""
    target = get_target(to)
    if out is not None:  # a folder that cannot be written is said now, not after the version is stored
        out = Path(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PalletError(f"cannot write the export to {out}: {e.strerror}") from None
    why = target.refuses(store.resolve(ref))
    if why is not None:
        raise NoRuntime(why)
    progress(f"loading {ref}")
    parent = Parent.open(store, ref, data)
    check_name(name or f"{parent.version.ref.name}-{target.suffix}")
    with staging(store) as tmp:
        folder = Path(tmp)
        progress(f"converting {parent.version.ref} to {to}")
        converted = target.convert(parent.version, parent.runtime, folder)
        child = target.runner(folder, converted)
        ref_, report = derive(store, parent, f"export {to}", to, name or f"{parent.version.ref.name}-{target.suffix}",
                              folder, converted, child, budget, describe=target.describe(folder, converted),
                              progress=progress)
    if out is not None:
        copy_out(store.resolve(ref_), out)
    return ref_, report


__all__ = ["Budget", "Converted", "ExportRefused", "Figures", "Parity", "Report", "TARGETS", "Target", "export",
           "get_target"]
