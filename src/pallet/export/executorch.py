"""ExecuTorch (`.pte`) for phones and embedded Linux: torch.export, lowered to XNNPACK where it can be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pallet.export.base import Converted
from pallet.export.worker import OneRowTorch, torch_module
from pallet.runtimes.edge import ExecutorchRuntime


class ExecutorchTarget(OneRowTorch):
    name = "executorch"
    suffix = "executorch"
    description = "ExecuTorch (.pte), XNNPACK-delegated, for phones and embedded Linux"
    toolchain = "edge"

    def convert_here(self, source: Path, folder: Path) -> Converted:
        import torch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        module, args, inputs, names = torch_module(source)
        program = to_edge_transform_and_lower(torch.export.export(module, args),
                                              partitioner=[XnnpackPartitioner()]).to_executorch()
        (folder / ExecutorchRuntime.FILE).write_bytes(program.buffer)
        return Converted("executorch", {"inputs": inputs, "outputs": names},
                         requirements=["executorch"], notes=["ExecuTorch runs one row per call (a batch of 1)"])

    def describe_here(self, folder: Path, converted: Converted) -> dict[str, Any]:
        from executorch.runtime import Runtime as Executorch

        method = Executorch.get().load_program(str(folder / ExecutorchRuntime.FILE)).metadata("forward")
        return {"inputs": [str(method.input_tensor_meta(i).sizes()) for i in range(method.num_inputs())],
                "outputs": [str(method.output_tensor_meta(i).sizes()) for i in range(method.num_outputs())]}
