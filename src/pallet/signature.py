"""Named tensors a model takes and gives: dtype, shape (-1 for the batch axis), rules.

`Signature.infer` reads one from a sample and the model's output on it;
`Signature.validate` turns what a caller sent into exactly what the model expects,
or raises `InvalidInput` naming the input and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pallet.errors import InvalidInput

NUMERIC = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64"}
TEXT = {"str", "bytes"}


def dtype_name(dtype: np.dtype) -> str:
    """The signature's name for a numpy dtype: numpy's own name, or `str` / `bytes`."""
    dtype = np.dtype(dtype)
    if dtype.kind in "UO":
        return "str"
    if dtype.kind == "S":
        return "bytes"
    if dtype.name not in NUMERIC:
        raise InvalidInput(f"dtype {dtype} is not supported; use numbers, booleans or text")
    return dtype.name


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]
    allow_nan: bool = False
    labels: list | None = None  # what each column means, e.g. the classes of probabilities

    def __post_init__(self) -> None:
        if self.dtype not in NUMERIC | TEXT:
            raise ValueError(f"unknown dtype {self.dtype!r} for tensor {self.name!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @classmethod
    def from_array(cls, name: str, array: np.ndarray, dtype: str | None = None,
                   shape: tuple[int, ...] | None = None) -> TensorSpec:
        """The spec of a sample batch; `dtype` and `shape` (-1 for free axes) override what it shows."""
        array = np.asarray(array)
        if array.ndim == 0:
            raise InvalidInput(f"tensor '{name}' is a scalar; a batch needs a first axis (rows)")
        if dtype is None:
            bytes_objects = array.dtype.kind == "O" and array.size and all(isinstance(v, bytes) for v in array.flat)
            dtype = "bytes" if bytes_objects else dtype_name(array.dtype)
        allow_nan = array.dtype.kind == "f" and bool(np.isnan(array).any())
        return cls(name, dtype, shape or (-1, *array.shape[1:]), allow_nan)

    def describe(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.allow_nan:
            out["allow_nan"] = True
        if self.labels is not None:
            out["labels"] = self.labels
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(data["name"], data["dtype"], tuple(data["shape"]),
                   bool(data.get("allow_nan", False)), data.get("labels"))

    def convert(self, value: Any) -> np.ndarray:
        """`value` as an array of this spec's dtype and shape, or `InvalidInput`."""
        where = f"input '{self.name}'"
        try:
            array = np.asarray(value)
        except ValueError:
            raise InvalidInput(f"{where}: rows have different lengths; expected {self.describe()}") from None
        array = cast(array, self.dtype, where)
        self._check_shape(array, where)
        if array.dtype.kind == "f" and not self.allow_nan and not np.isfinite(array.sum()):
            bad = ~np.isfinite(array)  # the sum is the fast test; look for where only when it fails
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise InvalidInput(f"{where} contains NaN or infinity (row {row}); "
                                   "this model does not accept missing values")
        return array

    def _check_shape(self, array: np.ndarray, where: str) -> None:
        expected = f"expected shape {list(self.shape)}, got {list(array.shape)}"
        if array.ndim != len(self.shape):
            hint = ""
            if array.ndim == len(self.shape) - 1:
                hint = " (a single row? wrap it in a list to make a batch of one)"
            raise InvalidInput(f"{where}: {expected}{hint}")
        for want, got in zip(self.shape, array.shape, strict=True):
            if want != -1 and want != got:
                raise InvalidInput(f"{where}: {expected}")
        if array.shape[0] == 0:
            raise InvalidInput(f"{where} is an empty batch; send at least one row")


