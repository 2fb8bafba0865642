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

Each declared pipeline imports its functions in a code scope of its own (see `runtimes/source.py`),
which it releases when it is closed or no longer referenced, so loading a pallet.yaml again and again
does not keep every load's modules.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import msgspec
import yaml

from pallet.decoding import Decoder, expects
from pallet.errors import InvalidInput, PalletError
from pallet.runtimes.source import CodeScope, collecting_scopes, user_module_name
from pallet.store import ModelVersion, Store, default_store

Step = ModelVersion | Callable[[dict], Any]


@dataclass
class Pipeline:
    steps: list[Step]
    batchable: bool = False
    description: str = ""
    # The code scopes its functions were imported in (a declared pipeline's): released by `close`,
    # or when the pipeline is no longer referenced.
    code_scopes: tuple[CodeScope, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        self._release = weakref.finalize(self, _close_scopes, self.code_scopes)
        self._release.atexit = False  # nothing to give back to a process that is ending
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

    def close(self) -> None:
        """Release the modules its functions were imported from; the functions it holds keep working."""
        self._release()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
    with collecting_scopes():  # a declaration that fails leaves nothing it imported behind
        return [_declared(str(name), raw, path, store) for name, raw in pipelines.items()]


def _declared(name: str, raw: Any, path: Path, store: Store) -> Declared:
    """One declared pipeline, its functions imported in a code scope it owns."""
    at = f"{path}: pipeline '{name}'"
    spec = _checked(raw, at)
    beside: CodeScope | None = None  # made at the first function step
    steps = []
    for i, step in enumerate(spec.steps):
        if (step.model is None) == (step.function is None):
            raise PalletError(f"{at}, step {i + 1}: write '- model: REF' or '- function: module:name'")
        if step.model is not None:
            steps.append(store.resolve(step.model))
        else:
            beside = beside or CodeScope(path.parent)  # modules beside pallet.yaml import as they would from there
            steps.append(_import(step.function, beside, f"{at}, step {i + 1}"))
    pipeline = Pipeline(steps, spec.batchable, spec.description, code_scopes=(beside,) if beside else ())
    return Declared(name, pipeline, spec.aliases or [])


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


def _close_scopes(scopes: tuple[CodeScope, ...]) -> None:
    for scope in scopes:
        scope.close()
