"""The manifest of a stored version: what it is, how to load it, and what it is made of."""

from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pallet.errors import IntegrityError, PalletError
from pallet.signature import Signature

MANIFEST = "manifest.json"


@dataclass
class Manifest:
    name: str
    version: int
    created: str                       # ISO 8601, UTC
    framework: str                     # what made the model, e.g. scikit-learn
    runtime: str                       # which runtime loads it, e.g. sklearn
    signature: Signature
    files: dict[str, dict[str, Any]]   # relative path -> {"sha256": ..., "size": ...}
    python: str = field(default_factory=platform.python_version)
    packages: dict[str, str] = field(default_factory=dict)
    runtime_options: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""
    # Where a derived version came from: {"parent": "digits-torch:2", "operation": "export onnx",
    # "parent_files": {path: sha256}}
    lineage: dict[str, Any] = field(default_factory=dict)
    # The parity and size report an export or optimization was accepted with (pallet.export.Report)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return sum(f["size"] for f in self.files.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["signature"] = self.signature.to_dict()
        data["size_bytes"] = self.size_bytes
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["signature"] = Signature.from_dict(data["signature"])
        return cls(**data)

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise IntegrityError(f"{path} is missing: the version folder is incomplete") from None
        except (ValueError, KeyError, TypeError) as e:
            raise IntegrityError(f"{path} is not a valid manifest: {e}") from None


def human_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


SIZE_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def parse_size(text: str | int) -> int:
    """Bytes in `text`: 2000000, 2MB, 1.5 MiB, 300KiB."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).upper() not in SIZE_UNITS:
        raise PalletError(f"'{text}' is not a size: write bytes or a number with B, KB, MB, GB, KiB, MiB or GiB")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).upper()])


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under `folder` but its own manifest, by relative path."""
    return {
        path.relative_to(folder).as_posix(): {"sha256": sha256(path), "size": path.stat().st_size}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST and "__pycache__" not in path.parts
    }


def verify_files(folder: Path, files: dict[str, dict[str, Any]], owner: str | None = None) -> None:
    """Raise `IntegrityError` naming the first file that is missing or changed (and `owner`, the model)."""
    where = f"{owner} ({folder})" if owner else str(folder)
    for name, expected in files.items():
        if sha256(_stored_file(folder, name, where)) != expected["sha256"]:
            raise IntegrityError(_changed(name, where))


def read_verified(folder: Path, name: str) -> bytes:
    """The bytes of file `name` of a stored version, checked against the sha256 its manifest records.

    Read once and checked in memory, so what is deserialized is exactly what was checked, even if
    the file changes on disk meanwhile. A folder still being saved has no manifest yet; its files
    are the ones just written.
    """
    if not (folder / MANIFEST).exists():
        return (folder / name).read_bytes()
    manifest = Manifest.read(folder)
    where = f"model {manifest.name}:{manifest.version} ({folder})"
    expected = manifest.files.get(name)
    if expected is None:
        raise IntegrityError(f"file {name} of {where} is not listed in its manifest; refusing to load it")
    data = _stored_file(folder, name, where).read_bytes()
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise IntegrityError(_changed(name, where))
    return data


def _stored_file(folder: Path, name: str, where: str) -> Path:
    """The path of a file a manifest lists, refused when it leads out of the folder or is missing."""
    path = folder / name
    if Path(name).is_absolute() or ".." in Path(name).parts or not path.resolve().is_relative_to(folder.resolve()):
        raise IntegrityError(f"file {name} of {where} leads outside the version's folder (a path or a "
                             "link out of it); refusing to load it")
    if not path.is_file():
        raise IntegrityError(f"file {name} of {where} is missing; the stored model is incomplete")
    return path


def _changed(name: str, where: str) -> str:
    return (f"file {name} of {where} does not match its sha256 in the manifest: "
            "it was changed or corrupted after saving; refusing to load it")


def package_versions(names: list[str]) -> dict[str, str]:
    """Installed versions of the named distributions; a requirement already pinned is kept."""
    versions = {}
    for name in names:
        if "==" in name:
            dist, version = name.split("==", 1)
            versions[dist.strip()] = version.strip()
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise PalletError(f"package '{name}' is not installed, so its version cannot be pinned") from None
    return versions


def diff(a: Manifest, b: Manifest) -> dict[str, Any]:
    """What changed from version `a` to version `b`: size, metrics, signature, files, how it runs."""
    sig_a = {f"{kind} {s.name}": s.describe() for kind, specs in (("input", a.signature.inputs),
                                                                   ("output", a.signature.outputs)) for s in specs}
    sig_b = {f"{kind} {s.name}": s.describe() for kind, specs in (("input", b.signature.inputs),
                                                                   ("output", b.signature.outputs)) for s in specs}
    return {
        "a": f"{a.name}:{a.version}", "b": f"{b.name}:{b.version}",
        "size_bytes": {"a": a.size_bytes, "b": b.size_bytes, "change": b.size_bytes - a.size_bytes,
                       "ratio": b.size_bytes / a.size_bytes if a.size_bytes else None},
        "metrics": {k: {"a": a.metrics.get(k), "b": b.metrics.get(k)} for k in sorted({*a.metrics, *b.metrics})},
        "signature": {k: {"a": sig_a.get(k), "b": sig_b.get(k)} for k in sorted({*sig_a, *sig_b})
                      if sig_a.get(k) != sig_b.get(k)},
        "files": {k: {"a": a.files.get(k, {}).get("size"), "b": b.files.get(k, {}).get("size")}
                  for k in sorted({*a.files, *b.files})
                  if a.files.get(k, {}).get("sha256") != b.files.get(k, {}).get("sha256")},
        "runtime": {"a": f"{a.framework} ({a.runtime})", "b": f"{b.framework} ({b.runtime})"},
        "lineage": {"a": a.lineage.get("parent"), "b": b.lineage.get("parent")},
    }