def cast(array: np.ndarray, dtype: str, where: str) -> np.ndarray:
    """`array` as `dtype`, refusing values that do not convert exactly (`InvalidInput` names `where`).

    Text stays text and numbers stay numbers; integers must fit the target's range,
    floats must be whole to become integers, and booleans only become booleans.
    """
    kind = array.dtype.kind
    if dtype in TEXT:
        return _text(array, dtype, where)
    if kind == "O":  # Python objects: numbers, and None for a missing value (NaN)
        for index, v in enumerate(array.flat):
            if not (v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool))):
                raise InvalidInput(f"{where}: expected numbers ({dtype}), got {_value(v)} at "
                                   f"{_position(array, index)}")
        try:
            array = np.array([np.nan if v is None else v for v in array.flat], dtype=np.float64).reshape(array.shape)
        except OverflowError:
            raise InvalidInput(f"{where}: values out of range for {dtype}") from None
        kind = "f"
    if kind not in "biuf":
        first = ""
        if kind in "US" and array.size:
            index = next((i for i, v in enumerate(array.flat) if not _numeric_text(v)), 0)
            first = f" ({_value(array.flat[index])} at {_position(array, index)})"
        raise InvalidInput(f"{where}: expected numbers ({dtype}), got {_kind_name(array)}{first}")
    target = np.dtype(dtype)
    if target.kind == "b":
        if kind != "b" and not np.isin(array, (0, 1)).all():
            raise InvalidInput(f"{where}: expected booleans (true/false or 0/1)")
        return array.astype(bool)
    if kind == "b":
        raise InvalidInput(f"{where}: expected numbers ({dtype}), got booleans")
    if target.kind in "iu":
        if kind == "f" and (not np.isfinite(array).all() or (array != np.round(array)).any()):
            raise InvalidInput(f"{where}: expected whole numbers ({dtype}), got fractions or NaN")
        info = np.iinfo(target)
        # Python ints compare exactly: float(2**63 - 1) rounds up to 2**63, which must not pass.
        if array.size and (int(array.min()) < info.min or int(array.max()) > info.max):
            raise InvalidInput(f"{where}: values out of range for {dtype} ({info.min}..{info.max})")
        return array.astype(target)
    if array.dtype == target:
        return array  # nothing to convert, nothing to copy
    with np.errstate(over="ignore", invalid="ignore"):
        converted = array.astype(target)
    if converted.size and (np.isinf(converted) & ~np.isinf(array.astype(np.float64))).any():
        raise InvalidInput(f"{where}: values out of range for {dtype}")
    return converted


def _text(array: np.ndarray, dtype: str, where: str) -> np.ndarray:
    """str as a numpy unicode array; bytes as an object array (numpy's S type drops trailing NULs)."""
    kind = array.dtype.kind
    if not (kind in "US" or (kind == "O" and all(isinstance(v, (str, bytes)) for v in array.flat))):
        raise InvalidInput(f"{where}: expected text ({dtype}), got {_kind_name(array)}")
    flat = array.reshape(-1).tolist()
    try:
        if dtype == "str":
            items = [v.decode("utf-8") if isinstance(v, bytes) else v for v in flat]
            return np.array(items, dtype=np.str_).reshape(array.shape)
        items = [v.encode("utf-8") if isinstance(v, str) else v for v in flat]
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}: text is not valid UTF-8") from None
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(array.shape)


def _numeric_text(value: Any) -> bool:
    """Whether text reads as a number (numpy turns [1, "a"] into the text array ["1", "a"])."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _value(value: Any) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _position(array: np.ndarray, index: int) -> str:
    """Where the `index`-th value of `array` sits, as [row, column, ...]."""
    return f"position {list(int(i) for i in np.unravel_index(index, array.shape))}"


def _kind_name(array: np.ndarray) -> str:
    return {"U": "text", "S": "bytes", "O": "objects", "b": "booleans", "M": "dates",
            "m": "durations", "c": "complex numbers", "V": "raw records"}.get(array.dtype.kind, str(array.dtype))


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = field(default=())
    # What people call the model's classes, in the order of its class values (the labels of its
    # probabilities, or 0, 1, ... when the model does not say); the answers themselves keep the values.
    classes: tuple[str, ...] | None = None

    @classmethod
    def infer(cls, inputs: Mapping[str, Any], outputs: Mapping[str, Any] = {},
              dtypes: Mapping[str, str] = {}, shapes: Mapping[str, tuple[int, ...]] = {}) -> Signature:
        """A signature read off a sample batch and the model's outputs on it.

        `dtypes` and `shapes` override the sample's per input (a runtime that knows better,
        e.g. an ONNX graph that declares float32 and a fixed batch size of 1).
        """
        return cls(tuple(TensorSpec.from_array(n, v, dtypes.get(n), shapes.get(n)) for n, v in inputs.items()),
                   tuple(TensorSpec.from_array(n, v) for n, v in outputs.items()))

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InvalidInput(f"unknown input '{name}'; this model takes: {', '.join(self.input_names)}")

    def validate(self, inputs: Any) -> dict[str, np.ndarray]:
        """Inputs converted to the declared dtypes and checked against the shapes.

        Takes a mapping of input name to array-like, or one array-like when the
        model has a single input.
        """
        if not isinstance(inputs, Mapping):
            if len(self.inputs) != 1:
                raise InvalidInput(f"this model takes {len(self.inputs)} inputs "
                                   f"({', '.join(self.input_names)}): pass them by name")
            inputs = {self.inputs[0].name: inputs}
        for name in inputs:
            self.input(name)
        missing = [s for s in self.inputs if s.name not in inputs]
        if missing:
            raise InvalidInput("missing input " + ", ".join(f"'{s.name}' ({s.describe()})" for s in missing))
        arrays = {s.name: s.convert(inputs[s.name]) for s in self.inputs}
        rows = {name: len(a) for name, a in arrays.items()}
        if len(set(rows.values())) > 1:
            raise InvalidInput("inputs have different numbers of rows: "
                               + ", ".join(f"'{n}' has {r}" for n, r in rows.items()))
        return arrays

    def named(self, *, input_names: Sequence[str] | None = None, classes: Sequence[str] | None = None) -> Signature:
        """This signature with the names people read: `input_names` for the columns of its one input,
        `classes` for its classes. `InvalidInput` when the counts do not match the model's."""
        inputs = self.inputs
        if input_names is not None:
            inputs = (_with_column_names(self.inputs, _names(input_names, "input_names")),)
        if classes is not None:
            classes = _names(classes, "classes")
            _check_class_count(self.outputs, classes)
        return Signature(inputs, self.outputs, self.classes if classes is None else tuple(classes))

    def class_names(self) -> dict[Any, str]:
        """Each class value and what people call it (`{0: "setosa", ...}`): the values are the labels of
        its class scores, else 0, 1, ...; empty when the classes have no names."""
        if self.classes is None:
            return {}
        scores = next((s for s in self.outputs if holds_scores(s) and s.labels is not None), None)
        values = scores.labels if scores is not None else range(len(self.classes))
        return dict(zip(values, self.classes))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"inputs": [s.to_dict() for s in self.inputs],
                               "outputs": [s.to_dict() for s in self.outputs]}
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        classes = data.get("classes")
        return cls(tuple(TensorSpec.from_dict(s) for s in data["inputs"]),
                   tuple(TensorSpec.from_dict(s) for s in data.get("outputs", [])),
                   None if classes is None else tuple(str(c) for c in classes))


