"""Triton's classification extension, for every protocol: a requested output with the parameter
`classification: k` is answered as the top k classes of each row instead of its scores, a BYTES
tensor [n, k] of "score:index" strings, or "score:index:label" when the model's classes have names.

As Triton does, k larger than the number of classes gives every class (k is clamped), ties keep
the lower index first. Only an output of class scores ([n, classes] floats, see
`signature.holds_scores`) can be classified; any other is refused, before the model runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pallet.errors import InvalidInput
from pallet.signature import Signature, TensorSpec, holds_scores

PARAMETER = "classification"
EXPECTED = "a whole number of classes, at least 1"


def count(output: str, value: Any) -> int:
    """The number of classes a request asks for on `output`, or `InvalidInput`."""
    if type(value) is not int or value < 1:
        raise InvalidInput(f"output '{output}': '{PARAMETER}' must be {EXPECTED}")
    return value


def check(model: str, signature: Signature, wanted: Mapping[str, int]) -> None:
    """Refuse classification on an output that holds no class scores."""
    specs = {spec.name: spec for spec in signature.outputs}
    for name in wanted:
        spec = specs.get(name)
        if spec is not None and not holds_scores(spec):
            scores = [s.name for s in signature.outputs if holds_scores(s)]
            which = (f"its class scores are in: {', '.join(scores)}" if scores
                     else "this model has no output of class scores")
            raise InvalidInput(f"output '{name}' of model '{model}' ({spec.describe()}) holds no class scores, so "
                               f"the '{PARAMETER}' parameter cannot apply to it; {which}")


def apply(signature: Signature, outputs: dict[str, np.ndarray], wanted: Mapping[str, int]) -> dict[str, np.ndarray]:
    """`outputs` with each output named in `wanted` replaced by its top-k classes per row."""
    if not wanted:
        return outputs
    specs = {spec.name: spec for spec in signature.outputs}
    return {name: top_k(array, wanted[name], _labels(signature, specs[name])) if name in wanted else array
            for name, array in outputs.items()}


def top_k(scores: np.ndarray, k: int, labels: list[str] | None = None) -> np.ndarray:
    """[n, min(k, classes)] bytes "score:index[:label]", highest score first in each row."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise InvalidInput(f"classification takes a row of class scores per answer; this output is "
                           f"shaped {list(scores.shape)}")
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.empty(order.shape, dtype=object)
    for row, indices in enumerate(order):
        for column, index in enumerate(indices.tolist()):
            text = f"{scores[row, index]}:{index}"
            if labels is not None:
                text += f":{labels[index]}"
            out[row, column] = text.encode()
    return out


def _labels(signature: Signature, spec: TensorSpec) -> list[str] | None:
    """What each column of `spec` is called: the class names when the model has them, else its labels
    when they are words (a classifier fitted on named classes); None when the classes are bare numbers."""
    if spec.labels is None:
        names = signature.class_names()
        return [names[i] for i in range(len(names))] if names and len(names) == spec.shape[-1] else None
    names = signature.class_names()
    if names:
        return [str(names.get(value, value)) for value in spec.labels]
    if all(isinstance(value, str) for value in spec.labels):
        return list(spec.labels)
    return None
