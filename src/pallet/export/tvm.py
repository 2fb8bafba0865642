"""Apache TVM: the ONNX form compiled for this machine's CPU (llvm), run by TVM's Relax VM.

The compiled library (`model.so`) is specific to the CPU it was built for; the
report's parity and figures come from running it here. TVM's ONNX importer takes
the standard operators only, so scikit-learn graphs (ai.onnx.ml) are refused;
torch models compile.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pallet.errors import NoRuntime
from pallet.export.base import Converted
from pallet.export.onnx import FILE as ONNX_FILE
from pallet.export.onnx import needs_more_than_a_graph, onnx_form
from pallet.export.worker import InWorker, call
from pallet.runtimes.base import Runtime
from pallet.runtimes.edge import TvmRuntime
from pallet.store import ModelVersion


class TvmTarget(InWorker):
    name = "tvm"
    suffix = "tvm"
    description = "a library compiled by Apache TVM for this machine's CPU (llvm)"
    toolchain = "tvm"

    def refuses(self, version: ModelVersion) -> str | None:
        return needs_more_than_a_graph(version, self.name)

    def convert(self, parent: ModelVersion, runtime: Runtime, folder: Path) -> Converted:
        with tempfile.TemporaryDirectory() as tmp:
            onnx_form(parent, runtime, Path(tmp))
            ml = ml_operators(Path(tmp) / ONNX_FILE)
            if ml:
                raise NoRuntime(f"{parent.ref}'s ONNX form uses {', '.join(ml)} (ai.onnx.ml), which TVM's ONNX "
                                "importer does not take; export a torch model, or use the onnx target")
            return Converted(**call(self.toolchain, "convert", self.name, tmp, str(folder)))

    def convert_here(self, source: Path, folder: Path) -> Converted:
        import onnx
        import tvm
        from tvm import relax
        from tvm.relax.frontend.onnx import from_onnx

        model = onnx.load(str(source / ONNX_FILE))
        inputs = [i.name for i in model.graph.input]
        dtypes = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).name
                  for i in model.graph.input}
        module = from_onnx(model, keep_params_in_input=False)
        module = relax.transform.DecomposeOpsForInference()(module)
        module = relax.transform.LegalizeOps()(module)
        tvm.compile(module, target="llvm").export_library(str(folder / TvmRuntime.FILE))
        return Converted("tvm", {"inputs": inputs, "outputs": [o.name for o in model.graph.output], "dtypes": dtypes},
                         requirements=["apache-tvm"],
                         notes=[f"compiled by Apache TVM {tvm.__version__} for llvm (this machine's CPU)"])

    def describe_here(self, folder: Path, converted: Converted) -> dict[str, Any]:
        return {"inputs": converted.options["inputs"], "outputs": converted.options["outputs"], "target": "llvm"}


def ml_operators(path: Path) -> list[str]:
    import onnx

    return sorted({n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node
                   if n.domain == "ai.onnx.ml"})
