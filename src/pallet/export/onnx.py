"""ONNX: scikit-learn through skl2onnx, torch through torch.onnx (the torch.export-based exporter), and a
sentence encoder as one graph with its pooling, beside its tokenizer."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pallet.errors import NoRuntime
from pallet.export.base import Converted, Target
from pallet.runtimes.base import Runtime
from pallet.runtimes.onnx import FILE
from pallet.store import ModelVersion

OPSET = 18
# Runtimes whose ONNX form is more than a bare graph (a tokenizer beside it): their export keeps their runtime.
MORE_THAN_A_GRAPH = ("sentence",)


class OnnxTarget(Target):
    name = "onnx"
    suffix = "onnx"
    description = "ONNX, run by onnxruntime on servers, browsers, phones and most accelerators"

    def convert(self, parent: ModelVersion, runtime: Runtime, folder: Path) -> Converted:
        return onnx_form(parent, runtime, folder)

    def describe(self, folder: Path, converted: Converted) -> dict[str, Any]:
        return {**describe_onnx(folder / FILE), **super().describe(folder, converted)}


def onnx_form(parent: ModelVersion, runtime: Runtime, folder: Path) -> Converted:
    """Write the parent's ONNX form into `folder`: `model.onnx`, and whatever else its runtime needs
    beside the graph (a sentence encoder's tokenizer)."""
    if parent.manifest.runtime == "sentence":
        return Converted("sentence", sentence_onnx(runtime, folder), requirements=["onnxruntime", "tokenizers"])
    to_onnx(parent, runtime, folder / FILE)
    return Converted("onnx", requirements=["onnxruntime"])


def needs_more_than_a_graph(version: ModelVersion, target: str) -> str | None:
    """Why a target that takes a bare ONNX graph cannot take `version`: its runtime needs more (a tokenizer)."""
    if version.manifest.runtime in MORE_THAN_A_GRAPH:
        return (f"{version.ref} needs more than an ONNX graph to run ({version.manifest.runtime}: a tokenizer, "
                f"say); the {target} export takes plain ONNX graphs")
    return None


def to_onnx(parent: ModelVersion, runtime: Runtime, path: Path) -> None:
    """Write the parent as an ONNX graph whose inputs and outputs keep the parent's names."""
    kind = parent.manifest.runtime
    if kind == "onnx":
        path.write_bytes((parent.path / FILE).read_bytes())
    elif kind == "sklearn":
        path.write_bytes(_from_sklearn(parent, runtime))
    elif kind == "torch":
        _from_torch(parent, runtime, path)
    else:
        raise NoRuntime(f"{parent.ref} is a {parent.manifest.framework} model; ONNX export takes scikit-learn, "
                        "torch and ONNX models")


def _from_sklearn(parent: ModelVersion, runtime: Any) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    spec = parent.signature.inputs
    if len(spec) != 1 or len(spec[0].shape) != 2:
        raise NoRuntime(f"{parent.ref}: ONNX export of scikit-learn models takes one 2-D feature input")
    features = spec[0].shape[1]
    outputs = {s.name: s for s in parent.signature.outputs}
    if "probabilities" in outputs:
        classes = runtime.classes
        label_type = StringTensorType([None]) if classes.dtype.kind in "USO" else Int64TensorType([None])
        final = [("label", label_type), ("probabilities", FloatTensorType([None, len(classes)]))]
        options = {"zipmap": False}
    else:
        final, options = [("prediction", FloatTensorType([None, 1]))], {}
    try:
        model = convert_sklearn(runtime.estimator, initial_types=[(spec[0].name, FloatTensorType([None, features]))],
                                final_types=final, options={id(runtime.estimator): options} if options else None,
                                target_opset={"": 17, "ai.onnx.ml": 3})
    except Exception as e:  # skl2onnx raises many types for estimators it has no converter for
        raise NoRuntime(f"skl2onnx cannot convert {parent.ref}: {e}") from None
    return model.SerializeToString()


def _from_torch(parent: ModelVersion, runtime: Any, path: Path) -> None:
    import torch

    sample = parent.sample()
    args = tuple(torch.from_numpy(sample[name]) for name in runtime.input_names)
    with torch.inference_mode():
        out = runtime.module(*args)
    names = runtime.names_of(out)
    batch = torch.export.Dim("batch")
    dynamic = {name: {0: batch} for name in runtime.input_names} if runtime.batchable else None
    try:
        with quiet():
            torch.onnx.export(runtime.module, args, str(path), input_names=runtime.input_names, output_names=names,
                              dynamic_shapes=dynamic, dynamo=True, opset_version=OPSET, external_data=False,
                              verbose=False)
    except Exception as e:  # the exporter raises its own error types for unsupported operators
        raise NoRuntime(f"torch.onnx cannot export {parent.ref}: {explain(e)}") from None


def sentence_onnx(runtime: Any, folder: Path) -> dict[str, Any]:
    """Write a sentence encoder's ONNX form (the graph with its pooling, beside the tokenizer) into
    `folder`; the sentence runtime's options for it."""
    import torch

    from pallet.runtimes.sentence import ENCODER, GRAPH, INPUTS, copy_tokenizer

    copy_tokenizer(runtime.folder / ENCODER, folder / ENCODER)
    options = {"backend": "onnx", "max_length": runtime.tokenizer.truncation["max_length"]}
    if runtime.backend == "onnx":
        shutil.copyfile(runtime.folder / GRAPH, folder / GRAPH)
        return options
    example = runtime.tokens(np.array(["an example sentence", "and a second, longer one"]))
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=512)
    args = tuple(torch.from_numpy(example[name]) for name in INPUTS)
    try:
        with quiet():
            program = torch.onnx.export(runtime.module, args, input_names=list(INPUTS), dynamo=True,
                                        opset_version=OPSET, verbose=False,
                                        dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUTS})
            program.save(str(folder / GRAPH), external_data=False)
    except Exception as e:  # the exporter raises its own error types
        raise NoRuntime(f"torch.onnx cannot export this sentence encoder: {explain(e)}") from None
    _name_output(folder / GRAPH, "embedding")
    return options


def _name_output(path: Path, name: str) -> None:
    """Call the graph's only output `name`, renaming any inner value that had that name (the encoder has one)."""
    import onnx

    model = onnx.load(str(path))
    old = model.graph.output[0].name
    renames = {name: f"{name}__inner", old: name}
    for node in model.graph.node:
        node.input[:] = [renames.get(v, v) for v in node.input]
        node.output[:] = [renames.get(v, v) for v in node.output]
    for value in model.graph.value_info:
        value.name = renames.get(value.name, value.name)
    model.graph.output[0].name = name
    onnx.save(model, str(path))


@contextmanager
def quiet() -> Iterator[None]:
    """The torch exporters' progress lines, graph dumps and advice, silenced: a failure is reported as
    one line by `explain`."""
    loggers = [logging.getLogger(n) for n in ("torch", "torch.onnx", "torch.export", "torch._export",
                                              "torch._dynamo", "torch.fx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def explain(error: BaseException) -> str:
    """The root cause of a toolchain's failure, in one line: its innermost exception's type and first line."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else 'no message'}"


def describe_onnx(path: Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def tensors(values) -> list[dict[str, Any]]:
        return [{"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
                 if v.type.tensor_type.elem_type else "?",
                 "shape": [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]}
                for v in values]

    return {"inputs": tensors(model.graph.input), "outputs": tensors(model.graph.output),
            "operators": sorted({n.op_type for n in model.graph.node}),
            "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "parameters": int(sum(np.prod(t.dims) for t in model.graph.initializer))}
