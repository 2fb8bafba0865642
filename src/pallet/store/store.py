"""The model store: immutable version folders under PALLET_HOME, indexed in SQL."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pallet import runtimes
from pallet.errors import InvalidInput, ModelNotFound, PalletError
from pallet.runtimes.base import Runtime
from pallet.signature import Signature, TensorSpec
from pallet.store.index import Index, VersionRow, make_engine
from pallet.store.manifest import Manifest, describe_files, package_versions, verify_files
from pallet.store.refs import ModelRef, check_alias, check_name

SAMPLE = "sample.npz"


@dataclass(frozen=True)
class ModelVersion:
    """One stored version: its folder and manifest."""

    ref: ModelRef          # always name:version
    path: Path
    manifest: Manifest
    aliases: tuple[str, ...] = ()

    @property
    def signature(self) -> Signature:
        return self.manifest.signature

    def verify(self) -> None:
        """Check every file against the sha256 in the manifest (raises `IntegrityError` naming the
        model and the file)."""
        verify_files(self.path, self.manifest.files, f"model {self.ref}")

    def load_runtime(self, **options: Any) -> Runtime:
        """The verified model, ready to predict. `options` override the manifest's runtime options."""
        runtime = runtimes.get_runtime(self.manifest.runtime)
        others = {n: f for n, f in self.manifest.files.items() if n not in runtime.reads_verified}
        verify_files(self.path, others, f"model {self.ref}")  # before anything is deserialized
        return runtime.load(self.path, {**self.manifest.runtime_options, **options})

    def sample(self) -> dict[str, np.ndarray]:
        """The sample batch the version was saved with."""
        with np.load(self.path / SAMPLE, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


def home_path(home: str | Path | None = None) -> Path:
    """The store's folder: `home`, else PALLET_HOME, else ./.pallet."""
    return Path(home or os.environ.get("PALLET_HOME") or ".pallet").absolute()


def index_url(home: Path, db_url: str | None = None) -> str:
    """Where the index lives: `db_url`, else PALLET_DB_URL, else SQLite inside `home`."""
    return db_url or os.environ.get("PALLET_DB_URL") or f"sqlite:///{home / 'index.db'}"


class Store:
    def __init__(self, home: str | Path | None = None, db_url: str | None = None):
        self.home = home_path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.db_url = index_url(self.home, db_url)
        self.index = Index(make_engine(self.db_url))

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r})"

    # -- writing ---------------------------------------------------------------------------

    def save(self, model: Any, name: str, *, sample: Any, metrics: dict[str, float] | None = None,
             tags: dict[str, str] | None = None, requirements: list[str] | None = None,
             artifacts: str | Path | None = None, description: str = "",
             aliases: list[str] = (), lineage: dict[str, Any] | None = None,
             report: dict[str, Any] | None = None) -> ModelRef:
        """Store `model` as the next version of `name`; return its reference (`name:3`).

        The signature is read from `sample` (a batch: an array, nested lists, or a dict of
        named arrays) and the model's outputs on it, so a model that cannot predict on its
        own sample is never stored.
        """
        runtime_cls = runtimes.runtime_for(model)
        with self._staging(name, aliases) as tmp:
            options = runtime_cls.save(model, tmp)
            if artifacts is not None:
                _copy_into(Path(artifacts), tmp / "artifacts")
            ref = self._finish(tmp, name, runtime_cls, options, sample, metrics=metrics, tags=tags,
                               requirements=[*(requirements or []), *getattr(model, "requirements", ())],
                               description=description, lineage=lineage, report=report)
        for alias in aliases:
            self.index.set_alias(name, alias, ref.version)
        return ref

    def save_files(self, folder: str | Path, name: str, *, runtime: str, options: dict[str, Any], sample: Any,
                   signature: Signature | None = None, metrics: dict[str, float] | None = None,
                   tags: dict[str, str] | None = None, requirements: list[str] | None = None,
                   description: str = "", lineage: dict[str, Any] | None = None,
                   report: dict[str, Any] | None = None,
                   accept: Callable[[Manifest], None] | None = None) -> ModelRef:
        """Store a folder a runtime can load (or, with `signature`, an artifact for another device
        that cannot run here) as the next version of `name`. `accept` sees the finished manifest
        (its files and their sizes) before the version is claimed, and may refuse it by raising."""
        with self._staging(name, ()) as tmp:
            _copy_into(Path(folder), tmp)
            return self._finish(tmp, name, runtimes.get_runtime(runtime), options, sample, metrics=metrics,
                                tags=tags, requirements=requirements, description=description, lineage=lineage,
                                report=report, signature=signature, accept=accept)

    @contextmanager
    def _staging(self, name: str, aliases) -> Iterator[Path]:
        check_name(name)
        for alias in aliases:
            check_alias(alias)
        tmp = self.home / "tmp" / uuid.uuid4().hex
        tmp.mkdir(parents=True)
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _finish(self, tmp: Path, name: str, runtime_cls: type[Runtime], options: dict[str, Any], sample: Any, *,
                metrics, tags, requirements, description, lineage, report,
                signature: Signature | None = None, accept: Callable[[Manifest], None] | None = None) -> ModelRef:
        if signature is None:  # run the model on its sample: the signature is what it really takes and gives
            runtime = runtime_cls.load(tmp, options)
            inputs = _sample_inputs(sample, runtime.input_names)
            signature = Signature.infer(inputs, dtypes=runtime.input_dtypes, shapes=runtime.input_shapes)
            inputs = signature.validate(inputs)
            try:
                outputs = runtime.predict(inputs)
            except Exception as e:
                raise InvalidInput(f"the model failed to predict on its sample: {type(e).__name__}: {e}") from e
            signature = Signature(signature.inputs, tuple(
                _with_labels(TensorSpec.from_array(n, v), runtime.output_labels.get(n)) for n, v in outputs.items()
            ))
        else:
            inputs = signature.validate(_sample_inputs(sample, [s.name for s in signature.inputs]))
        np.savez(tmp / SAMPLE, **inputs)
        manifest = Manifest(
            name=name, version=0, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            framework=runtime_cls.framework, runtime=runtime_cls.name, signature=signature,
            files=describe_files(tmp),
            packages=package_versions(["pallet", *runtime_cls.packages, *(requirements or [])]),
            runtime_options=options, metrics=dict(metrics or {}), tags=dict(tags or {}), description=description,
            lineage=dict(lineage or {}), report=dict(report or {}),
        )
        if accept is not None:
            accept(manifest)
        return self._claim(tmp, manifest)

    def _claim(self, tmp: Path, manifest: Manifest) -> ModelRef:
        """Move the finished folder to the next free version number, then index it.

        The rename is atomic and fails when another process took that number first, so
        concurrent saves get distinct versions and no reader sees a half-written folder.
        """
        folder = self.home / "models" / manifest.name
        folder.mkdir(parents=True, exist_ok=True)
        on_disk = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
        version = max([self.index.max_version(manifest.name), *on_disk]) + 1
        while True:
            manifest.version = version
            manifest.write(tmp)
            target = folder / str(version)
            try:
                tmp.rename(target)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                version += 1  # taken by a concurrent save
                continue
            row = VersionRow(manifest.name, version, manifest.created, manifest.framework, manifest.runtime,
                             manifest.size_bytes, manifest.metrics, manifest.tags)
            if self.index.add(row):
                _make_read_only(target)
                return ModelRef(manifest.name, version)
            target.rename(tmp)  # the index knows this number already (its folder was removed by hand)
            version += 1

    def tag(self, ref: str | ModelRef, alias: str) -> ModelVersion:
        """Point `alias` at the version `ref` resolves to (moving it if it pointed elsewhere)."""
        check_alias(alias)
        version = self.resolve(ref)
        self.index.set_alias(version.ref.name, alias, version.ref.version)
        return self.resolve(version.ref)

    def untag(self, name: str, alias: str) -> None:
        if not self.index.remove_alias(check_name(name), alias):
            raise ModelNotFound(f"model '{name}' has no alias '{alias}'")

    def remove(self, ref: str | ModelRef) -> ModelRef:
        """Delete one version: its index row and aliases, then its folder (whatever state it is in)."""
        row = self._row(ModelRef.parse(ref))
        self.index.remove(row.name, row.version)
        shutil.rmtree(self.home / "models" / row.name / str(row.version), ignore_errors=True)
        return ModelRef(row.name, row.version)

    # -- reading ---------------------------------------------------------------------------

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The stored version a reference names, or `ModelNotFound`."""
        row = self._row(ModelRef.parse(ref))
        path = self.home / "models" / row.name / str(row.version)
        aliases = self.index.aliases(row.name).get((row.name, row.version), [])
        return ModelVersion(ModelRef(row.name, row.version), path, Manifest.read(path), tuple(aliases))

    def _row(self, ref: ModelRef) -> VersionRow:
        """The index row a reference names."""
        if ref.version is not None:
            row = self.index.get(ref.name, ref.version)
            if row is None:
                known = [r.version for r in self.index.versions(ref.name)]
                raise ModelNotFound(f"model '{ref.name}' has no version {ref.version}"
                                    + (f"; it has {_listing(known)}" if known else self._no_model_hint(ref.name)))
        elif ref.alias is not None:
            number = self.index.alias(ref.name, ref.alias)
            if number is None:
                known = sorted(a for names in self.index.aliases(ref.name).values() for a in names)
                if not self.index.latest(ref.name):
                    raise ModelNotFound(f"no model named '{ref.name}'{self._no_model_hint(ref.name)}")
                raise ModelNotFound(f"model '{ref.name}' has no alias '{ref.alias}'"
                                    + (f"; its aliases are {', '.join(known)}" if known else "; it has no aliases yet"))
            row = self.index.get(ref.name, number)
            if row is None:  # removed between the two reads
                raise ModelNotFound(f"{ref} points at version {number}, which was just removed")
        else:
            row = self.index.latest(ref.name)
            if row is None:
                raise ModelNotFound(f"no model named '{ref.name}'{self._no_model_hint(ref.name)}")
        return row

    def list(self, name: str | None = None) -> list[tuple[VersionRow, list[str]]]:
        """Every indexed version (of `name`, if given) with its aliases."""
        aliases = self.index.aliases(name)
        return [(row, aliases.get((row.name, row.version), [])) for row in self.index.versions(name)]

    def _no_model_hint(self, name: str) -> str:
        names = sorted({row.name for row in self.index.versions()})
        return f" in the store at {self.home}" + (f" (it has: {', '.join(names)})" if names else " (it is empty)")


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
    return spec if labels is None else TensorSpec(spec.name, spec.dtype, spec.shape, spec.allow_nan, labels)


def _copy_into(source: Path, target: Path) -> None:
    if not source.exists():
        raise PalletError(f"artifacts path {source} does not exist")
    target.mkdir(exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target / source.name)


def _make_read_only(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def _listing(numbers: list[int]) -> str:
    return "version " + str(numbers[0]) if len(numbers) == 1 else f"versions {numbers[0]}..{numbers[-1]}"
