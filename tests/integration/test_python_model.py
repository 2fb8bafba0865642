"""pallet.PythonModel: the explicit contract, helper code carried in the version (code_paths) and
imported from there without touching sys.path, and PEP 508 requirements."""

import importlib
import os
import subprocess
import sys
import textwrap
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import pallet
from pallet.errors import NoRuntime, PalletError
from pallet.pipeline import load_pipelines
from pallet.store import Store
from pallet.store.manifest import package_versions

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_model"

MODEL = '''
from pathlib import Path

import numpy as np

import pallet
from helper import offset
from shapes.scale import factor


class Affine(pallet.PythonModel):
    """y = x * factor() * self.weight + offset(): its state in artifacts, its helpers in code_paths."""

    requirements = ["numpy>=1.0"]

    def __init__(self, weight=1.0):
        self.weight = weight

    def save(self, path):
        (Path(path) / "weight.txt").write_text(str(self.weight))

    def load(self, path):
        self.weight = float((Path(path) / "weight.txt").read_text())

    def predict(self, inputs):
        import helper  # imported when predicting, too: still the version's own copy

        return {"y": inputs["x"] * factor() * self.weight + helper.offset()}


class Stateless(pallet.PythonModel):
    batchable = False

    def predict(self, inputs):
        return {"y": inputs["x"] + 1}


class ClassLoad(pallet.PythonModel):
    @classmethod
    def load(cls, path):
        return cls()

    def predict(self, inputs):
        return {"y": inputs["x"]}


class NeedsArguments(pallet.PythonModel):
    def __init__(self, size):
        self.size = size

    def predict(self, inputs):
        return {"y": inputs["x"]}


class DuckTyped:
    """The older contract: no base class, a classmethod load, opting into batching."""

    batchable = True

    @classmethod
    def load(cls, path):
        return cls()

    def predict(self, inputs):
        return inputs["x"] * 2
'''

HELPER = "def offset():\n    return 10.0\n"
SCALE = "from . import numbers\nfrom shapes.numbers import TWO\n\n\ndef factor():\n    return numbers.ONE * TWO\n"


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "home")


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """A user's checkout: models.py, a helper module and a helper package, importable as usual."""
    folder = tmp_path / "checkout"
    (folder / "shapes").mkdir(parents=True)
    (folder / "models.py").write_text(MODEL)
    (folder / "helper.py").write_text(HELPER)
    (folder / "shapes" / "__init__.py").write_text("")
    (folder / "shapes" / "scale.py").write_text(SCALE)
    (folder / "shapes" / "numbers.py").write_text("ONE = 1.0\nTWO = 2.0\n")
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    yield folder, importlib.import_module("models")
    for name in ("models", "helper", "shapes", "shapes.scale", "shapes.numbers"):
        sys.modules.pop(name, None)


def forget_user_modules() -> None:
    for name in ("models", "helper", "shapes", "shapes.scale", "shapes.numbers"):
        sys.modules.pop(name, None)


def test_a_python_model_carries_its_helpers_and_state(store, user_code):
    folder, models = user_code
    ref = pallet.save(models.Affine(3.0), "affine", sample={"x": np.ones((2, 2))}, store=store,
                      code_paths=[folder / "helper.py", folder / "shapes"])
    # The checkout changes afterwards: the helper module gives another offset, the package is gone.
    (folder / "helper.py").write_text("def offset():\n    return -1000.0\n")
    (folder / "shapes" / "scale.py").unlink()
    forget_user_modules()
    import helper  # the user's changed helper, imported the usual way, does not leak into the version
    assert helper.offset() == -1000.0

    path_before = list(sys.path)
    model = pallet.load(ref, store=store)
    assert model.predict({"x": [[1.0, 2.0]]})["y"].tolist() == [[16.0, 22.0]]  # x * 2 * 3 + 10
    assert sys.path == path_before
    assert sys.modules["helper"] is helper and "shapes" not in sys.modules
    assert model.runtime.batchable is True
    files = set(model.version.manifest.files)
    assert {"code/models.py", "code/helper.py", "code/shapes/__init__.py", "code/shapes/scale.py",
            "code/shapes/numbers.py", "artifacts/weight.txt"} <= files
    assert model.version.manifest.requirements == ["numpy>=1.0"]
    assert model.version.manifest.packages["numpy"] == metadata.version("numpy")


