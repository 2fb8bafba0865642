import importlib

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

import pallet
from pallet.demo import _to_onnx
from pallet.errors import InvalidInput, NoRuntime, PredictionError
from pallet.runtimes import get_runtime, runtime_for

USER_MODULE = '''
import json
from pathlib import Path

import numpy as np


class Scaler:
    """Multiplies its input by a factor kept in artifacts/factor.json."""

    def __init__(self, factor=1.0):
        self.factor = factor

    def save(self, path):
        (Path(path) / "factor.json").write_text(json.dumps({"factor": self.factor}))

    @classmethod
    def load(cls, path):
        return cls(json.loads((Path(path) / "factor.json").read_text())["factor"])

    def predict(self, inputs):
        return {"scaled": inputs["x"] * self.factor, "total": (inputs["x"] * self.factor).sum(axis=1)}


class Echo:
    """An instance-method load and a bare array output."""

    def load(self, path):
        self.prefix = (Path(path) / "prefix.txt").read_text()

    def predict(self, inputs):
        return np.array([self.prefix + t for t in inputs["text"]])


class Broken:
    @classmethod
    def load(cls, path):
        return cls()

    def predict(self, inputs):
        if (inputs["x"] < 0).any():
            raise ValueError("negative values are not supported")
        return inputs["x"]
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / "mymodels.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    module = importlib.import_module("mymodels")
    yield module, folder / "mymodels.py"
    import sys
    sys.modules.pop("mymodels", None)


@pytest.mark.filterwarnings("ignore:The `probability` parameter was deprecated:FutureWarning")
@pytest.mark.parametrize("make", ["logistic", "forest", "svc", "pipeline"])
def test_sklearn_labels_match_predict(store, digits, make):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x, y = digits
    estimator = {"logistic": lambda: LogisticRegression(max_iter=300),
                 "forest": lambda: RandomForestClassifier(20, random_state=0),
                 "svc": lambda: SVC(probability=True, random_state=0),  # predict is not argmax(proba) here
                 "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))}[make]()
    estimator.fit(x[:400], y[:400])
    pallet.save(estimator, "clf", sample=x[:3], store=store)
    out = pallet.load("clf", store=store).predict(x[400:700])
    assert out["label"].tolist() == estimator.predict(x[400:700]).tolist()
    assert out["label"].dtype == estimator.predict(x[:1]).dtype


def test_sklearn_regressor_gives_prediction(store):
    x = np.random.default_rng(0).normal(size=(50, 3))
    pallet.save(LinearRegression().fit(x, x @ [1.0, 2.0, 3.0]), "reg", sample=x[:4], store=store)
    model = pallet.load("reg", store=store)
    assert [s.name for s in model.signature.outputs] == ["prediction"]
    assert np.allclose(model.predict([[1, 1, 1]])["prediction"], [6.0])


def test_sklearn_named_columns_become_the_feature_matrix(store):
    x = np.random.default_rng(1).normal(size=(40, 2))
    pallet.save(LinearRegression().fit(x, x[:, 0] - x[:, 1]), "cols", sample={"a": x[:3, 0], "b": x[:3, 1]}, store=store)
    model = pallet.load("cols", store=store)
    assert model.signature.input_names == ["a", "b"]
    assert np.allclose(model.predict({"a": [3.0], "b": [1.0]})["prediction"], [2.0])


@pytest.mark.parametrize("form", ["path", "bytes", "proto"])
def test_onnx_model_from_file_bytes_or_proto(store, digits_model, digits, tmp_path, form):
    x, _ = digits
    proto = _to_onnx(digits_model, 64, 10)
    if form == "path":
        path = tmp_path / "digits.onnx"
        path.write_bytes(proto.SerializeToString())
        source = str(path)
    else:
        source = proto.SerializeToString() if form == "bytes" else proto
    ref = pallet.save(source, "digits-onnx", sample=x[:5], store=store)
    model = pallet.load(ref, store=store)
    assert model.version.manifest.framework == "onnx"
    assert model.signature.inputs[0].dtype == "float32"  # the graph's type, not the sample's float64
    out = model.predict(x[:20])  # float64 rows are converted to the declared float32
    assert (out["label"] == digits_model.predict(x[:20])).mean() >= 0.95
    assert out["probabilities"].shape == (20, 10)


def test_onnx_graph_shapes_are_the_signature(store, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    # y = sum(x) over a free sequence axis, for a batch of exactly one
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)], "sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "sequence"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    pallet.save(model, "summer", sample=np.ones((1, 3), np.float32), store=store)
    loaded = pallet.load("summer", store=store)
    assert loaded.signature.inputs[0].shape == (1, -1)
    assert loaded.predict([[1.0, 2.0, 3.0, 4.0, 5.0]])["y"].tolist() == [15.0]  # any sequence length
    with pytest.raises(InvalidInput, match=r"expected shape \[1, -1\], got \[2, 2\]"):
        loaded.predict([[1.0, 2.0], [3.0, 4.0]])  # a 400, not a failure inside onnxruntime


def test_onnx_thread_counts_are_configurable(store, digits_model, digits):
    pallet.save(_to_onnx(digits_model, 64, 10), "digits-onnx", sample=digits[0][:5], store=store)
    model = pallet.load("digits-onnx", store=store, intra_op_threads=1, inter_op_threads=1)
    options = model.runtime.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)


def test_unreadable_onnx_is_refused(store, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(NoRuntime, match="onnxruntime cannot load this model"):
        pallet.save(str(bad), "bad", sample=[[1.0]], store=store)
    with pytest.raises(NoRuntime, match="cannot read ONNX file"):
        pallet.save(str(tmp_path / "missing.onnx"), "bad", sample=[[1.0]], store=store)


def test_python_class_state_and_code_are_pinned(store, user_module):
    module, source = user_module
    ref = pallet.save(module.Scaler(3.0), "scaler", sample={"x": np.ones((2, 2))}, store=store)
    source.write_text("raise ImportError('the user module changed')")  # the stored copy is used
    model = pallet.load(ref, store=store)
    out = model.predict({"x": [[1.0, 2.0]]})
    assert out["scaled"].tolist() == [[3.0, 6.0]]
    assert out["total"].tolist() == [9.0]
    files = model.version.manifest.files
    assert {"code/mymodels.py", "artifacts/factor.json"} <= set(files)
    assert model.version.manifest.runtime_options == {"module": "mymodels", "class": "Scaler"}


def test_python_class_with_instance_load_and_copied_artifacts(store, user_module, tmp_path):
    module, _ = user_module
    artifacts = tmp_path / "echo"
    artifacts.mkdir()
    (artifacts / "prefix.txt").write_text(">> ")
    ref = pallet.save(module.Echo, "echo", sample={"text": np.array(["a", "b"])}, artifacts=artifacts,
                     requirements=["numpy", "requests==2.0.0"], store=store)
    model = pallet.load(ref, store=store)
    assert model.predict({"text": ["hi"]})["output"].tolist() == [">> hi"]
    assert model.signature.inputs[0].dtype == "str"
    assert model.version.manifest.packages["requests"] == "2.0.0"


def test_errors_inside_user_code_become_prediction_errors(store, user_module):
    module, _ = user_module
    pallet.save(module.Broken, "broken", sample={"x": np.ones((1, 2))}, store=store)
    with pytest.raises(PredictionError, match="model broken:1 failed to predict: ValueError: negative values"):
        pallet.load("broken", store=store).predict({"x": [[-1.0, 0.0]]})


def test_classes_in_main_are_refused(store):
    Local = type("Local", (), {"load": classmethod(lambda cls, p: cls()), "predict": lambda self, i: i,
                                "__module__": "__main__"})
    with pytest.raises(NoRuntime, match="defined in __main__; move it into a module"):
        pallet.save(Local(), "local", sample={"x": np.ones((1, 1))}, store=store)


def test_runtime_selection_is_by_manifest_name():
    assert get_runtime("onnx").framework == "onnx"
    assert runtime_for(b"\x08\x07").name == "onnx"
    assert runtime_for(LinearRegression()).name == "sklearn"
