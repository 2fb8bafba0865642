"""Device profiles, and which variants of a model fit one, checked before anything is exported.

A profile is a size budget, a latency budget (measured here, one row per call,
multiplied by how much slower the device is than this machine), the formats the
device runs and, where it is strict, the ONNX operators it has. `fits` builds the
parent's ONNX form and its int8 and fp16 variants in a scratch folder (nothing is
stored), measures each, and says for each why it fits or not.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pallet.errors import NoRuntime, PalletError
from pallet.export.check import measure
from pallet.export.onnx import FILE, describe_onnx, onnx_form
from pallet.store import Store
from pallet.store.manifest import describe_files
from pallet.units import format_size, parse_size


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    max_size: int                     # bytes of model on the device
    max_latency_ms: float             # one prediction, on the device
    slowdown: float                   # how many times slower than this machine the device is taken to be
    formats: tuple[str, ...]          # export targets the device runs
    operators: tuple[str, ...] = ()   # the ONNX operators it has; empty: any

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "max_size": self.max_size,
                "max_latency_ms": self.max_latency_ms, "slowdown": self.slowdown, "formats": list(self.formats),
                "operators": list(self.operators)}


# The operators TensorFlow Lite Micro's built-in kernels cover, in ONNX terms (float32 and static int8).
MICRO_OPERATORS = ("Add", "ArgMax", "AveragePool", "Cast", "Concat", "Conv", "Div", "Flatten", "Gather", "Gemm",
                   "MatMul", "MaxPool", "Mul", "Relu", "Reshape", "Sigmoid", "Softmax", "Squeeze", "Sub", "Tanh",
                   "Transpose", "Unsqueeze", "QuantizeLinear", "DequantizeLinear", "Identity", "Constant", "Shape")

BUILTIN = {
    "browser": Device("browser", "a web page on a laptop: onnxruntime-web (WebAssembly, one thread)",
                      parse_size("10MiB"), 50.0, 3.0, ("web",)),
    "phone": Device("phone", "a mid-range phone: LiteRT, ExecuTorch or Core ML on its CPU",
                    parse_size("50MiB"), 30.0, 5.0, ("tflite", "executorch", "coreml")),
    "microcontroller": Device("microcontroller", "a Cortex-M class board with 256 KiB of flash: TFLite Micro",
                              parse_size("256KiB"), 100.0, 200.0, ("tflite",), MICRO_OPERATORS),
}


def load_devices(config: str | Path | None = None) -> dict[str, Device]:
    """The built-in profiles, and those `devices:` in a pallet.yaml adds or replaces."""
    devices = dict(BUILTIN)
    if config is None:
        return devices
    path = Path(config)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PalletError(f"{path} does not exist") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise PalletError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    for name, spec in (data.get("devices") or {}).items() if isinstance(data, dict) else ():
        at = f"{path}: device '{name}'"
        if not isinstance(spec, dict):
            raise PalletError(f"{at} must be a mapping with max_size, max_latency_ms, slowdown and formats")
        unknown = set(spec) - {"description", "max_size", "max_latency_ms", "slowdown", "formats", "operators"}
        missing = {"max_size", "max_latency_ms", "formats"} - set(spec)
        if unknown or missing:
            raise PalletError(f"{at}: " + "; ".join(
                ([f"unknown key(s) {', '.join(sorted(unknown))}"] if unknown else [])
                + ([f"missing {', '.join(sorted(missing))}"] if missing else [])))
        from pallet.export import TARGETS

        formats, operators = spec["formats"], spec.get("operators") or []
        for key, value in (("formats", formats), ("operators", operators)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PalletError(f"{at}: {key} must be a list of names, e.g. [web]")
        bad = [f for f in formats if f not in TARGETS]
        if bad:
            raise PalletError(f"{at}: unknown format(s) {', '.join(bad)}; formats are {', '.join(TARGETS)}")
        try:
            devices[name] = Device(name, str(spec.get("description", name)), parse_size(spec["max_size"]),
                                   float(spec["max_latency_ms"]), float(spec.get("slowdown", 1.0)), tuple(formats),
                                   tuple(operators))
        except (TypeError, ValueError) as e:
            raise PalletError(f"{at}: {e}") from None
    return devices


@dataclass
class Candidate:
    variant: str                      # onnx (float32), int8, fp16
    size_bytes: int
    latency_ms: float                 # measured here
    device_latency_ms: float          # measured here x slowdown
    operators: list[str]
    reasons: list[str] = field(default_factory=list)   # why it does not fit; empty: it fits
    formats: list[str] = field(default_factory=list)   # the device's formats that can carry this variant

    @property
    def fits(self) -> bool:
        return not self.reasons


@dataclass
class Fit:
    ref: str
    device: Device
    formats: dict[str, str]           # format -> "" when it can carry the model, else why not
    candidates: list[Candidate]
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        """A variant fits when it meets the budgets and a format the device runs carries it: the table's rows."""
        return any(c.fits for c in self.candidates)

    def verdict(self) -> str:
        """The conclusion the table's rows draw: which variants fit and in which formats, or why none does."""
        fitting = [c for c in self.candidates if c.fits]
        if fitting:
            return f"{self.ref} fits {self.device.name}: " + "; ".join(
                f"{c.variant} as {', '.join(c.formats)}" for c in fitting)
        if all(self.formats.values()):
            return f"{self.ref} does not fit {self.device.name}: no format carries it"
        return f"{self.ref} does not fit {self.device.name}: no variant meets the budgets"

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "device": self.device.to_dict(), "fits": self.fits, "verdict": self.verdict(),
                "formats": self.formats, "candidates": [{**c.__dict__, "fits": c.fits} for c in self.candidates],
                "notes": self.notes}


