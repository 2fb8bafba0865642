"""Held-out data for parity, accuracy and distillation: a named data set or a file.

`sentences`: English sentences pallet composes, for text models.
`sklearn:digits` (the test split), `sklearn:digits:train`, `sklearn:iris`,
`sklearn:breast_cancer`, `sklearn:diabetes`: the data sets scikit-learn ships, split
as `pallet demo` splits them (a quarter held out, fixed seed). A `.npz` file holds
one array per input (and `label` for the true answers); a `.npy` file is the
single input; a `.csv` file is one column per feature, with an optional `label`
column; a `.txt` file is one text per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pallet.csv_reader import read_table
from pallet.errors import InvalidInput
from pallet.signature import Signature

SKLEARN_SETS = {"digits": "load_digits", "iris": "load_iris", "breast_cancer": "load_breast_cancer",
                "diabetes": "load_diabetes"}
LABEL_NAMES = ("label", "target", "y")


@dataclass
class Data:
    name: str
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None     # true answers, when the data set has them

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def head(self, n: int) -> Data:
        return Data(self.name, {k: v[:n] for k, v in self.inputs.items()},
                    None if self.labels is None else self.labels[:n])

    def rows(self, index: np.ndarray) -> Data:
        return Data(self.name, {k: v[index] for k, v in self.inputs.items()},
                    None if self.labels is None else self.labels[index])


def split(name: str, part: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of one part of a scikit-learn data set, split the one way pallet always splits it."""
    import sklearn.datasets
    from sklearn.model_selection import train_test_split

    if name not in SKLEARN_SETS:
        raise InvalidInput(f"no data set 'sklearn:{name}'; there are: "
                           + ", ".join(f"sklearn:{n}" for n in SKLEARN_SETS))
    if part not in ("train", "test"):
        raise InvalidInput(f"data set part '{part}' is neither train nor test")
    x, y = getattr(sklearn.datasets, SKLEARN_SETS[name])(return_X_y=True)
    classify = name != "diabetes"
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0,
                                                        stratify=y if classify else None)
    return (x_train, y_train) if part == "train" else (x_test, y_test)


def sentences(count: int = 240) -> np.ndarray:
    """`count` distinct English sentences, composed the same way every time."""
    subjects = ["The engineer", "A small dog", "My neighbour", "The committee", "Our new model", "The old train",
                "A curious child", "The city council"]
    verbs = ["reviewed", "painted", "ignored", "celebrated", "measured", "repaired"]
    objects = ["the quarterly report.", "a wooden fence by the river.", "every request that arrived late.",
               "the results of the football match.", "a recipe for lemon cake.",
               "the noisy server in the basement."]
    texts = [f"{s} {v} {o}" for o in objects for v in verbs for s in subjects]
    return np.array(texts[:count], dtype=object)


def load_data(spec: str, signature: Signature) -> Data:
    """The data `spec` names, cast to the inputs `signature` declares."""
    if spec == "sentences":
        return Data(spec, _cast({_only_input(signature, spec): sentences()}, signature, spec))
    if spec.startswith("sklearn:"):
        name, _, part = spec.removeprefix("sklearn:").partition(":")
        x, y = split(name, part or "test")
        return Data(spec, _cast({_only_input(signature, spec): x}, signature, spec), y)
    path = Path(spec)
    if not path.is_file():
        raise InvalidInput(f"data '{spec}' is neither a file nor a data set (sentences, sklearn:digits, ...)")
    if path.suffix not in (".npy", ".npz", ".txt", ".csv"):
        raise InvalidInput(f"data file {spec} is not .npz, .npy, .csv or .txt")
    try:
        inputs, labels = _read(path, signature, spec)
    except InvalidInput:
        raise
    except Exception as e:  # numpy, zipfile and pyarrow raise their own types for damaged files
        raise InvalidInput(f"data file {spec} cannot be read: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    data = Data(spec, _cast(inputs, signature, spec), labels)
    if labels is not None and len(labels) != len(data):
        raise InvalidInput(f"data file {spec} has {len(labels)} labels for {len(data)} rows")
    return data


def _read(path: Path, signature: Signature, spec: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    if path.suffix == ".npy":
        return {_only_input(signature, spec): np.load(path, allow_pickle=False)}, None
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            found = {k: arrays[k] for k in arrays.files}
        return found, next((found.pop(k) for k in LABEL_NAMES if k in found), None)
    if path.suffix == ".txt":
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return {_only_input(signature, spec): np.array(lines, dtype=object)}, None
    table = read_table(path)
    label = next((k for k in LABEL_NAMES if k in table.column_names), None)
    features = [c for c in table.column_names if c != label]
    x = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in features])
    return {_only_input(signature, spec): x}, table.column(label).to_numpy() if label else None


def _only_input(signature: Signature, spec: str) -> str:
    if len(signature.inputs) != 1:
        raise InvalidInput(f"{spec} is one table, but the model takes {len(signature.inputs)} inputs: "
                           "pass an .npz file with one array per input")
    return signature.inputs[0].name


def _cast(inputs: dict[str, np.ndarray], signature: Signature, spec: str) -> dict[str, np.ndarray]:
    try:
        return signature.validate(inputs)
    except InvalidInput as e:
        raise InvalidInput(f"data {spec} does not fit the model: {e}") from None
