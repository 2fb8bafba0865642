"""pallet: take a trained model to production from one model store and one CLI.

    ref = pallet.save(model, "digits", sample=X[:5], metrics={"accuracy": 0.97})
    model = pallet.load("digits@production")
    model.predict(X[:3])  # {"label": ..., "probabilities": ...}
"""

from __future__ import annotations

from typing import Any

from pallet.errors import PalletError
from pallet.model import Model
from pallet import pipeline_runtime  # noqa: F401  (registers the pipeline runtime)
from pallet.python_model import PythonModel
from pallet.saving import save_model
from pallet.signature import Signature, TensorSpec
from pallet.store import ModelRef, Store, default_store
from pallet.store.refs import check_alias

__version__ = "0.1.0"


def save(model: Any, name: str, *, sample: Any, metrics: dict[str, float] | None = None,
         tags: dict[str, str] | None = None, requirements: list[str] | None = None,
         artifacts: str | None = None, description: str = "", aliases: list[str] = (),
         code_paths: list[str] = (), classes: list[str] | None = None, input_names: list[str] | None = None,
         store: Store | None = None) -> ModelRef:
    """Store a new version of `model` under `name` and return its reference, e.g. `digits:3`.

    `model` is a scikit-learn estimator, an ONNX model (file path, bytes or ModelProto), or
    a `pallet.PythonModel` (or any class with `load(path)` and `predict(inputs)`). `sample` is
    a small batch of real inputs; the signature is inferred from it and the model's outputs.
    `requirements` are PEP 508 requirements (`numpy>=1.24`), checked against what is installed;
    `code_paths` are helper modules or packages the model's code imports, stored with it.
    `classes` and `input_names` name the model's classes and the columns of its input where the
    framework does not know them; pages and `pallet models show` show them, answers keep their values.
    `aliases` are pointed at the new version; moving `production` is a promotion: servers that serve
    the name switch to the new version.
    """
    from pallet.rollout import Rollouts  # the aliases move as `pallet models tag` moves them

    store = store or default_store()
    for alias in aliases:
        check_alias(alias)  # a mistake is said before anything is stored
    ref = save_model(store, model, name, sample=sample, metrics=metrics, tags=tags, requirements=requirements,
                     artifacts=artifacts, description=description, code_paths=code_paths, classes=classes,
                     input_names=input_names)
    rollouts = Rollouts(store)
    for alias in dict.fromkeys(aliases):
        rollouts.tag(ref, alias)  # `production` moves by promotion, so running servers switch to it
    return ref


def load(ref: str | ModelRef, *, store: Store | None = None, **runtime_options: Any) -> Model:
    """The model a reference names (`digits`, `digits:3`, `digits@production`), ready to predict."""
    return Model((store or default_store()).resolve(ref), **runtime_options)


__all__ = ["Model", "ModelRef", "PalletError", "PythonModel", "Signature", "Store", "TensorSpec", "load", "save"]
