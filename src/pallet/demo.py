"""The demo models: real models trained on data sets that ship with scikit-learn."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pallet.store import ModelRef, Store

DEMO_MODELS = ("digits", "iris", "digits-onnx")


def train_demo_models(store: Store, alias: str = "production",
                      progress: Callable[[str], None] = lambda _: None) -> list[ModelRef]:
    """Train and store `digits`, `iris` and `digits-onnx`; point `alias` at the new versions."""
    from sklearn.datasets import load_digits, load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    refs = []

    progress("training digits (logistic regression on 8x8 images, 64 features)")
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    digits = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    accuracy = float(digits.score(x_test, y_test))
    refs.append(store.save(digits, "digits", sample=x_test[:5], metrics={"accuracy": accuracy},
                           description="Handwritten digit classifier (scikit-learn digits, 8x8 pixels 0..16)",
                           aliases=[alias]))

    progress("converting digits to ONNX with skl2onnx")
    onnx_model = _to_onnx(digits, x.shape[1], len(digits.classes_))
    onnx_accuracy = _onnx_accuracy(onnx_model, x_test, y_test)
    refs.append(store.save(onnx_model, "digits-onnx", sample=x_test[:5].astype(np.float32),
                           metrics={"accuracy": onnx_accuracy},
                           description="The digits classifier converted to ONNX", aliases=[alias]))

    progress("training iris (logistic regression, 4 features)")
    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    iris = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    refs.append(store.save(iris, "iris", sample=x_test[:5], metrics={"accuracy": float(iris.score(x_test, y_test))},
                           description="Iris species from sepal and petal length and width (cm)",
                           aliases=[alias]))
    return refs


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
