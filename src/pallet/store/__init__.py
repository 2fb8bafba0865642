"""Model store: versions on disk, index in SQL, references and aliases."""

from __future__ import annotations

import os

from pallet.errors import ModelNotFound
from pallet.store.manifest import Manifest
from pallet.store.refs import ModelRef
from pallet.store.store import ModelVersion, Store, home_path, index_url, location

_stores: dict[tuple[str, str | None], Store] = {}


def default_store() -> Store:
    """The store PALLET_HOME (default ~/.pallet) and PALLET_DB_URL name (one per distinct setting, per
    process); its folder is made when missing."""
    key = (str(home_path()), os.environ.get("PALLET_DB_URL"))
    if key not in _stores:
        _stores[key] = Store()
    return _stores[key]


def missing_store() -> str | None:
    """For commands that only read: None when the default store exists (or its index lives in a
    database server), else where it would be, as messages name it ("the store at FOLDER"). Nothing is
    created."""
    home = home_path()
    if os.environ.get("PALLET_DB_URL") or (home / "index.db").is_file():
        return None
    return location(home, index_url(home))


def store_to_read(ref: str | None = None) -> Store | None:
    """The default store, for a command that only reads; where there is none yet nothing is made: a
    named model is then a ModelNotFound that says where pallet looked, and no name gives None."""
    missing = missing_store()
    if missing is None:
        return default_store()
    if ref:
        raise ModelNotFound(f"no model named '{ModelRef.parse(ref).name}' in {missing} (it is empty)")
    return None


__all__ = ["Manifest", "ModelRef", "ModelVersion", "Store", "default_store", "missing_store", "store_to_read"]
