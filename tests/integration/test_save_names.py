"""pallet.save(..., classes=, input_names=): names people read, kept in the signature; answers keep their values."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

import pallet
from pallet.errors import InvalidInput
from pallet.model import Model
from pallet.store import Store
from pallet.ui.describe import describe

IRIS_INPUTS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def iris():
    data = load_iris()
    return data.data, data.target, LogisticRegression(max_iter=1000).fit(data.data, data.target)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "home")


def test_names_are_kept_in_the_signature_and_survive_loading(store, iris):
    x, _, model = iris
    ref = pallet.save(model, "iris", sample=x[:5], input_names=IRIS_INPUTS, classes=IRIS_CLASSES, store=store)
    loaded = pallet.load(ref, store=store)
    assert loaded.signature.inputs[0].labels == IRIS_INPUTS
    assert loaded.signature.classes == tuple(IRIS_CLASSES)
    # The answers keep the model's class values: only pages and `models show` use the names.
    answer = loaded.predict(x[:1])
    assert answer["label"].tolist() == [0]
    assert loaded.signature.outputs[1].labels == [0, 1, 2]
    # What the page is told: each class value's name, for the label and for the probability bars.
    page = describe(Model(store.resolve(ref)), ["1"])
    assert [i["labels"] for i in page["inputs"]] == [IRIS_INPUTS]
    assert {o["name"]: o["names"] for o in page["outputs"]} == {
        "label": {"0": "setosa", "1": "versicolor", "2": "virginica"},
        "probabilities": {"0": "setosa", "1": "versicolor", "2": "virginica"}}


def test_class_names_follow_the_order_of_the_models_class_values(store):
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    model = LogisticRegression().fit(x, [3, 3, 5, 5, 7, 7])
    ref = pallet.save(model, "odd", sample=x[:2], classes=["three", "five", "seven"], store=store)
    page = describe(Model(store.resolve(ref)), ["1"])
    assert page["outputs"][0]["names"] == {"3": "three", "5": "five", "7": "seven"}


def test_models_that_know_their_names_use_them(store, iris):
    x, y, _ = iris
    frame = pd.DataFrame(x, columns=IRIS_INPUTS)
    species = np.array(IRIS_CLASSES)[y]
    model = LogisticRegression(max_iter=1000).fit(frame, species)
    # Saved with a plain array, the estimator's feature_names_in_ name the columns.
    ref = pallet.save(model, "iris-named", sample=x[:5], store=store)
    signature = pallet.load(ref, store=store).signature
    assert signature.inputs[0].labels == IRIS_INPUTS
    assert signature.outputs[1].labels == IRIS_CLASSES and signature.classes is None
    # Saved with the DataFrame, each column is an input of its own name.
    ref = pallet.save(model, "iris-columns", sample=frame[:5], store=store)
    assert pallet.load(ref, store=store).signature.input_names == IRIS_INPUTS


@pytest.mark.parametrize("keywords, message", [
    ({"input_names": IRIS_INPUTS[:3]}, "input_names has 3 names but the sample has 4 columns"),
    ({"classes": ["setosa", "versicolor"]}, "classes has 2 names but the model has 3 classes"),
    ({"classes": ["a", "b", "a"]}, "classes must be distinct; repeated: a"),
    ({"input_names": "sepal_length"}, "input_names must be a list of names"),
    ({"input_names": ["a", "", "c", "d"]}, "input_names must be non-empty strings"),
])
def test_names_that_do_not_fit_the_model_are_refused_and_nothing_is_stored(store, iris, keywords, message):
    x, _, model = iris
    with pytest.raises(InvalidInput, match=message):
        pallet.save(model, "iris", sample=x[:5], store=store, **keywords)
    assert store.list() == []


def test_classes_for_a_model_without_classes_are_refused(store):
    x = np.arange(10.0).reshape(5, 2)
    model = LinearRegression().fit(x, x.sum(axis=1))
    with pytest.raises(InvalidInput, match=r"this model's outputs \(prediction float64\[-1\]\) hold no classes"):
        pallet.save(model, "sum", sample=x, classes=["low", "high"], store=store)


def test_input_names_for_a_model_of_named_inputs_are_refused(store, iris):
    x, y, _ = iris
    frame = pd.DataFrame(x, columns=IRIS_INPUTS)
    model = LogisticRegression(max_iter=1000).fit(frame, y)
    with pytest.raises(InvalidInput, match="this model takes 4 inputs .* already named"):
        pallet.save(model, "iris", sample=frame[:5], input_names=["a", "b", "c", "d"], store=store)


def test_an_export_keeps_the_names_its_parent_was_saved_with(store, iris):
    from pallet.export import export

    x, _, model = iris
    ref = pallet.save(model, "iris", sample=x[:5], input_names=IRIS_INPUTS, classes=IRIS_CLASSES,
                      tags={"dataset": "sklearn:iris"}, store=store)
    child, _ = export(store, str(ref), "onnx")
    signature = store.resolve(child).manifest.signature
    assert signature.inputs[0].labels == IRIS_INPUTS
    assert signature.classes == tuple(IRIS_CLASSES)


def test_models_show_names_each_class_value_and_takes_classes_as_an_array(home, iris):
    from typer.testing import CliRunner

    from pallet.cli import app

    x, _, model = iris
    pallet.save(model, "iris", sample=x[:5], input_names=IRIS_INPUTS, classes=np.array(IRIS_CLASSES))
    shown = CliRunner().invoke(app, ["models", "show", "iris"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "classes    setosa, versicolor, virginica" in shown.output
    assert "labels: 0 setosa, 1 versicolor, 2 virginica" in shown.output
    assert "labels: sepal_length, sepal_width, petal_length, petal_width" in shown.output
