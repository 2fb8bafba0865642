"""Model store: versions on disk, index in SQL, references and aliases."""

from __future__ import annotations

import os
from pathlib import Path

from pallet.store.manifest import Manifest
from pallet.store.refs import ModelRef
from pallet.store.store import ModelVersion, Store

_stores: dict[tuple[str, str | None], Store] = {}


def default_store() -> Store:
    """The store PALLET_HOME and PALLET_DB_URL name (one per distinct setting, per process)."""
    key = (str(Path(os.environ.get("PALLET_HOME") or ".pallet").absolute()), os.environ.get("PALLET_DB_URL"))
    if key not in _stores:
        _stores[key] = Store()
    return _stores[key]


__all__ = ["Manifest", "ModelRef", "ModelVersion", "Store", "default_store"]