def test_two_versions_with_helpers_of_one_name_keep_their_own(store, user_code):
    folder, models = user_code
    first = pallet.save(models.Affine(1.0), "affine", sample={"x": np.ones((1, 1))}, store=store,
                        code_paths=[folder / "helper.py", folder / "shapes"])
    (folder / "helper.py").write_text("def offset():\n    return 0.5\n")
    second = pallet.save(models.Affine(1.0), "affine", sample={"x": np.ones((1, 1))}, store=store,
                         code_paths=[folder / "helper.py", folder / "shapes"])
    a, b = pallet.load(first, store=store), pallet.load(second, store=store)
    assert a.predict({"x": [[1.0]]})["y"].tolist() == [[12.0]]
    assert b.predict({"x": [[1.0]]})["y"].tolist() == [[2.5]]


def test_without_code_paths_the_helpers_are_not_in_the_version(store, user_code):
    folder, models = user_code
    ref = pallet.save(models.Stateless(), "stateless", sample={"x": np.ones((1, 2))}, store=store)
    version = store.resolve(ref)
    assert [f for f in version.manifest.files if f.startswith("code/")] == ["code/models.py"]
    model = pallet.load(ref, store=store)
    assert model.runtime.batchable is False
    assert model.predict({"x": [[1.0, 2.0]]})["y"].tolist() == [[2.0, 3.0]]


def test_the_contract_is_checked_when_saving(store, user_code):
    _, models = user_code
    with pytest.raises(NoRuntime, match=r"ClassLoad.load must be an instance method, def load\(self, path\)"):
        pallet.save(models.ClassLoad(), "bad", sample={"x": np.ones((1, 1))}, store=store)
    with pytest.raises(NoRuntime, match=r"NeedsArguments\(\) must work with no arguments"):
        pallet.save(models.NeedsArguments(3), "bad", sample={"x": np.ones((1, 1))}, store=store)


def test_duck_typed_classes_keep_working(store, user_code):
    _, models = user_code
    ref = pallet.save(models.DuckTyped, "duck", sample={"x": np.ones((1, 2))}, store=store)
    model = pallet.load(ref, store=store)
    assert model.runtime.batchable is True
    assert model.predict({"x": [[1.0, 2.0]]})["output"].tolist() == [[2.0, 4.0]]


def test_code_paths_are_checked(store, user_code, tmp_path):
    folder, models = user_code
    sample = {"x": np.ones((1, 1))}
    with pytest.raises(PalletError, match="code path .*missing.py does not exist"):
        pallet.save(models.Stateless(), "m", sample=sample, store=store, code_paths=[folder / "missing.py"])
    (tmp_path / "notes.txt").write_text("not code")
    with pytest.raises(PalletError, match="is not a Python module"):
        pallet.save(models.Stateless(), "m", sample=sample, store=store, code_paths=[tmp_path / "notes.txt"])
    with pytest.raises(PalletError, match=r"has the name of a module the version already holds \(models.py\)"):
        pallet.save(models.Stateless(), "m", sample=sample, store=store, code_paths=[folder / "models.py"])
    from sklearn.linear_model import LinearRegression

    regression = LinearRegression().fit(np.ones((3, 1)), np.ones(3))
    with pytest.raises(PalletError, match="code_paths"):
        pallet.save(regression, "m", sample=[[1.0]], store=store, code_paths=[folder / "helper.py"])
    assert store.list() == []


def test_requirements_take_any_pep_508_specifier():
    numpy = metadata.version("numpy")
    major = numpy.split(".")[0]
    pinned = package_versions(["numpy>=1.0", f"numpy=={major}.*", 'numpy; python_version > "3"',
                               'pandas-not-here; python_version < "3"', "requests==2.0.0"])
    assert pinned == {"numpy": numpy, "requests": "2.0.0"}


