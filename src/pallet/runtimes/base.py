"""The contract every runtime implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from pallet.runtimes.source import CodeScope


class Runtime(ABC):
    name: ClassVar[str]          # written in the manifest: which runtime loads the version
    framework: ClassVar[str]     # what made the model, for people
    packages: ClassVar[tuple[str, ...]] = ("numpy",)  # distributions whose versions the manifest pins
    # Files `load` checks against the manifest's sha256 itself, on the bytes it reads (a pickle:
    # nothing may swap it between a check and the unpickling); the store need not hash them first.
    reads_verified: ClassVar[tuple[str, ...]] = ()
    # Whether `load` imports Python code the version holds (`code/`): then `code_paths` may add helpers there.
    imports_code: ClassVar[bool] = False

    # Names and dtypes the model itself declares; None / {} means "take them from the sample".
    input_names: list[str] | None = None
    input_dtypes: dict[str, str] = {}
    input_shapes: dict[str, tuple[int, ...]] = {}   # -1 for a free axis
    # What the columns of an output mean, e.g. {"probabilities": [0, 1, ..., 9]}.
    output_labels: dict[str, list] = {}
    # What the columns of a one-input model mean, when the model knows (scikit-learn's feature_names_in_).
    feature_names: list[str] = []
    # Whether rows are independent, so requests may share one predict call (adaptive batching).
    batchable: bool = True
    # The code scopes loading imported (the version's `code/`, a pipeline's steps'): `close` releases them.
    code_scopes: tuple[CodeScope, ...] = ()

    @classmethod
    @abstractmethod
    def accepts(cls, model: Any) -> bool:
        """Whether this runtime can save `model`."""

    @classmethod
    @abstractmethod
    def save(cls, model: Any, folder: Path) -> dict[str, Any]:
        """Write `model` into `folder`; return the options `load` needs back."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, options: dict[str, Any]) -> Runtime:
        """A ready runtime for the model in `folder` (its files already verified)."""

    @abstractmethod
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for a batch of validated inputs, batch along axis 0."""

    def close(self) -> None:
        """Give back what loading took from the process (the modules of the version's code); the
        runtime is not used after. A runtime holding more overrides this and calls it too."""
        for scope in self.code_scopes:
            scope.close()
