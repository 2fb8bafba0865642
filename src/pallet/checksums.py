"""A version folder's checksums: the sha256 of every file, listed under "files" in its manifest.json.

The one place that hashes files and checks them. Runtimes that deserialize code-running formats
(pickles) read their file through `read_verified`, so what is loaded is exactly what was checked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pallet.errors import IntegrityError

MANIFEST = "manifest.json"


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
        if sha256(stored_file(folder, name, where)) != expected["sha256"]:
            raise IntegrityError(_changed(name, where))


def read_verified(folder: Path, name: str) -> bytes:
    """The bytes of file `name` of a stored version, checked against the sha256 its manifest records.

    Read once and checked in memory, so what is deserialized is exactly what was checked, even if
    the file changes on disk meanwhile. A folder still being saved has no manifest yet; its files
    are the ones just written.
    """
    path = folder / MANIFEST
    if not path.exists():
        return (folder / name).read_bytes()
    try:
        listed = json.loads(path.read_text())
        where = f"model {listed['name']}:{listed['version']} ({folder})"
        expected = listed["files"].get(name)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise IntegrityError(f"{path} is not a valid manifest: {e}") from None
    if expected is None:
        raise IntegrityError(f"file {name} of {where} is not listed in its manifest; refusing to load it")
    data = stored_file(folder, name, where).read_bytes()
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise IntegrityError(_changed(name, where))
    return data


def stored_file(folder: Path, name: str, where: str) -> Path:
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
