"""Saving a model: its runtime writes it, the model runs on its sample (so the signature is what it
really takes and gives, and a model that cannot predict on its own sample is never stored), and the
store keeps the finished folder as the next version."""

from __future__ import annotations

import shutil
from dataclasses import replace
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pallet.errors import InvalidInput, PalletError
from pallet.model import runtime_for, runtime_named
from pallet.runtimes.base import Runtime
from pallet.runtimes.source import collecting_scopes, copy_code_paths
from pallet.signature import Signature, TensorSpec
from pallet.store import Manifest, ModelRef, Store
from pallet.store.manifest import describe_files, package_versions
from pallet.store.store import SAMPLE


def save_model(store: Store, model: Any, name: str, *, sample: Any, metrics: dict[str, float] | None = None,
               tags: dict[str, str] | None = None, requirements: list[str] | None = None,
               artifacts: str | Path | None = None, description: str = "", aliases: list[str] = (),
               lineage: dict[str, Any] | None = None, report: dict[str, Any] | None = None,
               code_paths: list[str | Path] = (), classes: list[str] | None = None,
               input_names: list[str] | None = None) -> ModelRef:
    """Store `model` as the next version of `name` in `store`; its reference (`name:3`).

    The signature is read from `sample` (a batch: an array, nested lists, or a dict of named
    arrays) and the model's outputs on it. `code_paths` (helper modules and packages) are copied
    beside the model's own code, and imported from there when it is loaded. `classes` and
    `input_names` name the model's classes and the columns of its input where it does not know
    them (a scikit-learn model fitted on a DataFrame, or on string classes, does).
    """
    runtime_cls = runtime_for(model)
    with store.staging(name, aliases) as tmp:
        options = runtime_cls.save(model, tmp)
        if code_paths:
            if not runtime_cls.imports_code:
                raise PalletError(f"code_paths are for models that import their own code (pallet.PythonModel "
                                  f"classes, torch modules); a {runtime_cls.framework} model loads without it")
            copy_code_paths(code_paths, tmp)
        if artifacts is not None:
            _copy_into(Path(artifacts), tmp / "artifacts")
        manifest = _manifest(tmp, name, runtime_cls, options, sample, metrics=metrics, tags=tags,
                             requirements=[*(requirements or []), *getattr(model, "requirements", ())],
                             description=description, lineage=lineage, report=report,
                             names={"classes": classes, "input_names": input_names})
        ref = store.add(tmp, manifest)
    for alias in aliases:
        store.index.set_alias(name, alias, ref.version)
    return ref


def save_files(store: Store, folder: str | Path, name: str, *, runtime: str, options: dict[str, Any],
               sample: Any, signature: Signature | None = None, metrics: dict[str, float] | None = None,
               tags: dict[str, str] | None = None, requirements: list[str] | None = None,
               description: str = "", lineage: dict[str, Any] | None = None,
               report: dict[str, Any] | None = None, accept: Callable[[Manifest], None] | None = None,
               names: dict[str, list[str] | None] | None = None) -> ModelRef:
    """Store a folder a runtime can load (or, with `signature`, an artifact for another device
    that cannot run here) as the next version of `name`. `accept` sees the finished manifest
    (its files and their sizes) before the version is claimed, and may refuse it by raising.
    `names` ({"classes": ..., "input_names": ...}) names what the folder's model does not know."""
    with store.staging(name, ()) as tmp:
        _copy_into(Path(folder), tmp)
        manifest = _manifest(tmp, name, runtime_named(runtime), options, sample, metrics=metrics, tags=tags,
                             requirements=requirements, description=description, lineage=lineage, report=report,
                             signature=signature, names=names)
        if accept is not None:
            accept(manifest)
        return store.add(tmp, manifest)


