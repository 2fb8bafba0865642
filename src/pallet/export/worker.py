"""Toolchains that live in environments of their own, driven from pallet's.

LiteRT, ExecuTorch and Core ML (`make edge`) and Apache TVM (`make tvm`) pin
dependencies that cannot share one environment with each other or with pallet's
server, so a target built on them (`InWorker`) converts and runs its model in a
subprocess: `python -m pallet.export.worker convert|run ...` with the Python of
that environment (PALLET_EDGE_PYTHON, PALLET_TVM_PYTHON), or this one where it
has the toolchain. Inputs and outputs cross as .npz files, reports as JSON.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from contextvars import ContextVar
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pallet.errors import NoRuntime, PalletError
from pallet.export.base import Converted, Runner, Target
from pallet.export.check import accuracy, compare
from pallet.export.data import Data
from pallet.export.report import Figures
from pallet.runtimes.base import Runtime
from pallet.store import ModelVersion

_loaded: ContextVar[ExitStack | None] = ContextVar("loaded", default=None)  # see closing_loaded_runtimes
WORKER_TIMEOUT = 1800  # seconds: a conversion of a big model is minutes, not hours
ENVIRONMENTS = {  # toolchain -> (the variable naming its Python, a module that shows it is installed, how to get it)
    "edge": ("PALLET_EDGE_PYTHON", "litert_torch", "make edge (or pip install 'pallet[edge]')"),
    "tvm": ("PALLET_TVM_PYTHON", "tvm", "make tvm (or pip install 'pallet[tvm]')"),
}


def python_for(toolchain: str) -> str:
    variable, module, how = ENVIRONMENTS[toolchain]
    if os.environ.get(variable):
        if not Path(os.environ[variable]).is_file():
            raise NoRuntime(f"{variable} is {os.environ[variable]}, which does not exist: {how}")
        return os.environ[variable]
    if importlib.util.find_spec(module) is not None:
        return sys.executable
    raise NoRuntime(f"the {toolchain} toolchain is not installed: {how}, then set {variable} to its Python")


def call(toolchain: str, *args: str) -> dict[str, Any]:
    """Run one worker command in the toolchain's environment; its JSON answer."""
    try:
        done = subprocess.run([python_for(toolchain), "-m", "pallet.export.worker", *args], capture_output=True,
                              text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise PalletError(f"the {toolchain} toolchain took over {WORKER_TIMEOUT} s and was stopped") from None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["it printed nothing"]
    if done.returncode != 0:
        error = next((line.removeprefix("error: ") for line in reversed(lines) if line.startswith("error: ")), None)
        raise PalletError(error or f"the {toolchain} toolchain failed (exit {done.returncode}): {lines[-1]}")
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise PalletError(f"the {toolchain} toolchain answered no report: {lines[-1]}") from None


class InWorker(Target):
    """A target whose toolchain runs in the environment `toolchain` names."""

    toolchain: ClassVar[str]

    def convert(self, parent: ModelVersion, runtime: Runtime, folder: Path) -> Converted:
        return Converted(**call(self.toolchain, "convert", self.name, str(parent.path), str(folder)))

    def convert_here(self, source: Path, folder: Path) -> Converted:
        """The conversion itself, inside the toolchain's environment: `source` (the parent's folder) into `folder`."""
        raise NotImplementedError

    def describe_here(self, folder: Path, converted: Converted) -> dict[str, Any]:
        """What the artifact declares, read inside the toolchain's environment."""
        return {}

    def runner(self, folder: Path, converted: Converted) -> Runner:
        return InWorkerRunner(self.toolchain, folder, converted)


class OneRowTorch(InWorker):
    """A device format made from a torch model traced on one row (LiteRT, ExecuTorch, Core ML)."""

    def refuses(self, version: ModelVersion) -> str | None:
        if version.manifest.runtime != "torch":
            return (f"{version.ref} is a {version.manifest.framework} model; the {self.name} export takes torch "
                    "models (an nn.Module or a torch.export program)")
        return None


class InWorkerRunner(Runner):
    in_process = False

    def __init__(self, toolchain: str, folder: Path, converted: Converted):
        self.toolchain, self.folder, self.converted = toolchain, folder, converted
        self.name = f"{converted.runtime}, in the {toolchain} environment"
        self.timings: dict[str, Any] = {}

    def answers(self, data: Data) -> dict[str, np.ndarray]:
        with tempfile.TemporaryDirectory() as tmp:
            inputs, outputs = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
            np.savez(inputs, **data.inputs)
            self.timings = call(self.toolchain, "run", self.converted.runtime, str(self.folder),
                                json.dumps(self.converted.options), str(inputs), str(outputs))
            self.name = self.timings["runner"]
            with np.load(outputs, allow_pickle=False) as found:
                return {k: found[k] for k in found.files}

    def figures(self, label: str, size: int, data: Data, parent_answers: dict[str, np.ndarray]) -> Figures:
        out = self.answers(data)
        return Figures(label, "", size, self.timings["p50_ms"], self.timings["rows_per_s"], accuracy(out, data),
                       compare(parent_answers, out)[1])


def open_version(folder: Path) -> ModelVersion:
    """The stored version in `folder`, read without its store (the worker has only the folder)."""
    from pallet.store.manifest import Manifest
    from pallet.store.refs import ModelRef

    manifest = Manifest.read(folder)
    return ModelVersion(ModelRef(manifest.name, manifest.version), folder, manifest)


@contextmanager
def closing_loaded_runtimes() -> Iterator[None]:
    """A conversion: the runtimes `torch_module` loads inside the block are closed when it ends (the
    module they made must outlive `torch_module`, until the conversion has exported it)."""
    with ExitStack() as loaded:
        token = _loaded.set(loaded)
        try:
            yield
        finally:
            _loaded.reset(token)


def torch_module(source: Path) -> tuple[Any, tuple, list[str], list[str]]:
    """(the torch module stored in `source`, its inputs as one row of its sample, its input and output names),
    for device formats that run one row per call. Called inside `closing_loaded_runtimes`, which closes its runtime."""
    import torch

    from pallet.model import load_runtime

    loaded = _loaded.get()
    if loaded is None:
        raise PalletError("torch_module loads a runtime for a conversion: call it inside closing_loaded_runtimes()")
    parent = open_version(source)
    runtime = loaded.enter_context(closing(load_runtime(parent)))
    sample = parent.sample()
    args = tuple(torch.from_numpy(np.ascontiguousarray(sample[name][:1])) for name in runtime.input_names)
    with torch.inference_mode():
        out = runtime.module(*args)
    return runtime.module.eval(), args, runtime.input_names, runtime.names_of(out)


# -- inside the toolchain's environment --------------------------------------------------------------


def _convert(target_name: str, source: str, out: str) -> dict[str, Any]:
    from pallet.export import get_target
    from pallet.export.worker import closing_loaded_runtimes  # the module the targets import, not __main__
    from pallet.store.manifest import package_versions

    target = get_target(target_name)
    with closing_loaded_runtimes():
        converted = target.convert_here(Path(source), Path(out))
    converted.structure = target.describe_here(Path(out), converted)
    converted.requirements = [f"{k}=={v}" for k, v in package_versions(converted.requirements).items()]
    return asdict(converted)


def _run(runtime_name: str, folder: str, options: str, inputs_path: str, outputs_path: str) -> dict[str, Any]:
    from pallet.export.base import typed
    from pallet.export.check import answers
    from pallet.runtimes import get_runtime

    with np.load(inputs_path, allow_pickle=False) as found:
        data = Data("", {k: found[k] for k in found.files})
    with closing(get_runtime(runtime_name).load(Path(folder), json.loads(options))) as runtime:
        predict = typed(runtime)
        one = data.head(1).inputs
        predict(one)
        latencies = []
        for _ in range(200):
            start = time.perf_counter()
            predict(one)
            latencies.append(time.perf_counter() - start)
        start = time.perf_counter()
        outputs = answers(predict, data, batch=64)
        rows_per_s = len(data) / (time.perf_counter() - start)
        runner = getattr(runtime, "runner", runtime_name)
    np.savez(outputs_path, **outputs)
    return {"runner": runner, "p50_ms": float(np.median(latencies) * 1000), "rows_per_s": rows_per_s}


def main(argv: list[str]) -> int:
    from pallet.export.onnx import explain, quiet

    commands = {"convert": _convert, "run": _run}
    try:
        with quiet():
            result = commands[argv[0]](*argv[1:])
    except PalletError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the toolchain's own errors: one line, its root cause
        print(f"error: the {argv[1] if argv[0] == 'convert' else argv[1] + ' runtime'} toolchain failed: "
              f"{explain(e)}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
