"""`pallet.PythonModel`: the base class of a model written in plain Python.

    class Doubler(pallet.PythonModel):
        batchable = True                  # rows are independent: requests may share one call
        requirements = ["numpy>=1.24"]    # PEP 508; checked when saved, pinned in the manifest

        def __init__(self, factor=2.0):   # loading builds an instance with no arguments
            self.factor = factor

        def save(self, path):             # write state into the version's artifacts folder
            (path / "factor.txt").write_text(str(self.factor))

        def load(self, path):             # read it back
            self.factor = float((path / "factor.txt").read_text())

        def predict(self, inputs):        # named arrays in (a batch along axis 0), named arrays out
            return {"y": inputs["x"] * self.factor}

    pallet.save(Doubler(3.0), "doubler", sample={"x": np.arange(10.0).reshape(5, 2)})

The class must live in a module file (not `__main__`): that file, and the helper modules and
packages named in `code_paths` (`pallet.save(..., code_paths=["helpers.py"])`), are copied into
the version and imported from there when it is loaded, so later edits to the user's files change
nothing for versions already stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np


class PythonModel:
    """Subclass it and write `predict`; `load` and `save` are needed only when the model has state."""

    batchable: ClassVar[bool] = True
    requirements: ClassVar[list[str]] = []

    def load(self, path: Path) -> None:
        """Read the model's state from `path`, the version's artifacts folder (built with no arguments)."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for a batch of inputs by name, the batch along axis 0."""
        raise NotImplementedError(f"{type(self).__qualname__} must define predict(self, inputs)")

    def save(self, path: Path) -> None:
        """Write the model's state into `path`, the version's artifacts folder (empty when called)."""
