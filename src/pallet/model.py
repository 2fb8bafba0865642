"""The model API: which runtime saves or loads a model, and a loaded model, verified and ready to predict."""

from __future__ import annotations

from typing import Any

import numpy as np

from pallet import runtimes
from pallet.errors import NoRuntime, PalletError, PredictionError
from pallet.runtimes.base import Runtime
from pallet.runtimes.source import collecting_scopes
from pallet.signature import Signature
from pallet.store import ModelRef, ModelVersion

# Runtimes that load models themselves (pipelines: their steps are loaded models) sit above the runtimes
# package and register here when imported (pallet/__init__.py imports them): name -> class.
ABOVE: dict[str, type[Runtime]] = {}


def register(runtime: type[Runtime]) -> type[Runtime]:
    """Make a runtime of the model API known by its name, tried before the `runtimes` package's."""
    ABOVE[runtime.name] = runtime
    return runtime


def runtime_named(name: str) -> type[Runtime]:
    """The runtime class a manifest names."""
    if name in ABOVE:
        return ABOVE[name]
    if name not in runtimes.RUNTIMES:
        known = list(runtimes.RUNTIMES)
        at = known.index("python") if "python" in known else len(known)
        known[at:at] = list(ABOVE)  # the order they are tried in
        raise NoRuntime(f"no runtime named '{name}'; this pallet has: {', '.join(known)}")
    return runtimes.get_runtime(name)


def runtime_for(model: Any) -> type[Runtime]:
    """The runtime that can save `model`."""
    for runtime in ABOVE.values():
        if runtime.accepts(model):
            return runtime
    return runtimes.runtime_for(model)


def load_runtime(version: ModelVersion, **options: Any) -> Runtime:
    """The stored version's runtime, its files verified first. `options` override the manifest's runtime options."""
    runtime = runtime_named(version.manifest.runtime)
    version.verify(skip=runtime.reads_verified)  # before anything is deserialized
    with collecting_scopes() as scopes:  # the code it imports, released by `close`
        loaded = runtime.load(version.path, {**version.manifest.runtime_options, **options})
    loaded.code_scopes = tuple(scopes)
    return loaded


class Model:
    def __init__(self, version: ModelVersion, **runtime_options: Any):
        self.version = version
        self.runtime = load_runtime(version, **runtime_options)

    @property
    def ref(self) -> ModelRef:
        return self.version.ref

    @property
    def signature(self) -> Signature:
        return self.version.signature

    def __repr__(self) -> str:
        return f"<Model {self.ref} ({self.version.manifest.framework})>"

    def close(self) -> None:
        """Release what loading took from the process (see `Runtime.close`); the model is not used after."""
        self.runtime.close()

    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """Outputs by name for a batch: an array or nested lists (one-input models) or a dict by input name."""
        return self.run(self.signature.validate(inputs))

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for inputs that `signature.validate` already returned."""
        try:
            return self.runtime.predict(arrays)
        except PalletError:
            raise
        except Exception as e:
            raise PredictionError(f"model {self.ref} failed to predict: {type(e).__name__}: {e}") from e
