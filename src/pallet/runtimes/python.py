"""A user's own Python class: a `pallet.PythonModel` subclass, or a class with `load` and `predict`.

The source file that defines the class is copied into the version (`code/`), beside the helper
modules `pallet.save(..., code_paths=[...])` names, and imported from there (see `source`), so
the version keeps working when the user's files change. State goes into `artifacts/`: the
instance's own `save(path)` writes it, or `pallet.save(..., artifacts=PATH)` copies a file or
folder there. `predict` receives a dict of named numpy arrays and returns a dict of arrays, or
one array (named `output`).

A `PythonModel` subclass follows its contract: built with no arguments, then `load(path)`;
`batchable` defaults to True. A class written without the base class (the older, duck-typed
contract) still works: its `load` may be a classmethod returning the model or an instance method,
`save` is optional, and it is batched only when it says `batchable = True`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from pallet.errors import NoRuntime
from pallet.python_model import PythonModel
from pallet.runtimes.base import Runtime
from pallet.runtimes.source import CODE, copy_source, load_attribute

ARTIFACTS = "artifacts"

__all__ = ["ARTIFACTS", "CODE", "PythonRuntime", "copy_source", "load_attribute"]


class PythonRuntime(Runtime):
    name = "python"
    framework = "python"
    batchable = False  # a duck-typed class opts into batching; a PythonModel's own default is True
    imports_code = True

    def __init__(self, model: Any):
        self.model = model
        self.batchable = bool(getattr(model, "batchable", False))  # PythonModel says True unless told

    @classmethod
    def accepts(cls, model: Any) -> bool:
        kind = _class_of(model)
        if issubclass(kind, PythonModel):
            return True
        return callable(getattr(kind, "load", None)) and callable(getattr(kind, "predict", None))

    @classmethod
    def save(cls, model: Any, folder: Path) -> dict[str, Any]:
        kind = _class_of(model)
        if kind.__module__ == "__main__":
            raise NoRuntime(f"class {kind.__qualname__} is defined in __main__; move it into a module "
                            "file so it can be imported again when the model is loaded")
        if issubclass(kind, PythonModel):
            _check_contract(kind)
        module = copy_source(kind, folder)
        (folder / ARTIFACTS).mkdir(exist_ok=True)
        if not isinstance(model, type) and callable(getattr(model, "save", None)):
            model.save(folder / ARTIFACTS)
        return {"module": module, "class": kind.__qualname__}

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any]) -> PythonRuntime:
        kind = load_attribute(folder, options["module"], options["class"])
        if isinstance(kind, type) and issubclass(kind, PythonModel):
            model = kind()
            model.load(folder / ARTIFACTS)
        else:
            model = _load_duck_typed(kind, folder / ARTIFACTS)
        return cls(model)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.model.predict(inputs)
        if isinstance(outputs, dict):
            return {name: np.asarray(value) for name, value in outputs.items()}
        return {"output": np.asarray(outputs)}


def _class_of(model: Any) -> type:
    return model if isinstance(model, type) else type(model)


def _check_contract(kind: type) -> None:
    """A PythonModel's `load` and `save` are instance methods and it can be built with no arguments."""
    for hook in ("load", "save", "predict"):
        if isinstance(inspect.getattr_static(kind, hook), (classmethod, staticmethod)):
            raise NoRuntime(f"{kind.__qualname__}.{hook} must be an instance method, "
                            f"def {hook}(self, {'inputs' if hook == 'predict' else 'path'}), as pallet.PythonModel has")
    try:
        inspect.signature(kind).bind()
    except TypeError:
        raise NoRuntime(f"{kind.__qualname__}() must work with no arguments: pallet builds it, then calls "
                        "load(path); give its constructor's parameters defaults") from None
    except ValueError:  # no signature to read (a C-level __init__): take the class at its word
        pass


def _load_duck_typed(kind: Any, artifacts: Path) -> Any:
    """The older contract: `load` a classmethod (or staticmethod) returning the model, or an instance method."""
    load = inspect.getattr_static(kind, "load")
    if isinstance(load, (classmethod, staticmethod)):
        return kind.load(artifacts)
    model = kind()
    model.load(artifacts)
    return model
