"""What a model's page shows, read from its signature and sample: no per-model templates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pallet.model import Model
from pallet.signature import TEXT, Signature, TensorSpec, holds_scores

MIN_IMAGE_SIDE = 8  # a flat input of side*side features (64 and up) is drawn as a square image
MIN_EMBEDDING_DIMS = 32  # a model's only output, a float vector this long per row, is an embedding


def describe(model: Model, versions: list[str]) -> dict[str, Any]:
    """The page's description of `model`: its inputs with how to enter them, its outputs with how to show them."""
    manifest = model.version.manifest
    sample = model.version.sample()
    return {
        "name": model.ref.name,
        "version": str(model.ref.version),
        "versions": versions,
        "description": manifest.description,
        "framework": manifest.framework,
        "metrics": manifest.metrics,
        "created": manifest.created,
        "inputs": [describe_input(spec, sample.get(spec.name)) for spec in model.signature.inputs],
        "outputs": describe_outputs(model.signature),
    }


def describe_input(spec: TensorSpec, sample: np.ndarray | None) -> dict[str, Any]:
    out: dict[str, Any] = {**spec.to_dict(), "kind": input_kind(spec)}
    if sample is not None:
        rows = np.asarray(sample)
        out["sample"] = rows.tolist() if spec.dtype not in TEXT else [_text(v) for v in rows.reshape(len(rows), -1)[:, 0]]
        if spec.dtype not in TEXT and rows.size:
            out["min"], out["max"] = float(np.nanmin(rows)), float(np.nanmax(rows))
    if out["kind"] == "image":
        out["image"] = image_shape(spec)
    return out


def input_kind(spec: TensorSpec) -> str:
    """`text` for strings, `image` for image-shaped numbers, `numbers` otherwise."""
    if spec.dtype in TEXT:
        return "text"
    return "image" if image_shape(spec) else "numbers"


def image_shape(spec: TensorSpec) -> dict[str, int] | None:
    """Height, width and channels when the input looks like an image: [H, W], [H, W, 1|3] or H*W flat features."""
    dims = spec.shape[1:]
    if spec.dtype in TEXT or any(d < 1 for d in dims):
        return None
    if len(dims) == 1:
        side = math.isqrt(dims[0])
        if side >= MIN_IMAGE_SIDE and side * side == dims[0]:
            return {"height": side, "width": side, "channels": 1}
    if len(dims) == 2 and min(dims) >= MIN_IMAGE_SIDE:
        return {"height": dims[0], "width": dims[1], "channels": 1}
    if len(dims) == 3 and dims[2] in (1, 3) and min(dims[:2]) >= MIN_IMAGE_SIDE:
        return {"height": dims[0], "width": dims[1], "channels": dims[2]}
    return None


def describe_outputs(signature: Signature) -> list[dict[str, Any]]:
    """The outputs, each with its kind and, when the model's classes have names, the name of each class value."""
    outputs = [describe_output(spec, alone=len(signature.outputs) == 1) for spec in signature.outputs]
    if signature.classes is not None:
        names = {_key(value): name for value, name in signature.class_names().items()}
        for out in outputs:
            if out["kind"] in ("label", "probabilities"):
                out["names"] = names
    return outputs


def describe_output(spec: TensorSpec, alone: bool = False) -> dict[str, Any]:
    """`label` for one value per row, `probabilities` for a row of class scores, `embedding` for a
    model's only output when it is a long float vector per row, `values` otherwise."""
    dims = spec.shape[1:]
    floats = spec.dtype.startswith("float")
    if not dims or dims == (1,):
        kind = "label"
    elif holds_scores(spec):
        kind = "probabilities"
    elif alone and len(dims) == 1 and floats and dims[0] >= MIN_EMBEDDING_DIMS:
        kind = "embedding"
    else:
        kind = "values"
    out = {**spec.to_dict(), "kind": kind}
    if kind == "probabilities" and spec.labels is None and dims[0] > 0:
        out["labels"] = list(range(dims[0]))
    return out


def _key(value: Any) -> str:
    """A class value as the page writes it: 1.0 as 1, True as true (JavaScript's String())."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
