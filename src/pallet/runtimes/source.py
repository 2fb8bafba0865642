"""Code a model carries: copied into its version (`code/`) and imported from there.

Each folder of code is imported as a package of its own, `pallet_models.<scope>`, so two
versions (or a version and the user's checkout) can hold modules of the same name without
meeting. Inside that package, `import helper` and `from helper import x` resolve to the
folder's own `helper.py` (or `helper/` package) when it has one, and to the usual modules
otherwise. Nothing is added to `sys.path`: one finder, which answers only for names under
`pallet_models.`, locates the folder's files. A scope is released (`close`) when the model that imported it is unloaded, so a
process that loads and unloads versions does not keep every version's modules.
"""

from __future__ import annotations

import builtins
import contextvars
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import itertools
import shutil
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from pallet.errors import NoRuntime, PalletError

CODE = "code"
ROOT = "pallet_models"

_numbers = itertools.count(1)
_lock = threading.Lock()
_collecting: contextvars.ContextVar[tuple[list[CodeScope], ...]] = contextvars.ContextVar("collecting", default=())


class CodeScope:
    """The modules of one folder, imported under a package name of their own."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).absolute()
        digest = hashlib.sha1(str(self.folder).encode()).hexdigest()[:10]
        self.package = f"{ROOT}.s{next(_numbers)}_{digest}"
        self.names = local_module_names(self.folder)
        self.builtins = {**builtins.__dict__, "__import__": self._import}
        _install(self)
        for scopes in _collecting.get():
            scopes.append(self)

    def close(self) -> None:
        """Forget the folder's package and every module imported from it. What was already made from
        them keeps working; importing more from the folder no longer does."""
        with _lock:
            _finder.scopes.pop(self.package, None)
            prefix = self.package + "."
            for name in [n for n in list(sys.modules) if n == self.package or n.startswith(prefix)]:
                sys.modules.pop(name, None)
            root = sys.modules.get(ROOT)
            if root is not None:
                root.__dict__.pop(self.package.rsplit(".", 1)[1], None)

    def import_module(self, name: str) -> ModuleType:
        """Module `name` (dotted) from the folder when its first part is there; else the usual one."""
        if name.partition(".")[0] not in self.names:
            return importlib.import_module(name)
        try:
            return importlib.import_module(f"{self.package}.{name}")
        except ModuleNotFoundError as e:
            if not (e.name or "").startswith(self.package + "."):
                raise
            missing = user_module_name(e.name)
            raise ModuleNotFoundError(f"No module named '{missing}' in {self.folder}", name=missing) from None

    def attribute(self, module: str, qualname: str) -> Any:
        found: Any = self.import_module(module)
        for part in qualname.split("."):
            if not hasattr(found, part):
                raise AttributeError(f"module '{module}' has no attribute '{qualname}'")
            found = getattr(found, part)
        return found

    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        """`__import__` for the folder's own modules: absolute imports of the folder's names stay in it."""
        top = name.partition(".")[0]
        if level != 0 or top not in self.names:
            return builtins.__import__(name, globals, locals, fromlist, level)
        module = builtins.__import__(f"{self.package}.{name}", globals, locals, fromlist, 0)
        return module if fromlist else sys.modules[f"{self.package}.{top}"]


@contextmanager
def collecting_scopes() -> Iterator[list[CodeScope]]:
    """The scopes made inside the block (in this thread or task), nested blocks' included. If the
    block fails, they are closed: nothing that failed to load stays imported."""
    scopes: list[CodeScope] = []
    token = _collecting.set((*_collecting.get(), scopes))
    try:
        yield scopes
    except BaseException:
        for scope in scopes:
            scope.close()
        raise
    finally:
        _collecting.reset(token)


def local_module_names(folder: Path) -> frozenset[str]:
    """Top-level names importable from `folder`: its `.py` files and its packages (folders with `__init__.py`)."""
    if not folder.is_dir():
        return frozenset()
    return frozenset(p.stem if p.is_file() else p.name for p in folder.iterdir()
                     if p.stem.isidentifier() and ((p.is_file() and p.suffix == ".py")
                                                   or (p.is_dir() and (p / "__init__.py").is_file())))


def user_module_name(name: str) -> str:
    """The module name as its author wrote it: `steps` for `pallet_models.s3_ab12.steps`."""
    parts = name.split(".")
    return ".".join(parts[2:]) if parts[0] == ROOT and len(parts) > 2 else name


class _ScopedLoader(importlib.machinery.SourceFileLoader):
    """Runs a module of a scope with the scope's `__import__`, compiled from its source (no bytecode
    cache is read or written, so what runs is the file the manifest verified)."""

    def __init__(self, fullname: str, path: str, scope: CodeScope):
        super().__init__(fullname, path)
        self.scope = scope

    def get_code(self, fullname: str):
        return self.source_to_code(self.get_data(self.path), self.path)

    def exec_module(self, module: ModuleType) -> None:
        module.__builtins__ = self.scope.builtins
        super().exec_module(module)


class _ScopeFinder(importlib.abc.MetaPathFinder):
    """Finds `pallet_models.<scope>.<module>` in the scope's folder; answers for no other name."""

    def __init__(self):
        self.scopes: dict[str, CodeScope] = {}

    def find_spec(self, fullname: str, path=None, target=None):
        if not fullname.startswith(ROOT + "."):
            return None
        scope = self.scopes.get(".".join(fullname.split(".")[:2]))
        if scope is None or fullname == scope.package:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = _ScopedLoader(fullname, spec.origin, scope)
        return spec


