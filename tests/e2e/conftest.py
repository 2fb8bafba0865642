"""Headless Debian Chromium, driven by Playwright, against a real pallet server on a free port.

Screenshots go to a scratch folder; `make screenshots` sets PALLET_SCREENSHOTS=docs/screenshots to
refresh the documentation's pictures."""

import os
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import pallet
from pallet.demo import train_demo_models
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store
from tests.serve.conftest import RunningServer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
_screenshots: list[Path] = []
MODELS = ["digits@production", "iris@production", "digits-onnx@production", "shout"]

TEXT_MODEL = '''
import numpy as np

class Shout:
    """Text in, text out: the string inputs of the prototype page."""

    @classmethod
    def load(cls, path):
        return cls()

    def predict(self, inputs):
        return {"reply": np.array([t.upper() + "!" for t in inputs["text"]], dtype=object)}
'''


@pytest.fixture(scope="session")
def ui_store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("ui") / "home")
    train_demo_models(store, torch_models=())
    code = tmp_path_factory.mktemp("code")
    (code / "shout_model.py").write_text(textwrap.dedent(TEXT_MODEL))
    sys.path.insert(0, str(code))
    try:
        import shout_model
        pallet.save(shout_model.Shout, "shout", sample={"text": np.array(["hello", "pallet"], dtype=object)},
                   description="Answers in capitals", store=store)
    finally:
        sys.path.remove(str(code))
    return store


@pytest.fixture(scope="session")
def ui_server(ui_store):
    with RunningServer(create_app(ServeConfig(models=MODELS, access_log=False), ui_store)) as running:
        yield running


@pytest.fixture
def start_ui_server(ui_store):
    running = []

    def start(**config):
        instance = RunningServer(create_app(ServeConfig(**{"models": MODELS, "access_log": False, **config}), ui_store))
        running.append(instance.__enter__())
        return instance

    yield start
    for instance in running:
        instance.__exit__(None, None, None)


# Per module: Playwright's sync API keeps an event loop running on the main thread while it is
# open, and later tests call asyncio.run.
@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: 'make test' installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(15_000)
    yield page
    context.close()
    assert not errors, f"the page raised JavaScript errors: {errors}"


@pytest.fixture(scope="session", autouse=True)
def screenshot_folder(tmp_path_factory) -> Path:
    """Where screenshot() writes: PALLET_SCREENSHOTS when set, else a scratch folder of this run."""
    chosen = os.environ.get("PALLET_SCREENSHOTS")
    folder = Path(chosen).resolve() if chosen else tmp_path_factory.mktemp("screenshots")
    _screenshots[:] = [folder]
    return folder


def screenshot(page, name: str) -> Path:
    folder = _screenshots[0]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
