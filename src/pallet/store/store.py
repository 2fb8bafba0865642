"""The model store: immutable version folders under PALLET_HOME, indexed in SQL.

The store keeps files, manifests and the index, and resolves references; it never runs a model.
Saving a model (running it on its sample to learn its signature) is the model API's: `pallet.save`.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pallet.errors import ModelNotFound, RolloutConflict
from pallet.signature import Signature
from pallet.store.database import make_engine
from pallet.store.index import PRODUCTION, Index, VersionRow
from pallet.store.manifest import Manifest, verify_files
from pallet.store.refs import ModelRef, check_alias, check_name
from pallet.urls import redact

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

    def verify(self, skip: tuple[str, ...] = ()) -> None:
        """Check every file (but those in `skip`: a runtime checks them as it reads them) against the
        sha256 in the manifest (raises `IntegrityError` naming the model and the file)."""
        files = {n: f for n, f in self.manifest.files.items() if n not in skip}
        verify_files(self.path, files, f"model {self.ref}")

    def sample(self) -> dict[str, np.ndarray]:
        """The sample batch the version was saved with."""
        with np.load(self.path / SAMPLE, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


def home_path(home: str | Path | None = None) -> Path:
    """The store's folder: `home`, else PALLET_HOME, else .pallet in the user's home folder (one store
    per user, whichever folder a command runs in)."""
    return Path(home or os.environ.get("PALLET_HOME") or Path.home() / ".pallet").expanduser().absolute()


def index_url(home: Path, db_url: str | None = None) -> str:
    """Where the index lives: `db_url`, else PALLET_DB_URL, else SQLite inside `home`."""
    return db_url or os.environ.get("PALLET_DB_URL") or f"sqlite:///{home / 'index.db'}"


def location(home: Path, db_url: str) -> str:
    """Where a store is, as messages name it: its folder, and its index when that lives elsewhere
    (password hidden)."""
    if db_url == f"sqlite:///{home / 'index.db'}":
        return f"the store at {home}"
    return f"the store at {home} (index {redact(db_url)})"


class Store:
    def __init__(self, home: str | Path | None = None, db_url: str | None = None):
        self.home = home_path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.db_url = index_url(self.home, db_url)
        self.index = Index(make_engine(self.db_url))

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r})"

    @property
    def location(self) -> str:
        """How messages name this store: its folder, with its index's URL when that is elsewhere."""
        return location(self.home, self.db_url)

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def staging(self, name: str, aliases: list[str] | tuple[str, ...] = ()) -> Iterator[Path]:
        """An empty folder inside the store to write a new version of `name` into (`name` and `aliases`
        checked first), removed when the block ends: `add` moves it into place."""
        check_name(name)
        for alias in aliases:
            check_alias(alias)
        if PRODUCTION in aliases and self.index.has_rollout(name):  # refused before anything is written
            raise RolloutConflict(f"'{name}' has a rollout, so {name}@{PRODUCTION} is the version that serves it and "
                                  f"moves only with its traffic: save without the {PRODUCTION} alias, then promote "
                                  f"the new version (pallet models tag {name}:N {PRODUCTION})")
        tmp = self.home / "tmp" / uuid.uuid4().hex
        tmp.mkdir(parents=True)
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def add(self, tmp: Path, manifest: Manifest) -> ModelRef:
        """Store the finished folder `tmp` (from `staging`) as the next version of `manifest.name`: move
        it to the next free version number, write the manifest with that number, then index it.

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
        """Remove `name@alias` (`ModelNotFound` when it has no such alias); `production` stays while a
        rollout serves it (`RolloutConflict`)."""
        if not self.index.remove_alias(check_name(name), alias):
            if self.index.latest(name) is None:
                raise ModelNotFound(f"no model named '{name}'{self._no_model_hint(name)}")
            known = sorted(a for names in self.index.aliases(name).values() for a in names)
            raise ModelNotFound(f"model '{name}' has no alias '{alias}'"
                                + (f"; its aliases are {', '.join(known)}" if known else "; it has no aliases"))

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
                removed = self.index.removed_production(ref.name) if ref.alias == PRODUCTION else None
                if removed is not None:
                    raise ModelNotFound(f"'{ref.name}' has no @{PRODUCTION}: its version {removed} was removed; "
                                        f"promote one with pallet models tag {ref.name}:N {PRODUCTION}")
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
        return f" in {self.location}" + (f" (it has: {', '.join(names)})" if names else " (it is empty)")


def _make_read_only(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def _listing(numbers: list[int]) -> str:
    return "version " + str(numbers[0]) if len(numbers) == 1 else f"versions {numbers[0]}..{numbers[-1]}"
