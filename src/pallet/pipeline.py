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
          - function: steps:to_digits_scale   # module:function: a module beside pallet.yaml, or an installed one
          - model: digits@production          # pinned to its version when the pipeline is saved
          - function: steps:name_the_digit

A function step takes and returns a dict of named numpy arrays (a single array is named `output`);
a model step takes the tensors its signature names (or the one tensor there is, for a one-input model).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import msgspec
import yaml

from pallet.decoding import Decoder, expects
from pallet.errors import InvalidInput, PalletError
from pallet.runtimes.source import CodeScope, user_module_name
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
        return " -> ".join(str(s.ref) if isinstance(s, ModelVersion)
                           else f"{user_module_name(s.__module__)}:{s.__qualname__}" for s in self.steps)


STEPS = "a list of '- model: REF' and '- function: module:name'"


class StepSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One step of a declared pipeline: `- model: REF` or `- function: module:name`."""
    expected: ClassVar[str] = "'- model: REF' or '- function: module:name'"
    model: Annotated[str, expects("a model reference, e.g. digits@production")] | None = None
    function: Annotated[str, expects("module:function")] | None = None


class PipelineSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One pipeline under `pipelines:` in pallet.yaml."""
    unknown: ClassVar[str] = "unknown key(s) {keys}; it takes {known}"
    steps: Annotated[list[StepSpec], expects(STEPS, min_length=1)]
    description: str = ""
    batchable: bool = False
    aliases: Annotated[list[str], expects("a list of names")] | None = None


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
    beside = CodeScope(path.parent)  # modules beside pallet.yaml import as they would from there
    declared = []
    for name, raw in pipelines.items():
        at = f"{path}: pipeline '{name}'"
        spec = _checked(raw, at)
        steps = []
        for i, step in enumerate(spec.steps):
            if (step.model is None) == (step.function is None):
                raise PalletError(f"{at}, step {i + 1}: write '- model: REF' or '- function: module:name'")
            if step.model is not None:
                steps.append(store.resolve(step.model))
            else:
                steps.append(_import(step.function, beside, f"{at}, step {i + 1}"))
        declared.append(Declared(str(name), Pipeline(steps, spec.batchable, spec.description), spec.aliases or []))
    return declared


def _checked(raw: Any, at: str) -> PipelineSpec:
    """One pipeline's declaration, checked against `PipelineSpec`; a mistake names the pipeline and the key."""
    try:
        return Decoder(PipelineSpec, what=at, expected=f"a mapping with 'steps': {STEPS}", needs=True).convert(raw)
    except InvalidInput as e:
        message = str(e)
        raise PalletError(message if message.startswith(at) else f"{at}: {message}") from None


def _import(reference: str, beside: CodeScope, at: str) -> Callable:
    module_name, _, qualname = reference.partition(":")
    if not module_name or not qualname:
        raise PalletError(f"{at}: function '{reference}' must be written module:function")
    try:
        found = beside.attribute(module_name, qualname)
    except Exception as e:  # not found, or the module failed while importing: either way, say which step
        raise PalletError(f"{at}: cannot import '{reference}': {type(e).__name__}: {e}") from None
    return found
