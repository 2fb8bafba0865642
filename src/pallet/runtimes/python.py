"""A user's own Python class: `load(path)` builds it, `predict(inputs)` predicts.

The source file that defines the class is copied into the version (`code/`), so the
version keeps working when the user's module changes. State goes into `artifacts/`:
the instance's own `save(path)` writes it, or `pallet.save(..., artifacts=PATH)` copies
a file or folder there. `predict` receives a dict of named numpy arrays and returns a
dict of arrays, or one array (named `output`). A class whose rows are independent says
`batchable = True` to let the server group concurrent requests into one call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pallet.errors import NoRuntime
from pallet.runtimes.base import Runtime

CODE, ARTIFACTS = "code", "artifacts"


class PythonRuntime(Runtime):
    name = "python"
    framework = "python"
    batchable = False  # a user's predict may not treat rows independently; batching is opted into

    def __init__(self, model: Any):
        self.model = model
        self.batchable = bool(getattr(model, "batchable", False))  # the class says `batchable = True`

    @classmethod
    def accepts(cls, model: Any) -> bool:
        kind = model if isinstance(model, type) else type(model)
        return callable(getattr(kind, "load", None)) and callable(getattr(kind, "predict", None))

    @classmethod
    def save(cls, model: Any, folder: Path) -> dict[str, Any]:
        kind = model if isinstance(model, type) else type(model)
        if kind.__module__ == "__main__":
            raise NoRuntime(f"class {kind.__qualname__} is defined in __main__; move it into a module "
                            "file so it can be imported again when the model is loaded")
        module = copy_source(kind, folder)
        (folder / ARTIFACTS).mkdir(exist_ok=True)
        if not isinstance(model, type) and callable(getattr(model, "save", None)):
            model.save(folder / ARTIFACTS)
        return {"module": module, "class": kind.__qualname__}

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any]) -> PythonRuntime:
        kind = load_attribute(folder, options["module"], options["class"])
        load = inspect.getattr_static(kind, "load")
        if isinstance(load, (classmethod, staticmethod)):
            model = kind.load(folder / ARTIFACTS)
        else:  # an instance method: build, then load into it
            model = kind()
            model.load(folder / ARTIFACTS)
        return cls(model)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.model.predict(inputs)
        if isinstance(outputs, dict):
            return {name: np.asarray(value) for name, value in outputs.items()}
        return {"output": np.asarray(outputs)}


def copy_source(obj: Any, folder: Path, module: str | None = None) -> str:
    """Copy the file that defines `obj` (a class or function) into `folder/code/` as `module`.py
    (default: the last part of its module's name); the module name there."""
    source = inspect.getsourcefile(obj)
    if source is None:
        raise NoRuntime(f"cannot find the source file of {obj.__qualname__}")
    (folder / CODE).mkdir(exist_ok=True)
    module = module or obj.__module__.rsplit(".", 1)[-1]
    shutil.copyfile(source, folder / CODE / f"{module}.py")
    return module


def load_attribute(folder: Path, module: str, qualname: str) -> Any:
    """Import `folder/code/{module}.py` under a name of its own and return `qualname` from it."""
    path = folder / CODE / f"{module}.py"
    name = f"pallet_models.{module}_{hashlib.sha1(str(folder).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    found = loaded
    for part in qualname.split("."):
        found = getattr(found, part)
    return found
