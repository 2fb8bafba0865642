"""Smaller, faster children of a stored version: int8 and fp16 ONNX, and distilled students.

Quantization works on the parent's ONNX form (the parent itself when it is ONNX):
int8 is onnxruntime's dynamic quantization (weights stored as int8, activations
quantized on the fly), fp16 stores weights and computes in float16 while keeping
float32 inputs and outputs. Distillation trains a small torch network on the
teacher's answers (its probabilities, for a classifier) over a data set the user
names, and stores it as a torch model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pallet.errors import InvalidInput, NoRuntime
from pallet.export.base import Converted, run_here
from pallet.export.check import answers
from pallet.export.data import load_data
from pallet.export.derive import Budget, Parent, derive, staging
from pallet.export.onnx import OnnxTarget, onnx_form
from pallet.export.report import Report
from pallet.runtimes.onnx import FILE
from pallet.store import ModelRef, Store
from pallet.store.refs import check_name

QUANTIZATIONS = ("int8", "fp16")
QUANTIZED_TYPES = {"int8": {2, 3}, "fp16": {10}}   # onnx TensorProto: UINT8, INT8; FLOAT16
# Quantization loses precision by design: judge it by agreement and the budgets, not by a tolerance.
LOSSY = Budget(atol=None, min_agreement=None)


def quantize(store: Store, ref: str, kind: str, *, name: str | None = None, data: str | None = None,
             budget: Budget = LOSSY, progress: Callable[[str], None] = lambda _: None) -> tuple[ModelRef, Report]:
    if kind not in QUANTIZATIONS:
        raise InvalidInput(f"--quantize takes {' or '.join(QUANTIZATIONS)}, not '{kind}'")
    parent = Parent.open(store, ref, data)
    check_name(name or f"{parent.version.ref.name}-{kind}")
    with staging(store) as tmp:
        source, folder = Path(tmp) / "source", Path(tmp) / "child"
        source.mkdir()
        progress(f"taking the ONNX form of {parent.version.ref}")
        converted = onnx_form(parent.version, parent.runtime, source)
        progress(f"quantizing to {kind}")
        quantized(source, kind, folder)
        target = OnnxTarget()
        return derive(store, parent, f"quantize {kind}", kind, name or f"{parent.version.ref.name}-{kind}", folder,
                      converted, target.runner(folder, converted), budget,
                      describe=target.describe(folder, converted), progress=progress)


def quantized(source: Path, kind: str, folder: Path) -> None:
    """The ONNX form in `source`, quantized to `kind`, written to `folder` with the form's other files
    (a tokenizer, say) as they are. Refuses a graph quantization would leave as it is."""
    import shutil

    import onnx

    shutil.copytree(source, folder, ignore=shutil.ignore_patterns(FILE))
    try:
        (to_int8 if kind == "int8" else to_fp16)(source / FILE, folder / FILE)
    except Exception as e:  # onnxruntime's tools raise many types for graphs they cannot rewrite
        raise NoRuntime(f"{kind} quantization failed: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    wanted = QUANTIZED_TYPES[kind]
    model = onnx.load(str(folder / FILE))
    if not any(t.data_type in wanted for t in model.graph.initializer):
        operators = sorted({n.op_type for n in model.graph.node})
        raise NoRuntime(f"{kind} quantization changes nothing in this graph: none of its operators "
                        f"({', '.join(operators)}) has weights onnxruntime stores as {kind}")


def to_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice goes to the root logger
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)


def to_fp16(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    # scikit-learn's ML operators take float and double only: leave them in float32
    ml_ops = sorted({n.op_type for n in model.graph.node if n.domain == "ai.onnx.ml"})
    onnx.save(convert_float_to_float16(model, keep_io_types=True, op_block_list=ml_ops or None), str(target))


STUDENT = re.compile(r"^mlp(?::(\d+(?:,\d+)*))?$")


def distill(store: Store, ref: str, student: str, data: str, *, name: str | None = None, epochs: int = 60,
            eval_data: str | None = None, budget: Budget = LOSSY,
            progress: Callable[[str], None] = lambda _: None) -> tuple[ModelRef, Report]:
    """Train `student` (mlp:HIDDEN[,HIDDEN...]; `mlp` alone is a linear model) on the teacher's answers over `data`."""
    from pallet import nets

    match = STUDENT.match(student)
    if not match:
        raise InvalidInput(f"--student '{student}' is not mlp:HIDDEN[,HIDDEN...] (e.g. mlp:32 or mlp:64,32)")
    hidden = [int(h) for h in match.group(1).split(",")] if match.group(1) else []
    parent = Parent.open(store, ref, eval_data)
    check_name(name or f"{parent.version.ref.name}-student")
    spec = parent.version.signature.inputs
    if len(spec) != 1 or len(spec[0].shape) != 2 or spec[0].dtype in ("str", "bytes"):
        described = ", ".join(s.name + " " + s.describe() for s in spec)
        raise InvalidInput(f"{parent.version.ref} takes {described}; distillation trains MLP students on one "
                           "2-D numeric input")
    train = load_data(data, parent.version.signature)
    progress(f"asking the teacher {parent.version.ref} about {len(train)} rows of {data}")
    teacher = answers(parent.runtime.predict, train)
    x = train.inputs[spec[0].name].astype(np.float32)
    bar = _epochs(progress, epochs)
    if "probabilities" in teacher:
        spec = next(s for s in parent.version.signature.outputs if s.name == "probabilities")
        labels = spec.labels or list(range(teacher["probabilities"].shape[1]))
        model = nets.fit_classifier(x, teacher["probabilities"].astype(np.float32), labels, hidden, epochs=epochs,
                                    progress=bar)
    elif "prediction" in teacher:
        model = nets.fit_regressor(x, teacher["prediction"], hidden, epochs=epochs, progress=bar)
    else:
        raise InvalidInput(f"{parent.version.ref} answers {', '.join(teacher)}; distillation takes classifiers "
                           "(probabilities) and regressors (prediction)")
    with staging(store) as tmp:
        from pallet.runtimes.torch import TorchRuntime

        folder = Path(tmp)
        options = TorchRuntime.save(model, folder)
        converted = Converted("torch", options, requirements=["torch"])
        return derive(store, parent, f"distill {student} on {data}", "student",
                      name or f"{parent.version.ref.name}-student", folder, converted, run_here(folder, converted),
                      budget, progress=progress)


def _epochs(progress: Callable[[str], None], total: int) -> Callable[[int, int], None]:
    def report(done: int, of: int) -> None:
        if done == of or done % max(1, of // 5) == 0:
            progress(f"training the student: epoch {done}/{of}")
    return report
