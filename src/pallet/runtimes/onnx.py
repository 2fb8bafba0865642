"""ONNX models through onnxruntime, on the CPU."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pallet.errors import NoRuntime
from pallet.runtimes.base import Runtime

FILE = "model.onnx"
# onnxruntime's type strings -> signature dtypes
ONNX_DTYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64", "tensor(bool)": "bool", "tensor(string)": "str",
}


class OnnxRuntime(Runtime):
    name = "onnx"
    framework = "onnx"
    packages = ("onnxruntime", "onnx", "numpy")

    def __init__(self, path: Path, intra_op_threads: int = 0, inter_op_threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads  # 0: onnxruntime's choice
        options.inter_op_num_threads = inter_op_threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_dtypes = {i.name: ONNX_DTYPES[i.type] for i in self.session.get_inputs() if i.type in ONNX_DTYPES}
        # Fixed axes stay fixed; symbolic or unknown ones (None, "batch") are free.
        self.input_shapes = {i.name: tuple(d if isinstance(d, int) and d > 0 else -1 for d in i.shape)
                             for i in self.session.get_inputs() if i.shape}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.runner = f"onnxruntime {ort.__version__} (CPU)"

    @classmethod
    def accepts(cls, model: Any) -> bool:
        if isinstance(model, (bytes, bytearray)):
            return True
        if isinstance(model, (str, os.PathLike)):
            return str(model).endswith(".onnx")
        return type(model).__name__ == "ModelProto" and hasattr(model, "SerializeToString")

    @classmethod
    def save(cls, model: Any, folder: Path) -> dict[str, Any]:
        if isinstance(model, (str, os.PathLike)):
            try:
                model = Path(model).read_bytes()
            except OSError as e:
                raise NoRuntime(f"cannot read ONNX file {model}: {e.strerror}") from None
        elif not isinstance(model, (bytes, bytearray)):
            model = model.SerializeToString()
        (folder / FILE).write_bytes(bytes(model))
        return {}

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any]) -> OnnxRuntime:
        try:
            return cls(folder / FILE, int(options.get("intra_op_threads", 0)), int(options.get("inter_op_threads", 0)))
        except Exception as e:  # onnxruntime raises its own types for unreadable graphs
            raise NoRuntime(f"onnxruntime cannot load this model: {e}") from None

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, inputs)
        return {name: np.asarray(value) for name, value in zip(self.output_names, outputs, strict=True)}
