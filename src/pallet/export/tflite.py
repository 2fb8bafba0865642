"""LiteRT (TensorFlow Lite) for Android, iOS and microcontrollers: litert-torch converts, ai-edge-litert runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pallet.export.base import Converted
from pallet.export.worker import OneRowTorch, torch_module
from pallet.runtimes.edge import TfliteRuntime


class TfliteTarget(OneRowTorch):
    name = "tflite"
    suffix = "tflite"
    description = "LiteRT (TensorFlow Lite), for Android, iOS and microcontrollers"
    toolchain = "edge"

    def convert_here(self, source: Path, folder: Path) -> Converted:
        import litert_torch

        module, args, inputs, names = torch_module(source)
        litert_torch.convert(module, args).export(str(folder / TfliteRuntime.FILE))
        return Converted("tflite", {"inputs": inputs, "outputs": names}, requirements=["ai-edge-litert"],
                         notes=["LiteRT runs one row per call (a batch of 1), as on a phone"])

    def describe_here(self, folder: Path, converted: Converted) -> dict[str, Any]:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(folder / TfliteRuntime.FILE))

        def tensors(details) -> list[dict[str, Any]]:
            return [{"name": d["name"], "dtype": d["dtype"].__name__, "shape": d["shape"].tolist()} for d in details]

        return {"inputs": tensors(interpreter.get_input_details()),
                "outputs": tensors(interpreter.get_output_details())}