def fits(store: Store, ref: str, device: Device) -> Fit:
    """Which formats and which variants of `ref` fit `device`, and why the others do not."""
    from pallet.export import get_target
    from pallet.export.base import run_here
    from pallet.export.derive import Parent
    from pallet.export.worker import OneRowTorch
    from pallet.export.optimize import QUANTIZATIONS, quantized

    parent = Parent.open(store, ref, None)
    version = parent.version
    targets = {name: get_target(name) for name in device.formats}
    formats = {name: target.refuses(version) or "" for name, target in targets.items()}
    candidates, skipped = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "float32"
        source.mkdir()
        form = onnx_form(version, parent.runtime, source)
        for variant in ("float32", *QUANTIZATIONS):
            folder = source if variant == "float32" else Path(tmp) / variant
            if variant != "float32":
                try:
                    quantized(source, variant, folder)
                except NoRuntime as e:  # a graph with nothing to quantize has no such variant
                    skipped[variant] = str(e)
                    continue
            size = sum(f["size"] for f in describe_files(folder).values())
            figures = measure(variant, "", size, run_here(folder, form).predict, parent.data, seconds=0.3)
            operators = describe_onnx(folder / FILE)["operators"]
            candidate = Candidate(variant, size, figures.p50_ms, figures.p50_ms * device.slowdown, operators)
            if size > device.max_size:
                candidate.reasons.append(f"{format_size(size)} is over the {format_size(device.max_size)} budget")
            if candidate.device_latency_ms > device.max_latency_ms:
                candidate.reasons.append(f"{candidate.device_latency_ms:.2f} ms on the device ({figures.p50_ms:.3f} ms "
                                         f"here x{device.slowdown:g}) is over {device.max_latency_ms:g} ms")
            missing = [op for op in operators if device.operators and op not in device.operators]
            if missing:
                candidate.reasons.append(f"uses {', '.join(missing)}, which the device does not have")
            _carriers(candidate, formats, targets)
            candidates.append(candidate)
    notes = [f"no {variant} variant: {why}" for variant, why in skipped.items()]
    if any(isinstance(target, OneRowTorch) for target in targets.values()):
        notes.append("variants are measured as ONNX graphs; pallet exports tflite, executorch and coreml in float32")
    return Fit(str(version.ref), device, formats, candidates, notes)


def _carriers(candidate: Candidate, formats: dict[str, str], targets: dict) -> None:
    """Which of the device's formats can carry the variant; none is a reason it does not fit. The torch-traced
    device formats are made from the torch model itself, so they carry float32 only."""
    from pallet.export.worker import OneRowTorch

    taking = [name for name, why in formats.items() if not why]
    candidate.formats = [name for name in taking
                         if candidate.variant == "float32" or not isinstance(targets[name], OneRowTorch)]
    if not taking:
        candidate.reasons.append(f"no format the device runs ({', '.join(formats)}) carries this model")
    elif not candidate.formats:
        candidate.reasons.append(f"{', '.join(taking)} {'is' if len(taking) == 1 else 'are'} exported in float32 only")
