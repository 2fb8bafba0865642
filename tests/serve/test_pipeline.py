"""Pipelines from pallet.yaml: stored with their steps pinned, served as one model on every protocol,
timed per step, and rolled out like a model."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_digits

import pallet
from pallet.demo import train_demo_models
from pallet.errors import IntegrityError, InvalidInput, PalletError
from pallet.pipeline import Pipeline, load_pipelines
from pallet.rollout import Rollouts
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store
from tests.serve.conftest import RunningServer
from tests.serve.test_rollouts import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("pipeline") / "home")
    train_demo_models(store, torch_models=())
    done = subprocess.run([str(Path(sys.executable).parent / "pallet"), "pipeline", "save", str(EXAMPLE / "pallet.yaml")],
                          env={**os.environ, "PALLET_HOME": str(store.home), "PALLET_DB_URL": store.db_url},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stored digits-app:1: steps:to_digits_scale -> digits:1 -> steps:name_the_digit"
    return store


@pytest.fixture(scope="module")
def server(store):
    config = ServeConfig(models=["digits-app:1", "digits@production"], rollout_poll=0.2, access_log=False)
    with RunningServer(create_app(config, store)) as running:
        yield running


def expected(store, pixels: np.ndarray) -> list[str]:
    digits = pallet.load("digits:1", store=store)
    return [NAMES[i] for i in digits.predict(np.clip(np.rint(pixels * 16 / 255), 0, 16))["label"]]


def scans(n: int = 6) -> np.ndarray:
    x, _ = load_digits(return_X_y=True)
    return np.rint(x[:n] * 255 / 16)   # what the scanner sends: 0..255


def test_a_pipeline_version_pins_its_models_and_code(store, tmp_path):
    version = store.resolve("digits-app:1")
    assert version.manifest.runtime == "pipeline"
    assert [s.get("model") or s.get("function") for s in version.manifest.runtime_options["steps"]] == \
        ["step1_steps:to_digits_scale", "digits:1", "step3_steps:name_the_digit"]
    assert {"steps/2-digits/model.joblib", "steps/2-digits/manifest.json", "code/step1_steps.py",
            "code/step3_steps.py"} <= set(version.manifest.files)
    assert "scikit-learn" in version.manifest.packages
    # A newer digits in the store changes nothing for the stored pipeline.
    x, y = load_digits(return_X_y=True)
    from sklearn.tree import DecisionTreeClassifier
    pallet.save(DecisionTreeClassifier(max_depth=2).fit(x, y), "digits", sample=x[:5], aliases=["production"], store=store)
    names = pallet.load("digits-app:1", store=store).predict(scans())["name"].tolist()
    assert names == expected(store, scans())


def test_the_pipeline_answers_on_every_protocol(server, store):
    pixels = scans()
    want = expected(store, pixels)
    with httpx.Client(base_url=server.url) as client:
        v2 = client.post("/v2/models/digits-app/infer", json={"inputs": [
            {"name": "input", "shape": [6, 64], "datatype": "FP64", "data": pixels.ravel().tolist()}]})
        v1 = client.post("/v1/models/digits-app:predict", json={"instances": pixels.tolist()})
        sm = client.post("/invocations", content="\n".join(",".join(str(v) for v in row) for row in pixels),
                         headers={"Content-Type": "text/csv", "Accept": "text/csv",
                                  "X-Amzn-SageMaker-Target-Model": "digits-app"})
        metrics = client.get("/metrics").text
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert outputs["name"]["datatype"] == "BYTES" and outputs["name"]["data"] == want
    assert [p["name"] for p in v1.json()["predictions"]] == want
    assert sm.status_code == 200 and [line.split(",")[1] for line in sm.text.splitlines()] == want
    for step in ("1:to_digits_scale", "2:digits:1", "3:name_the_digit"):
        line = f'pallet_pipeline_step_seconds_count{{model="digits-app",step="{step}",version="1"}}'
        assert any(l.startswith(line) and float(l.split()[-1]) >= 3 for l in metrics.splitlines()), step


def test_a_pipeline_rolls_out_like_a_model(server, store):
    ref = pallet.save(Pipeline.of([_scale(), "digits:1"], store=store), "digits-app",
                     sample=store.resolve("digits:1").sample(), store=store)
    Rollouts(store, actor="test").promote("digits-app", str(ref), reason="no names any more")
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0] * 64}]}
    with httpx.Client(base_url=server.url) as client:
        answer = wait_for(lambda: (r := client.post("/v2/models/digits-app/infer", json=body)).json()
                          .get("model_version") == "2" and r, what="the pipeline's promotion")
    assert answer.headers["x-model-version"] == "2"
    assert {o["name"] for o in answer.json()["outputs"]} == {"label", "probabilities"}


def _scale():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import steps
    finally:
        sys.path.remove(str(EXAMPLE))
    return steps.to_digits_scale


@pytest.mark.parametrize("yaml_text, message", [
    ("models: [digits]", "declares no pipelines"),
    ("pipelines: {app: {}}", "needs 'steps'"),
    ("pipelines: {app: {steps: [{model: digits:99}]}}", "no version 99"),
    ("pipelines: {app: {steps: [{function: nowhere:f}]}}", "cannot import 'nowhere:f'"),
    ("pipelines: {app: {steps: [{function: no_colon}]}}", "must be written module:function"),
    ("pipelines: {app: {steps: [{model: digits, function: a:b}]}}", "write '- model: REF'"),
    ("pipelines: {app: {steps: [{model: digits}], retries: 3}}", "unknown key(s) retries"),
    ("pipelines: {app: {steps: [{modle: digits}]}}", "key 'modle' is not supported (only model, function)"),
    ("pipelines: {app: {steps: [{model: digits}], batchable: maybe}}", "pipeline 'app': 'batchable' must be true or false"),
    ("pipelines: {app: {steps: [digits]}}", "must be '- model: REF' or '- function: module:name'"),
    ("pipelines: [", "not valid YAML"),
    ("pipelines: {app: {steps: [{function: broken_module:f}]}}", "cannot import 'broken_module:f': ZeroDivisionError"),
])
def test_declaration_mistakes_are_named(store, tmp_path, yaml_text, message):
    path = tmp_path / "pallet.yaml"
    path.write_text(yaml_text)
    (tmp_path / "broken_module.py").write_text("1 / 0\n")
    with pytest.raises(PalletError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_pipelines(path, store)


def test_steps_from_modules_of_the_same_name_keep_apart(store, tmp_path):
    bodies = {"pre": "def run(inputs):\n    return {'input': inputs['input'] * 1.0}\n",
              "post": "def run(outputs):\n    return {'digit': outputs['label']}\n"}
    for package, body in bodies.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "steps.py").write_text(body)
    (tmp_path / "pallet.yaml").write_text("pipelines:\n  twins:\n    steps:\n      - function: pre.steps:run\n"
                                          "      - model: digits:1\n      - function: post.steps:run\n")
    path_before = list(sys.path)
    (declared,) = load_pipelines(tmp_path / "pallet.yaml", store)
    assert sys.path == path_before and not {"pre", "pre.steps", "post", "post.steps"} & set(sys.modules)
    pallet.save(declared.pipeline, "twins", sample=declared.pipeline.sample(), store=store)
    (tmp_path / "pre" / "steps.py").unlink()  # the stored version imports its own copies
    x, _ = load_digits(return_X_y=True)
    outputs = pallet.load("twins", store=store).predict(x[:3])
    assert set(outputs) == {"digit"}
    assert outputs["digit"].tolist() == pallet.load("digits:1", store=store).predict(x[:3])["label"].tolist()


def test_a_declared_pipeline_releases_the_modules_it_imported(store, tmp_path):
    (tmp_path / "scale.py").write_text("import helper\n\n\ndef run(inputs):\n"
                                       "    return {'input': helper.scaled(inputs['input'])}\n")
    (tmp_path / "helper.py").write_text("def scaled(x):\n    return x * 1.0\n")
    (tmp_path / "pallet.yaml").write_text("pipelines:\n  scaled:\n    steps:\n"
                                          "      - function: scale:run\n      - model: digits:1\n")

    def imported() -> list[str]:
        return sorted(n for n in sys.modules if n.startswith("pallet_models.") and n.endswith((".scale", ".helper")))

    before = imported()
    for _ in range(3):  # the pipeline a load replaces gives its modules back
        (declared,) = load_pipelines(tmp_path / "pallet.yaml", store)
        assert len(imported()) == len(before) + 2
    x, _ = load_digits(return_X_y=True)
    with declared.pipeline as pipeline:
        assert pipeline.steps[0]({"input": x[:2]})["input"].shape == (2, 64)
    assert imported() == before
    assert pipeline.steps[0]({"input": x[:2]})["input"].shape == (2, 64)  # what it holds keeps working

    (tmp_path / "pallet.yaml").write_text("pipelines:\n  scaled:\n    steps: [{function: scale:run}]\n"
                                          "  broken:\n    steps: [{function: scale:missing}]\n")
    with pytest.raises(PalletError, match="cannot import 'scale:missing'"):
        load_pipelines(tmp_path / "pallet.yaml", store)
    assert imported() == before  # a declaration that fails leaves none of the file's modules imported


def test_steps_that_do_not_fit_are_refused_when_saving(store, tmp_path):
    (tmp_path / "bad_steps.py").write_text(textwrap.dedent('''
        def two_tensors(inputs):
            return {"a": inputs["input"], "b": inputs["input"]}
    '''))
    (tmp_path / "pallet.yaml").write_text("pipelines:\n  broken:\n    steps:\n"
                                          "      - function: bad_steps:two_tensors\n      - model: digits:1\n")
    (declared,) = load_pipelines(tmp_path / "pallet.yaml", store)
    with pytest.raises(InvalidInput, match=r"pipeline step 2 \(digits:1\) takes input; the step before gave a, b"):
        pallet.save(declared.pipeline, "broken", sample=declared.pipeline.sample(), store=store)


def test_a_tampered_step_is_refused_at_load(store, tmp_path):
    folder = store.resolve("digits-app:1").path / "steps" / "2-digits"
    target = folder / "model.joblib"
    original = target.read_bytes()
    target.chmod(0o644)
    try:
        target.write_bytes(original + b"x")
        with pytest.raises(IntegrityError, match="steps/2-digits/model.joblib"):
            pallet.load("digits-app:1", store=store)
    finally:
        target.write_bytes(original)


def test_functions_must_live_in_a_module_file():
    with pytest.raises(PalletError, match="at the top of a module file"):
        Pipeline([lambda inputs: inputs])
