"""A real server on a free port, with the demo models, for every protocol test."""

import contextlib
import json
import logging
import signal
import subprocess
import textwrap
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn

import pallet
from pallet.demo import train_demo_models
from pallet.net import free_port
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store

MODELS = ["digits@production", "iris@production", "digits-onnx@production"]


class RunningServer:
    def __init__(self, app):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        plane = getattr(getattr(app, "state", None), "plane", None)  # a pallet app: its gRPC address, if any
        grpc_port = plane.config.grpc_port if plane is not None else None
        self.grpc = f"127.0.0.1:{grpc_port}" if grpc_port is not None else None
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def access_log_lines(caplog):
    """The access log's lines (as dicts) written inside the block; the list fills when the block ends,
    so a server stopped inside it has written every call's line. The log does not propagate: it is
    read on its own logger."""
    logger, lines = logging.getLogger("pallet.access"), []
    logger.addHandler(caplog.handler)
    try:
        yield lines
    finally:
        logger.removeHandler(caplog.handler)
    lines.extend(json.loads(r.getMessage()) for r in caplog.records if r.name == "pallet.access")


def wait_for(condition, seconds: float = 60, what: str = "the condition"):
    """The first truthy value `condition()` returns, polled every 0.1 s; fails the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[str, str]:
    """Signal a server process and collect what it wrote (killed if it does not end in 30 s)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


SLOW = textwrap.dedent('''
    import time

    class Slow:
        """Doubles its input after a pause; fails on negative numbers."""
        batchable = True
        pause = 0.3

        @classmethod
        def load(cls, path):
            return cls()

        def predict(self, inputs):
            time.sleep(self.pause)
            x = inputs["x"]
            if (x < 0).any():
                raise ValueError("negative input")
            return {"y": x * 2}
''')


def store_of_classes(tmp_path_factory, module: str, code: str, *names: tuple[str, str]) -> Store:
    """A store holding custom Python models: `code` becomes module `module` in a folder of its own,
    and each (class, model name) in `names` is saved from it with a sample of ones."""
    import importlib
    import sys

    folder = tmp_path_factory.mktemp(f"{module}-code")
    (folder / f"{module}.py").write_text(code)
    sys.path.insert(0, str(folder))
    try:
        loaded = importlib.import_module(module)
        store = Store(tmp_path_factory.mktemp(module) / "home")
        for cls, name in names:
            pallet.save(getattr(loaded, cls), name, sample={"x": np.ones((1, 2))}, store=store)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(module, None)
    return store


@pytest.fixture(scope="session")
def slow_store(tmp_path_factory):
    return store_of_classes(tmp_path_factory, "slowmodel", SLOW, ("Slow", "slow"))


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("serve") / "home")
    train_demo_models(store, torch_models=())
    return store


@pytest.fixture(scope="session")
def server(demo_store):
    with RunningServer(create_app(ServeConfig(models=MODELS, max_rows=500), demo_store)) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture
def start_server(demo_store):
    """Start a server with its own config for one test."""
    running = []

    def start(**config):
        instance = RunningServer(create_app(ServeConfig(**{"models": MODELS, **config}), demo_store))
        running.append(instance.__enter__())
        return instance

    yield start
    for instance in running:
        instance.__exit__(None, None, None)
