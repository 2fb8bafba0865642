"""The interface every export target implements: convert, run (when it can), describe."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pallet.export.check import Predict, answers, measure
from pallet.export.data import Data
from pallet.export.report import Figures
from pallet.runtimes.base import Runtime
from pallet.store import ModelVersion


@dataclass
class Converted:
    """What a target wrote into its folder."""

    runtime: str                      # the pallet runtime that loads the folder ("onnx", "tflite", ...)
    options: dict[str, Any] = field(default_factory=dict)
    requirements: list[str] = field(default_factory=list)   # what a device or server needs to run it
    notes: list[str] = field(default_factory=list)
    structure: dict[str, Any] = field(default_factory=dict)  # what the artifact declares, when known already


class Runner(ABC):
    """How the child runs on this machine, to be compared with its parent and measured."""

    name: str                         # what runs it, e.g. "onnxruntime 1.20.1 (CPU)"
    executes = True
    in_process = True                 # False: it runs in another environment, so pallet's server here cannot load it

    @abstractmethod
    def answers(self, data: Data) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def figures(self, label: str, size: int, data: Data, parent_answers: dict[str, np.ndarray]) -> Figures: ...


class Local(Runner):
    """The child loaded by its pallet runtime in this process."""

    def __init__(self, predict: Predict, name: str):
        self.predict, self.name = predict, name

    def answers(self, data: Data) -> dict[str, np.ndarray]:
        return answers(self.predict, data)

    def figures(self, label: str, size: int, data: Data, parent_answers: dict[str, np.ndarray]) -> Figures:
        return measure(label, "", size, self.predict, data, parent_answers)


class NotHere(Runner):
    """A format this machine cannot run: only its structure is checked."""

    executes = False
    in_process = False

    def __init__(self, why: str):
        self.name = why

    def answers(self, data: Data) -> dict[str, np.ndarray]:
        raise AssertionError("a format that cannot run here has no answers")

    def figures(self, label: str, size: int, data: Data, parent_answers: dict[str, np.ndarray]) -> Figures:
        return Figures(label, "", size)


def run_here(folder: Path, converted: Converted) -> Local:
    """The converted model loaded by its pallet runtime."""
    from pallet.runtimes import get_runtime

    runtime = get_runtime(converted.runtime).load(folder, converted.options)
    return Local(typed(runtime), getattr(runtime, "runner", converted.runtime))


def typed(runtime: Runtime) -> Predict:
    """`runtime.predict`, with inputs cast to the dtypes the model declares (float32 for most graphs)."""
    dtypes = runtime.input_dtypes

    def predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return runtime.predict({k: v.astype(dtypes[k], copy=False) if k in dtypes and dtypes[k] != "str" else v
                                for k, v in inputs.items()})
    return predict


class Target(ABC):
    name: ClassVar[str]               # pallet export --format NAME
    suffix: ClassVar[str]             # stored as {parent name}-{suffix}, e.g. digits-torch-onnx
    description: ClassVar[str]

    @abstractmethod
    def convert(self, parent: ModelVersion, runtime: Runtime, folder: Path) -> Converted:
        """Write the parent, in this target's format, into `folder`."""

    def refuses(self, version: ModelVersion) -> str | None:
        """Why this target cannot take `version` (None when it can), said before any work is done."""
        return None

    def runner(self, folder: Path, converted: Converted) -> Runner:
        """How the converted model runs here (or `NotHere`, saying why it cannot)."""
        return run_here(folder, converted)

    def describe(self, folder: Path, converted: Converted) -> dict[str, Any]:
        """What the artifact declares: inputs, outputs, operators, files."""
        return {**converted.structure,
                "files": {p.relative_to(folder).as_posix(): p.stat().st_size
                          for p in sorted(folder.rglob("*")) if p.is_file()}}
