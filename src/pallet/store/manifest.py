"""The manifest of a stored version: what it is, how to load it, and what it is made of."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

# The checksums of a version folder live on the ground floor (runtimes check them too); named here as well.
from pallet.checksums import MANIFEST, describe_files, read_verified, sha256, verify_files  # noqa: F401
from pallet.errors import IntegrityError, PalletError
from pallet.signature import Signature


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
    requirements: list[str] = field(default_factory=list)   # as the model's author wrote them (PEP 508)
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


def package_versions(requirements: list[str]) -> dict[str, str]:
    """The version each requirement pins, by distribution name: for an exact pin (`name==1.2`) the
    version given, which may be read in another environment; otherwise the installed version, which
    must satisfy the requirement (any PEP 508 specifier). A requirement whose marker does not hold
    here (`pandas; python_version < "3.9"`) pins nothing."""
    versions = {}
    for text in requirements:
        requirement = parse_requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        specs = list(requirement.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            versions[requirement.name] = specs[0].version
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            raise PalletError(f"requirement '{text}' is not met: {requirement.name} is not installed") from None
        if not requirement.specifier.contains(installed, prereleases=True):
            raise PalletError(f"requirement '{text}' is not met: {requirement.name} {installed} is installed")
        versions[requirement.name] = installed
    return versions


def parse_requirement(text: str) -> Requirement:
    """`text` as a PEP 508 requirement (`numpy>=1.24`, `scikit-learn==1.5.*`, `pandas; python_version>"3"`)."""
    try:
        return Requirement(str(text))
    except InvalidRequirement as e:
        reason = str(e).splitlines()[0] if str(e) else "unreadable"
        raise PalletError(f"requirement '{text}' is not a PEP 508 requirement ({reason}); "
                          "write e.g. numpy>=1.24 or scikit-learn==1.5.*") from None


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
