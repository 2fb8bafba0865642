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

PIPELINE = "pipeline"  # the runtime of pipelines: it loads models itself, so it lives here, not in runtimes/


def runtime_named(name: str) -> type[Runtime]:
    """The runtime class a manifest names."""
    if name == PIPELINE:
        from pallet.pipeline_runtime import PipelineRuntime

        return PipelineRuntime
    if name not in runtimes.RUNTIMES:
        known = list(runtimes.RUNTIMES)
        known.insert(known.index("python") if "python" in known else len(known), PIPELINE)  # the order they are tried in
        raise NoRuntime(f"no runtime named '{name}'; this pallet has: {', '.join(known)}")
    return runtimes.get_runtime(name)


def runtime_for(model: Any) -> type[Runtime]:
    """The runtime that can save `model`."""
    from pallet.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return runtime_named(PIPELINE)
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
