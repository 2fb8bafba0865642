"""Pipelines as a runtime: each version holds copies of the model versions it runs (under `steps/`)
and the source of its functions (under `code/`), so it keeps answering the same way whatever
happens to the store or the user's modules afterwards. It sits beside the model API, not among the
runtimes: its model steps are loaded models."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pallet.errors import InvalidInput
from pallet.model import Model, register
from pallet.runtimes.base import Runtime
from pallet.runtimes.source import copy_source, load_attribute
from pallet.store import Manifest, ModelRef, ModelVersion

Arrays = dict[str, np.ndarray]


@register
class PipelineRuntime(Runtime):
    name = "pipeline"
    framework = "pallet pipeline"

    def __init__(self, steps: list[tuple[str, Callable[[Arrays], Arrays]]], batchable: bool):
        self.steps = steps
        self.batchable = batchable
        self.on_step: Callable[[str, float], None] | None = None  # the server times each step

    @classmethod
    def accepts(cls, model: Any) -> bool:
        from pallet.pipeline import Pipeline

        return isinstance(model, Pipeline)

    @classmethod
    def save(cls, model: Any, folder: Path) -> dict[str, Any]:
        steps = []
        for i, step in enumerate(model.steps):
            if isinstance(step, ModelVersion):
                target = f"steps/{i + 1}-{step.ref.name}"
                shutil.copytree(step.path, folder / target)
                steps.append({"model": str(step.ref), "path": target})
            else:
                module = f"step{i + 1}_{step.__module__.rsplit('.', 1)[-1]}"  # two steps' modules may share a name
                steps.append({"function": f"{copy_source(step, folder, module)}:{step.__qualname__}"})
        return {"steps": steps, "batchable": model.batchable}

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any]) -> PipelineRuntime:
        passed_on = {k: v for k, v in options.items() if k not in ("steps", "batchable")}  # thread settings
        steps = []
        for i, step in enumerate(options["steps"]):
            if "model" in step:
                path = folder / step["path"]
                model = Model(ModelVersion(ModelRef.parse(step["model"]), path, Manifest.read(path)), **passed_on)
                steps.append((f"{i + 1}:{step['model']}", _model_step(model, i + 1)))
            else:
                module, _, qualname = step["function"].partition(":")
                steps.append((f"{i + 1}:{qualname}", _function_step(load_attribute(folder, module, qualname))))
        return cls(steps, bool(options.get("batchable", False)))

    def predict(self, inputs: Arrays) -> Arrays:
        arrays = inputs
        for label, step in self.steps:
            started = time.perf_counter()
            arrays = step(arrays)
            if self.on_step is not None:
                self.on_step(label, time.perf_counter() - started)
        return arrays


def _model_step(model, number: int) -> Callable[[Arrays], Arrays]:
    names = model.signature.input_names

    def run(arrays: Arrays) -> Arrays:
        if all(n in arrays for n in names):
            given = {n: arrays[n] for n in names}
        elif len(names) == 1 and len(arrays) == 1:
            given = {names[0]: next(iter(arrays.values()))}
        else:
            raise InvalidInput(f"pipeline step {number} ({model.ref}) takes {', '.join(names)}; the step before "
                               f"gave {', '.join(arrays) or 'nothing'}")
        return model.run(model.signature.validate(given))

    return run


def _function_step(function: Callable) -> Callable[[Arrays], Arrays]:
    def run(arrays: Arrays) -> Arrays:
        out = function(arrays)
        if isinstance(out, dict):
            return {name: np.asarray(value) for name, value in out.items()}
        return {"output": np.asarray(out)}

    return run
