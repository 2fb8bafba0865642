"""Runtimes: one small class per framework, all behind the same `Runtime` contract.

A runtime saves a model object into a folder, loads it back from that folder, and
predicts on a batch: `predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]`,
with the batch along axis 0. Which runtime loads a version is written in its manifest;
nothing is guessed at load time.
"""

from __future__ import annotations

import importlib
from typing import Any

from pallet.errors import NoRuntime
from pallet.runtimes.base import Runtime

# name in the manifest -> "module:Class"; imported only when used, so loading a
# scikit-learn model never imports onnxruntime and the other way round. (Pipelines, whose
# steps are loaded models, have their runtime in the model API: `pallet.model.runtime_named`.)
RUNTIMES = {
    "onnx": "pallet.runtimes.onnx:OnnxRuntime",
    "sklearn": "pallet.runtimes.sklearn:SklearnRuntime",
    "torch": "pallet.runtimes.torch:TorchRuntime",
    "sentence": "pallet.runtimes.sentence:SentenceRuntime",
    "tflite": "pallet.runtimes.edge:TfliteRuntime",
    "executorch": "pallet.runtimes.edge:ExecutorchRuntime",
    "coreml": "pallet.runtimes.edge:CoremlRuntime",
    "tvm": "pallet.runtimes.edge:TvmRuntime",
    "python": "pallet.runtimes.python:PythonRuntime",
}


def get_runtime(name: str) -> type[Runtime]:
    """The runtime class a manifest names."""
    try:
        module, cls = RUNTIMES[name].split(":")
    except KeyError:
        raise NoRuntime(f"no runtime named '{name}'; this pallet has: {', '.join(RUNTIMES)}") from None
    return getattr(importlib.import_module(module), cls)


def runtime_for(model: Any) -> type[Runtime]:
    """The runtime that can save `model`, tried in the order of `RUNTIMES`."""
    for name in RUNTIMES:
        runtime = get_runtime(name)
        if runtime.accepts(model):
            return runtime
    raise NoRuntime(
        f"pallet cannot save a {type(model).__module__}.{type(model).__qualname__}: pass a scikit-learn "
        "estimator, a torch nn.Module or torch.export program, an ONNX model (path, bytes or ModelProto), a "
        "SentenceEncoder, or a class with load(path) and predict(inputs)"
    )


__all__ = ["Runtime", "RUNTIMES", "get_runtime", "runtime_for"]
