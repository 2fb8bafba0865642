"""Pipelines: pre-processing, one or more stored models and post-processing, stored and served as
one model. A pipeline is saved like any model (`pallet.save(pipeline, "digits-app", ...)`), so it
has versions, aliases and rollouts; each version pins the exact model versions it runs (their files
are copied into it) and the code of its functions.

Declared in `pallet.yaml`:

    pipelines:
      digits-app:
        description: Digits from raw 0..255 pixels, answered with the digit's name
        batchable: true          # rows are independent in every step: requests may share a call
        steps:
          - function: steps:to_digits_scale   # module:function, importable from where pallet runs
          - model: digits@production          # pinned to its version when the pipeline is saved
          - function: steps:name_the_digit

A function step takes and returns a dict of named numpy arrays (a single array is named `output`);
a model step takes the tensors its signature names (or the one tensor there is, for a one-input model).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pallet.errors import PalletError
from pallet.store import ModelVersion, Store, default_store

Step = ModelVersion | Callable[[dict], Any]


@dataclass
class Pipeline:
    steps: list[Step]
    batchable: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not self.steps:
            raise PalletError("a pipeline needs at least one step")
        for i, step in enumerate(self.steps):
            if isinstance(step, ModelVersion):
                continue
            if not callable(step) or not inspect.isfunction(step):
                raise PalletError(f"step {i + 1} must be a stored model or a Python function, got {step!r}")
            if step.__module__ == "__main__" or "<" in step.__qualname__:
                raise PalletError(f"step {i + 1}: function {step.__qualname__} must be defined at the top of a "
                                  "module file, so the pipeline can import it again")

    @classmethod
    def of(cls, steps: list[str | Callable], store: Store | None = None, **options: Any) -> Pipeline:
        """Steps given as model references (resolved and pinned now) or functions."""
        store = store or default_store()
        return cls([store.resolve(s) if isinstance(s, str) else s for s in steps], **options)

    def sample(self) -> dict:
        """A sample input: the first model step's own sample (pre-processing must accept its shape)."""
        for step in self.steps:
            if isinstance(step, ModelVersion):
                return step.sample()
        raise PalletError("a pipeline without a model step needs an explicit sample")

    @property
    def requirements(self) -> list[str]:
        """The packages the model steps' manifests pin: the pipeline's version pins them too."""
        return sorted({package for step in self.steps if isinstance(step, ModelVersion)
                       for package in step.manifest.packages} - {"pallet"})

    def describe(self) -> str:
        return " -> ".join(str(s.ref) if isinstance(s, ModelVersion) else f"{s.__module__}:{s.__qualname__}"
                           for s in self.steps)


@dataclass
class Declared:
    name: str
    pipeline: Pipeline
    aliases: list[str] = field(default_factory=list)


def load_pipelines(path: str | Path, store: Store | None = None) -> list[Declared]:
    """The pipelines a `pallet.yaml` declares, with their model steps resolved in `store`."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PalletError(f"{path} does not exist") from None
    except yaml.YAMLError as e:
        raise PalletError(f"{path} is not valid YAML: {e}") from None
    pipelines = config.get("pipelines") if isinstance(config, dict) else None
    if not isinstance(pipelines, dict) or not pipelines:
        raise PalletError(f"{path} declares no pipelines: add a 'pipelines:' mapping of name to steps")
    store = store or default_store()
    where = str(path.parent.absolute())
    declared = []
    for name, spec in pipelines.items():
        at = f"{path}: pipeline '{name}'"
        if not isinstance(spec, dict) or not isinstance(spec.get("steps"), list) or not spec["steps"]:
            raise PalletError(f"{at} needs 'steps': a list of '- model: REF' and '- function: module:name'")
        unknown = set(spec) - {"steps", "description", "batchable", "aliases"}
        if unknown:
            raise PalletError(f"{at}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        steps = []
        for i, step in enumerate(spec["steps"]):
            if not isinstance(step, dict) or len(step) != 1 or not {"model", "function"} & set(step):
                raise PalletError(f"{at}, step {i + 1}: write '- model: REF' or '- function: module:name'")
            if "model" in step:
                steps.append(store.resolve(str(step["model"])))
            else:
                steps.append(_import(str(step["function"]), where, f"{at}, step {i + 1}"))
        aliases = spec.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise PalletError(f"{at}: 'aliases' must be a list of names")
        declared.append(Declared(str(name), Pipeline(steps, bool(spec.get("batchable", False)),
                                                     str(spec.get("description", ""))), aliases))
    return declared


def _import(reference: str, where: str, at: str) -> Callable:
    module_name, _, qualname = reference.partition(":")
    if not module_name or not qualname:
        raise PalletError(f"{at}: function '{reference}' must be written module:function")
    if where not in sys.path:
        sys.path.insert(0, where)  # modules beside pallet.yaml import as they would from there
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception as e:  # not found, or the module failed while importing: either way, say which step
        raise PalletError(f"{at}: cannot import '{reference}': {type(e).__name__}: {e}") from None
    return found
