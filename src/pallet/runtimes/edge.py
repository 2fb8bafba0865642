"""Formats made for devices, run here by their own runtimes where those are installed.

LiteRT and ExecuTorch exports take one row per call (a batch of 1, as on a phone),
so these runtimes call them row by row. TVM runs the compiled library of a model.
Core ML cannot run off Apple's systems: loading it says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pallet.errors import NoRuntime
from pallet.runtimes.base import Runtime


def row_by_row(run, inputs: dict[str, np.ndarray], names: list[str], output_names: list[str]) -> dict[str, np.ndarray]:
    """Call `run` (one-row arrays in -> one-row outputs out) for every row and stack the answers."""
    rows = len(inputs[names[0]])
    columns: list[list[np.ndarray]] = [[] for _ in output_names]
    for i in range(rows):
        for column, value in zip(columns, run([np.ascontiguousarray(inputs[n][i:i + 1]) for n in names]), strict=True):
            column.append(np.asarray(value))
    return {name: np.concatenate(column) if column else np.zeros((0,))
            for name, column in zip(output_names, columns)}


def _need(module: str, package: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise NoRuntime(f"{what} needs {package}, which is not installed here: pip install 'pallet[edge]' "
                        "(or run it where `make edge` installed it)") from None


class _Device(Runtime):
    """A format that takes one row per call: `_run` answers one row, `predict` every row of a batch."""

    batchable = False
    input_names: list[str]
    output_names: list[str]

    def __init__(self, folder: Path, options: dict[str, Any]):
        self.input_names, self.output_names = options["inputs"], options["outputs"]

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any]) -> _Device:
        return cls(folder, options)

    def _run(self, row: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return row_by_row(self._run, inputs, self.input_names, self.output_names)

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return False    # made by `pallet export`, never saved directly

    @classmethod
    def save(cls, model: Any, folder: Path) -> dict[str, Any]:
        raise NoRuntime(f"{cls.framework} versions are made by pallet export")


class TfliteRuntime(_Device):
    name = "tflite"
    framework = "litert"
    packages = ("numpy",)   # the toolchain's own pins come from the environment that made the export
    FILE = "model.tflite"

    def __init__(self, folder: Path, options: dict[str, Any]):
        litert = _need("ai_edge_litert.interpreter", "ai-edge-litert", "a LiteRT model")
        super().__init__(folder, options)
        self.interpreter = litert.Interpreter(model_path=str(folder / self.FILE))
        self.interpreter.allocate_tensors()
        self.inputs = [d["index"] for d in self.interpreter.get_input_details()]
        self.outputs = [d["index"] for d in self.interpreter.get_output_details()]
        self.input_dtypes = {n: d["dtype"].__name__ for n, d in zip(self.input_names,
                                                                      self.interpreter.get_input_details())}
        self.runner = "ai-edge-litert interpreter (CPU)"

    def _run(self, row: list[np.ndarray]) -> list[np.ndarray]:
        for index, value in zip(self.inputs, row):
            self.interpreter.set_tensor(index, value)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(index) for index in self.outputs]


class ExecutorchRuntime(_Device):
    name = "executorch"
    framework = "executorch"
    packages = ("numpy",)
    FILE = "model.pte"

    def __init__(self, folder: Path, options: dict[str, Any]):
        runtime = _need("executorch.runtime", "executorch", "an ExecuTorch model")
        import torch

        super().__init__(folder, options)
        self.torch = torch
        self.method = runtime.Runtime.get().load_program(str(folder / self.FILE)).load_method("forward")
        self.runner = "executorch runtime (XNNPACK, CPU)"

    def _run(self, row: list[np.ndarray]) -> list[np.ndarray]:
        return [value.numpy() for value in self.method.execute([self.torch.from_numpy(v) for v in row])]


class CoremlRuntime(_Device):
    name = "coreml"
    framework = "coreml"
    packages = ()

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any]) -> CoremlRuntime:
        raise NoRuntime("Core ML models run only on macOS, iOS and iPadOS; ship this version to an Apple device "
                        "(pallet export REF --format coreml -o DIR writes it out)")


class TvmRuntime(Runtime):
    """A library Apache TVM compiled for this machine's CPU (`model.so`, Relax VM)."""

    name = "tvm"
    framework = "apache-tvm"
    packages = ("numpy",)
    FILE = "model.so"

    def __init__(self, folder: Path, options: dict[str, Any]):
        tvm = _need("tvm", "apache-tvm", "a TVM-compiled model")
        from tvm import relax

        self.tvm = tvm
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(folder / self.FILE)), tvm.cpu())
        self.input_names, self.output_names = options["inputs"], options["outputs"]
        self.input_dtypes = dict(options.get("dtypes", {}))
        self.runner = f"apache-tvm {tvm.__version__} (llvm, CPU)"

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return False

    @classmethod
    def save(cls, model: Any, folder: Path) -> dict[str, Any]:
        raise NoRuntime("TVM versions are made by pallet export --format tvm")

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any]) -> TvmRuntime:
        return cls(folder, options)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.vm["main"](*(self.tvm.runtime.tensor(np.ascontiguousarray(inputs[n])) for n in self.input_names))
        values = [out] if hasattr(out, "numpy") else list(out)
        return {name: value.numpy() for name, value in zip(self.output_names, values, strict=True)}
