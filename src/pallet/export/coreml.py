"""Core ML (`.mlpackage`, ML program) for iPhone, iPad and Mac, converted by coremltools.

Core ML runs only on Apple's systems, so here the export is checked for its
structure (inputs, outputs, shapes, size), and the report says it was not executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pallet.errors import NoRuntime
from pallet.export.base import Converted, NotHere, Runner
from pallet.export.worker import OneRowTorch, open_version, torch_module
from pallet.signature import Signature

PACKAGE = "model.mlpackage"
NOT_HERE = "Core ML runs only on macOS, iOS and iPadOS; coremltools cannot execute it on Linux"


class CoremlTarget(OneRowTorch):
    name = "coreml"
    suffix = "coreml"
    description = "Core ML (.mlpackage, ML program, float32), for iPhone, iPad and Mac"
    toolchain = "edge"

    def convert_here(self, source: Path, folder: Path) -> Converted:
        import coremltools as ct
        import torch

        module, args, inputs, names = torch_module(source)
        program = torch.export.export(module, args).run_decompositions({})
        model = ct.convert(program, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32,
                           outputs=[ct.TensorType(name=name) for name in names],
                           minimum_deployment_target=ct.target.iOS16)
        model.save(str(folder / PACKAGE))
        check_structure(self.describe_here(folder, None), open_version(source).signature)
        return Converted("coreml", {"inputs": inputs, "outputs": names}, requirements=["coremltools"],
                         notes=[f"not executed: {NOT_HERE}; its inputs, outputs and shapes were checked"])

    def runner(self, folder: Path, converted: Converted) -> Runner:
        return NotHere(NOT_HERE)

    def describe_here(self, folder: Path, converted: Converted) -> dict[str, Any]:
        import coremltools as ct

        spec = ct.models.MLModel(str(folder / PACKAGE), skip_model_load=True).get_spec()
        kinds = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType

        def tensors(items) -> list[dict[str, Any]]:
            return [{"name": t.name, "dtype": kinds.Name(t.type.multiArrayType.dataType).lower(),
                     "shape": list(t.type.multiArrayType.shape)} for t in items]

        return {"inputs": tensors(spec.description.input), "outputs": tensors(spec.description.output),
                "specification_version": spec.specificationVersion, "kind": spec.WhichOneof("Type")}


def check_structure(found: dict[str, Any], signature: Signature) -> None:
    """The package takes and gives what the parent does, one row at a time: same names, same row shapes."""
    problems = []
    for kind, specs in (("inputs", signature.inputs), ("outputs", signature.outputs)):
        have = {t["name"]: t["shape"] for t in found[kind]}
        for spec in specs:
            if spec.name not in have:
                problems.append(f"{kind[:-1]} '{spec.name}' is missing (it has {', '.join(have) or 'none'})")
            elif [1, *spec.shape[1:]] != list(have[spec.name]):
                problems.append(f"{kind[:-1]} '{spec.name}' has shape {have[spec.name]}, "
                                f"not {[1, *spec.shape[1:]]}")
    if problems:
        raise NoRuntime("the Core ML package does not match its parent: " + "; ".join(problems))