def _manifest(tmp: Path, name: str, runtime_cls: type[Runtime], options: dict[str, Any], sample: Any, *,
              metrics, tags, requirements, description, lineage, report,
              signature: Signature | None = None, names: dict[str, list[str] | None] | None = None) -> Manifest:
    """The manifest of the folder `tmp`, with the sample written beside the files."""
    if signature is None:
        signature, inputs = _signature_from_run(tmp, runtime_cls, options, sample, names or {})
    else:
        inputs = signature.validate(_sample_inputs(sample, [s.name for s in signature.inputs]))
    np.savez(tmp / SAMPLE, **inputs)
    return Manifest(
        name=name, version=0, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        framework=runtime_cls.framework, runtime=runtime_cls.name, signature=signature,
        files=describe_files(tmp),
        packages=package_versions(["pallet", *runtime_cls.packages, *(requirements or [])]),
        requirements=list(requirements or []),
        runtime_options=options, metrics=dict(metrics or {}), tags=dict(tags or {}), description=description,
        lineage=dict(lineage or {}), report=dict(report or {}),
    )


def _signature_from_run(tmp: Path, runtime_cls: type[Runtime], options: dict[str, Any], sample: Any,
                        names: dict[str, list[str] | None]) -> tuple[Signature, dict[str, np.ndarray]]:
    """The model just written, loaded and run on its sample: the signature, and the sample as validated inputs."""
    with collecting_scopes() as scopes:  # the code it imports is released once it has run
        runtime = runtime_cls.load(tmp, options)
    runtime.code_scopes = tuple(scopes)
    try:
        signature, inputs = _run_on_sample(runtime, sample)
        return _named(signature, runtime, **names), inputs
    finally:
        runtime.close()


def _run_on_sample(runtime: Runtime, sample: Any) -> tuple[Signature, dict[str, np.ndarray]]:
    inputs = _sample_inputs(sample, runtime.input_names)
    signature = Signature.infer(inputs, dtypes=runtime.input_dtypes, shapes=runtime.input_shapes)
    inputs = signature.validate(inputs)
    try:
        outputs = runtime.predict(inputs)
    except Exception as e:
        raise InvalidInput(f"the model failed to predict on its sample: {type(e).__name__}: {e}") from e
    return Signature(signature.inputs, tuple(
        _with_labels(TensorSpec.from_array(n, v), runtime.output_labels.get(n)) for n, v in outputs.items()
    )), inputs


def _named(signature: Signature, runtime: Runtime, classes: list[str] | None = None,
           input_names: list[str] | None = None) -> Signature:
    """The signature with the names given, or else those the model knows (its feature names)."""
    if input_names is None and runtime.feature_names and len(signature.inputs) == 1:
        shape = signature.inputs[0].shape
        if len(shape) == 2 and shape[1] == len(runtime.feature_names):
            input_names = runtime.feature_names
    return signature.named(input_names=input_names, classes=classes)


def _sample_inputs(sample: Any, names: list[str] | None) -> dict[str, Any]:
    """The sample as named inputs: a dict is taken as is; one batch gets the model's input name."""
    if sample is None:
        raise InvalidInput("pass sample=... (a few rows of real input) so pallet can record the signature")
    if isinstance(sample, dict):
        return {str(k): np.asarray(v) for k, v in sample.items()}
    if hasattr(sample, "columns") and hasattr(sample, "dtypes"):  # a DataFrame: one named input per column
        return {str(column): np.asarray(sample[column]) for column in sample.columns}
    if names is not None and len(names) != 1:
        raise InvalidInput(f"this model takes {len(names)} inputs ({', '.join(names)}): pass sample as a dict")
    return {names[0] if names else "input": np.asarray(sample)}


def _with_labels(spec: TensorSpec, labels: list | None) -> TensorSpec:
    return spec if labels is None else replace(spec, labels=labels)


def _copy_into(source: Path, target: Path) -> None:
    if not source.exists():
        raise PalletError(f"artifacts path {source} does not exist")
    target.mkdir(exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target / source.name)
