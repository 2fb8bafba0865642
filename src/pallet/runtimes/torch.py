"""PyTorch models: an `nn.Module` with its code, or a `torch.export` program.

An `nn.Module` is stored as its class's source file (`code/`), the arguments its
constructor took (read back from attributes of the same name, as `self.hidden =
hidden` keeps them), and its `state_dict` (`weights.pt`, loaded with
`weights_only=True`: tensors, never pickled code). A `torch.export.ExportedProgram`
is stored as `model.pt2`; it needs no source at all (torch's own loader reads it, as
every stored file, only after its sha256 matched the manifest).

`forward` takes the model's inputs as tensors, in the order of its parameters,
and returns a tensor (named `output`), a dict of named tensors, or a tuple named by
the module's `output_names`.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np

from pallet.errors import NoRuntime
from pallet.runtimes.base import Runtime
from pallet.runtimes.python import copy_source, load_attribute

WEIGHTS, PROGRAM, INIT = "weights.pt", "model.pt2", "init.json"


class TorchRuntime(Runtime):
    name = "torch"
    framework = "pytorch"
    packages = ("torch", "numpy")
    imports_code = True

    def __init__(self, module: Any, input_names: list[str], output_names: list[str] | None, batchable: bool = True):
        import torch

        self.torch = torch
        self.module = module
        self.input_names = input_names
        self.output_names = output_names
        self.batchable = batchable
        classes = getattr(module, "classes", None)
        if classes is not None:
            self.output_labels = {"probabilities": list(classes)}

    @classmethod
    def accepts(cls, model: Any) -> bool:
        try:
            import torch
        except ImportError:
            return False
        return isinstance(model, (torch.nn.Module, torch.export.ExportedProgram))

    @classmethod
    def save(cls, model: Any, folder: Path) -> dict[str, Any]:
        import torch

        if isinstance(model, torch.export.ExportedProgram):
            torch.export.save(model, folder / PROGRAM)
            return {"program": PROGRAM, "inputs": _program_inputs(model)}
        kind = type(model)
        if kind.__module__ == "__main__":
            raise NoRuntime(f"module class {kind.__qualname__} is defined in __main__; move it into a module file, "
                            "or save torch.export.export(model, (sample,)) instead")
        init = _init_arguments(model)
        module = copy_source(kind, folder)
        (folder / INIT).write_text(json.dumps(init, indent=2) + "\n")
        torch.save(model.state_dict(), folder / WEIGHTS)
        return {"module": module, "class": kind.__qualname__,
                "inputs": [p for p in inspect.signature(model.forward).parameters]}

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any]) -> TorchRuntime:
        import torch

        if "program" in options:
            program = torch.export.load(folder / options["program"])
            return cls(program.module(), options["inputs"], options.get("outputs"), _free_batch(program))
        kind = load_attribute(folder, options["module"], options["class"])
        module = kind(**json.loads((folder / INIT).read_text()))
        module.load_state_dict(torch.load(folder / WEIGHTS, weights_only=True, map_location="cpu"))
        module.eval()
        return cls(module, options["inputs"], getattr(module, "output_names", None))

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        tensors = [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in self.input_names]
        with torch.inference_mode():
            outputs = self.module(*tensors)
        values = outputs.values() if isinstance(outputs, dict) else outputs if isinstance(outputs, (tuple, list)) \
            else [outputs]
        return {name: value.numpy() for name, value in zip(self.names_of(outputs), values, strict=True)}

    def names_of(self, outputs: Any) -> list[str]:
        """The names of what `forward` returned: a dict's keys, `output_names` (or output_0, output_1 ...)
        for a tuple, `output` for one tensor."""
        if isinstance(outputs, dict):
            return list(outputs)
        if isinstance(outputs, (tuple, list)):
            return list(self.output_names or [f"output_{i}" for i in range(len(outputs))])
        return ["output"]


def _init_arguments(model: Any) -> dict[str, Any]:
    """The constructor's arguments, read back from the instance's attributes of the same names."""
    found = {}
    for name, parameter in inspect.signature(type(model).__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if hasattr(model, name) and _is_json(getattr(model, name)):
            found[name] = getattr(model, name)
        elif parameter.default is parameter.empty:
            raise NoRuntime(f"{type(model).__qualname__}.__init__ takes '{name}', which pallet cannot read back: "
                            f"keep it as self.{name} (a number, string, list or dict), or save "
                            "torch.export.export(model, (sample,)) instead")
    return found


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def _program_inputs(program: Any) -> list[str]:
    return [spec.arg.name for spec in program.graph_signature.input_specs if spec.kind.name == "USER_INPUT"]


def _free_batch(program: Any) -> bool:
    """Whether every input's first axis is symbolic, so rows of several requests can share a call."""
    import torch

    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    for name in _program_inputs(program):
        value = placeholders[name].meta.get("val")
        if value is None or not value.shape or not isinstance(value.shape[0], torch.SymInt):
            return False
    return True