_finder = _ScopeFinder()


def _install(scope: CodeScope) -> None:
    """Register `scope`'s package (and the root package and the finder, the first time)."""
    with _lock:
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
        root = sys.modules.get(ROOT) or _package(ROOT, [])
        package = _package(scope.package, [str(scope.folder)])
        setattr(root, scope.package.rsplit(".", 1)[1], package)
        _finder.scopes[scope.package] = scope


def _package(name: str, locations: list[str]) -> ModuleType:
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = locations
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    return module


def copy_source(obj: Any, folder: Path, module: str | None = None) -> str:
    """Copy the file that defines `obj` (a class or function) into `folder/code/` as `module`.py
    (default: the last part of its module's name); the module name there."""
    source = inspect.getsourcefile(obj)
    if source is None:
        raise NoRuntime(f"cannot find the source file of {obj.__qualname__}")
    (folder / CODE).mkdir(exist_ok=True)
    module = module or obj.__module__.rsplit(".", 1)[-1]
    shutil.copyfile(source, folder / CODE / f"{module}.py")
    return module


def copy_code_paths(paths: Iterable[str | Path], folder: Path) -> list[str]:
    """Copy helper modules (files) and packages (folders) into `folder/code/`, beside the model's
    own module, so the version imports them from there; the names they were copied as."""
    target = folder / CODE
    target.mkdir(exist_ok=True)
    copied = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise PalletError(f"code path {path} does not exist; name a module file or a package folder")
        if path.is_file() and path.suffix != ".py":
            raise PalletError(f"code path {path} is not a Python module (.py file) or a package folder")
        if (target / path.name).exists():
            raise PalletError(f"code path {path} has the name of a module the version already holds "
                              f"({path.name}); rename it or list it once")
        if path.is_dir():
            shutil.copytree(path, target / path.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(path, target / path.name)
        copied.append(path.name)
    return copied


def load_attribute(folder: Path, module: str, qualname: str) -> Any:
    """`qualname` from `folder/code/{module}.py`, imported in a scope of its own (see `CodeScope`)."""
    if not (folder / CODE / f"{module}.py").is_file():
        raise NoRuntime(f"{folder / CODE / module}.py is missing: the version does not hold its model's code")
    return CodeScope(folder / CODE).attribute(module, qualname)