def _names(names: Any, what: str) -> list[str]:
    """`names` as a list of distinct, non-empty strings, or `InvalidInput` naming `what`."""
    if isinstance(names, np.ndarray) and names.ndim == 1:  # e.g. a LabelEncoder's classes_
        names = names.tolist()
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise InvalidInput(f"{what} must be a list of names, got {_value(names)}")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise InvalidInput(f"{what} must be non-empty strings, got {_value(bad[0])}")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise InvalidInput(f"{what} must be distinct; repeated: {', '.join(repeated)}")
    return list(names)


def _with_column_names(inputs: tuple[TensorSpec, ...], names: list[str]) -> TensorSpec:
    """The one input of a model, its columns named."""
    if len(inputs) != 1:
        raise InvalidInput(f"input_names names the columns of a model's one input; this model takes {len(inputs)} "
                           f"inputs ({', '.join(s.name for s in inputs)}), already named")
    spec = inputs[0]
    if len(spec.shape) > 2:
        raise InvalidInput(f"input_names names the columns of rows; input '{spec.name}' is {spec.describe()}")
    columns = spec.shape[1] if len(spec.shape) == 2 else 1
    if columns != -1 and columns != len(names):
        raise InvalidInput(f"input_names has {len(names)} names but the sample has {columns} columns "
                           f"(input '{spec.name}' is {spec.describe()})")
    return TensorSpec(spec.name, spec.dtype, spec.shape, spec.allow_nan, names)


def holds_scores(spec: TensorSpec) -> bool:
    """A row of class scores per answer: floats, [n, k], with class labels or 'prob' in its name."""
    return len(spec.shape) == 2 and spec.dtype.startswith("float") and (spec.labels is not None
                                                                        or "prob" in spec.name.lower())


def _check_class_count(outputs: tuple[TensorSpec, ...], classes: list[str]) -> None:
    """`classes` fit the model's outputs: it answers with classes, and as many as the names when it says."""
    scores = [s for s in outputs if holds_scores(s)]
    answers = [s for s in outputs if s.shape[1:] in ((), (1,)) and s.dtype not in ("float16", "float32", "float64")]
    if not scores and not answers:
        raise InvalidInput("classes names a classifier's classes; this model's outputs ("
                           + ", ".join(f"{s.name} {s.describe()}" for s in outputs) + ") hold no classes")
    for spec in scores:
        known = len(spec.labels) if spec.labels is not None else spec.shape[1]
        if known != -1 and known != len(classes):
            which = f": {', '.join(map(str, spec.labels[:12]))}" if spec.labels is not None else ""
            raise InvalidInput(f"classes has {len(classes)} names but the model has {known} classes "
                               f"(output '{spec.name}'{which})")