@pytest.mark.parametrize(("requirement", "message"), [
    ("numpy<1.0", f"requirement 'numpy<1.0' is not met: numpy {metadata.version('numpy')} is installed"),
    ("no-such-package-here>=1", "requirement 'no-such-package-here>=1' is not met: no-such-package-here is not "
                                "installed"),
    ("numpy>>1", "requirement 'numpy>>1' is not a PEP 508 requirement"),
])
def test_unmet_or_unreadable_requirements_are_refused_in_one_line(store, user_code, requirement, message):
    _, models = user_code
    with pytest.raises(PalletError) as raised:
        pallet.save(models.Stateless(), "m", sample={"x": np.ones((1, 1))}, store=store, requirements=[requirement])
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    assert store.list() == []


def test_requirements_are_stored_as_given(store, user_code):
    _, models = user_code
    given = ["numpy>=1.0", 'pandas-not-here; python_version < "3"']
    version = store.resolve(pallet.save(models.Stateless(), "m", sample={"x": np.ones((1, 1))}, store=store,
                                        requirements=given))
    assert version.manifest.requirements == given
    assert "pandas-not-here" not in version.manifest.packages


def test_pipeline_modules_beside_pallet_yaml_import_without_sys_path(store, tmp_path):
    declared = []
    for factor in (2, 3):
        folder = tmp_path / f"project{factor}"
        folder.mkdir()
        (folder / "steps.py").write_text(f"from helper import FACTOR\n\n\ndef scale(inputs):\n"
                                         f"    return {{'x': inputs['x'] * FACTOR}}\n")
        (folder / "helper.py").write_text(f"FACTOR = {factor}\n")
        (folder / "pallet.yaml").write_text(textwrap.dedent("""
            pipelines:
              scaled:
                steps:
                  - function: steps:scale
        """))
        path_before = list(sys.path)
        declared += load_pipelines(folder / "pallet.yaml", store)
        assert sys.path == path_before
    assert "steps" not in sys.modules and "helper" not in sys.modules
    assert [d.pipeline.describe() for d in declared] == ["steps:scale", "steps:scale"]
    assert [d.pipeline.steps[0]({"x": np.ones(1)})["x"].tolist() for d in declared] == [[2.0], [3.0]]


def test_the_custom_model_example_runs(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLE / "train.py")], cwd=tmp_path, capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("PALLET_")},
                               "PALLET_HOME": str(tmp_path / "home"), "PYTHONDONTWRITEBYTECODE": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "stored digits-centroids:1" in done.stdout
    version = Store(tmp_path / "home").resolve("digits-centroids:1")
    assert {"code/centroids.py", "code/features.py", "artifacts/centroids.npy"} <= set(version.manifest.files)


def _scoped_modules() -> set[str]:
    return {name for name in sys.modules if name.startswith("pallet_models.")}


def test_closing_a_model_releases_the_modules_of_its_code(store, user_code):
    from pallet.runtimes.source import _finder

    folder, models = user_code
    ref = pallet.save(models.Affine(3.0), "affine", sample={"x": np.ones((1, 2))}, store=store,
                      code_paths=[folder / "helper.py", folder / "shapes"])
    modules, scopes = _scoped_modules(), set(_finder.scopes)
    for _ in range(5):
        model = pallet.load(ref, store=store)
        assert model.predict({"x": [[1.0, 2.0]]})["y"].tolist() == [[16.0, 22.0]]
        assert _scoped_modules() > modules  # models, helper, shapes, shapes.scale ... while it is loaded
        model.close()
        assert _scoped_modules() == modules and set(_finder.scopes) == scopes


def test_a_server_unloading_and_reloading_models_does_not_keep_their_code(store, user_code):
    from pallet.runtimes.source import _finder
    from pallet.settings import ServeConfig
    from pallet.serve.dataplane import DataPlane

    folder, models = user_code
    pallet.save(models.Affine(3.0), "affine", sample={"x": np.ones((1, 2))}, store=store,
                code_paths=[folder / "helper.py", folder / "shapes"])
    modules, scopes = _scoped_modules(), set(_finder.scopes)
    plane = DataPlane(store, ServeConfig(models=[]))
    for _ in range(4):
        plane.load("affine")
        plane.load("affine")  # a reload: the version loaded before it is closed
        plane.unload("affine")
    deadline = time.monotonic() + 30  # each version is closed on its own model thread, after its requests
    while (_scoped_modules() != modules or set(_finder.scopes) != scopes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _scoped_modules() == modules and set(_finder.scopes) == scopes
