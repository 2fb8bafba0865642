"""`pallet doctor`: what is wrong with this installation and this store, one finding at a time.

Every check reads; none repairs. A finding is `ok`, `info` (worth knowing, not wrong) or a
`problem`; the installation is healthy when there is no problem.
"""

from __future__ import annotations

import importlib
import os
import platform
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import sqlalchemy as sa

from pallet.errors import IntegrityError, PalletError
from pallet.store import Store
from pallet.store.store import home_path, index_url
from pallet.store.database import make_engine
from pallet.store.migrate import HEADS, STORE, described, stored_revisions, too_new
from pallet.store.manifest import MANIFEST

OK, INFO, PROBLEM = "ok", "info", "problem"
MIN_PYTHON = (3, 11)
# Distributions whose module is imported to prove it works, not only that it is installed.
MODULES = {"numpy": "numpy", "scikit-learn": "sklearn", "joblib": "joblib", "onnx": "onnx",
           "onnxruntime": "onnxruntime", "sqlalchemy": "sqlalchemy", "typer": "typer", "rich": "rich",
           "starlette": "starlette", "uvicorn": "uvicorn", "orjson": "orjson", "httpx": "httpx",
           "alembic": "alembic"}
# What pallet itself keeps at the top of PALLET_HOME.
HOME_ENTRIES = {"models", "tmp", "locks", "index.db", "index.db-wal", "index.db-shm", "index.db-journal"}
Progress = Callable[[int, int], None]  # versions verified, versions in all


@dataclass(frozen=True)
class Finding:
    check: str            # python, package, toolchain, home, index, files, orphan, alias, permissions, symlink
    level: str            # ok, info or problem
    message: str
    path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def healthy(findings: list[Finding]) -> bool:
    return not any(f.level == PROBLEM for f in findings)


def diagnose(home: str | Path | None = None, db_url: str | None = None,
             progress: Progress | None = None) -> list[Finding]:
    """Every finding about the installation and the store at `home` (PALLET_HOME) indexed at
    `db_url` (PALLET_DB_URL, or the SQLite file inside the home)."""
    return [*check_environment(), *check_store(home, db_url, progress)]


# -- the installation ----------------------------------------------------------------------------

def check_environment() -> list[Finding]:
    found = [_python()]
    found += [_package(requirement) for requirement in _requirements()]
    found += [_toolchain(name, variable, module) for name, (variable, module) in _toolchains().items()]
    return found


def _python() -> Finding:
    version = platform.python_version()
    if sys.version_info[:2] < MIN_PYTHON:
        return Finding("python", PROBLEM, f"Python {version} at {sys.executable}; pallet needs "
                                          f"{'.'.join(map(str, MIN_PYTHON))} or newer", sys.executable)
    return Finding("python", OK, f"Python {version} at {sys.executable}", sys.executable)


def _requirements() -> list:
    """pallet's own requirements (not the extras'), as packaging Requirements."""
    from packaging.requirements import Requirement

    try:
        declared = metadata.requires("pallet") or []
    except metadata.PackageNotFoundError:
        return []
    return [r for r in map(Requirement, declared) if r.marker is None]


def _package(requirement) -> Finding:
    name = requirement.name
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        return Finding("package", PROBLEM, f"{name} is not installed; pallet needs {requirement}")
    if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
        return Finding("package", PROBLEM, f"{name} {version} is installed; pallet needs {requirement}")
    module = MODULES.get(name.lower())
    if module is not None:
        try:
            importlib.import_module(module)
        except Exception as e:  # any failure to import is what this check reports
            return Finding("package", PROBLEM, f"{name} {version} is installed but 'import {module}' fails: "
                                               f"{_one_line(f'{type(e).__name__}: {e}')}")
    return Finding("package", OK, f"{name} {version}")


def _toolchains() -> dict[str, tuple[str, str]]:
    from pallet.export.worker import ENVIRONMENTS

    return {name: (variable, module) for name, (variable, module, _) in ENVIRONMENTS.items()}


def _toolchain(name: str, variable: str, module: str) -> Finding:
    """An optional toolchain in an environment of its own: reported when its variable is set."""
    python = os.environ.get(variable)
    if not python:
        return Finding("toolchain", INFO, f"{name}: {variable} is not set (optional; exports to it run here "
                                          "only if this environment has it)")
    if not Path(python).is_file() or not os.access(python, os.X_OK):
        return Finding("toolchain", PROBLEM, f"{name}: {variable} is {python}, which is not an executable file",
                       python)
    probe = ("import importlib.util, platform, sys; "
             f"print(platform.python_version(), importlib.util.find_spec({module!r}) is not None)")
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Finding("toolchain", PROBLEM, f"{name}: {variable}={python} cannot run: {_one_line(str(e))}", python)
    words = done.stdout.split()
    if done.returncode != 0 or len(words) != 2:
        return Finding("toolchain", PROBLEM, f"{name}: {variable}={python} failed (exit {done.returncode}): "
                                             f"{_one_line(done.stderr)[-200:]}", python)
    if words[1] != "True":
        return Finding("toolchain", PROBLEM, f"{name}: {variable}={python} (Python {words[0]}) has no '{module}'",
                       python)
    return Finding("toolchain", INFO, f"{name}: {variable}={python} (Python {words[0]}, {module} installed)", python)


# -- the store -----------------------------------------------------------------------------------

def check_store(home: str | Path | None = None, db_url: str | None = None,
                progress: Progress | None = None) -> list[Finding]:
    origin = "" if home is not None else _origin()
    home = home_path(home)
    db_url = index_url(home, db_url)
    if not home.is_dir():
        what = "is not a folder" if home.exists() else "does not exist"
        return [Finding("home", PROBLEM, f"the store folder {home}{origin} {what}: run 'pallet demo' or "
                                         "pallet.save(...) to make a store there, or point PALLET_HOME at one",
                        str(home))]
    found = [_home(home, origin)]
    state, finding = _index(db_url)
    found.append(finding)
    if state == "ready":
        try:  # opening the store upgrades an older schema
            found += check_versions(home, db_url, progress)
        except PalletError as e:
            found.append(Finding("index", PROBLEM, str(e)))
    elif state == "empty":  # whatever is under models/ then, no index entry knows
        found += _orphans(home / "models", set())
    found += _strays(home)
    found += check_permissions(home)
    found += check_symlinks(home)
    return found


def _home(home: Path, origin: str) -> Finding:
    if not os.access(home, os.W_OK | os.X_OK):
        return Finding("home", PROBLEM, f"the store folder {home}{origin} is not writable by this user: "
                                        "models cannot be saved there", str(home))
    return Finding("home", OK, f"the store folder {home}{origin}", str(home))


def _origin() -> str:
    """Where the default store's folder came from, in brackets."""
    return " (PALLET_HOME)" if os.environ.get("PALLET_HOME") else " (the default, ~/.pallet; PALLET_HOME names another)"


def _index(db_url: str) -> tuple[str, Finding]:
    """Whether the index is ready (holds pallet's tables), empty (has none yet) or broken (cannot be
    read), and the finding that says so."""
    try:
        engine = make_engine(db_url)
    except PalletError as e:
        return "broken", Finding("index", PROBLEM, str(e))
    index = described(engine)
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database and not Path(database).exists():
        return "empty", Finding("index", INFO, f"{index} does not exist yet: the store is empty")
    try:
        with engine.connect() as conn:
            has_index = sa.inspect(conn).has_table("pallet_versions")
        stored = stored_revisions(engine) if has_index else set()
    except (sa.exc.SQLAlchemyError, OSError) as e:
        return "broken", Finding("index", PROBLEM, f"{index} cannot be reached: "
                                               f"{_one_line(str(getattr(e, 'orig', None) or e))}")
    except PalletError as e:
        return "broken", Finding("index", PROBLEM, str(e))
    finally:
        engine.dispose()
    if not has_index:
        return "empty", Finding("index", INFO, f"{index} has no models yet")
    return _schema(index, stored)


def _schema(index: str, stored: set[str]) -> tuple[str, Finding]:
    """The index's schema revision, against the one this pallet uses; `index` names the database."""
    head = HEADS[STORE]
    if head in stored:
        return "ready", Finding("index", OK, f"{index}, schema revision {head}")
    problem = too_new(stored, index)
    if problem:
        return "broken", Finding("index", PROBLEM, problem)
    was = ", ".join(sorted(stored)) or "none (from before pallet recorded revisions)"
    return "ready", Finding("index", INFO, f"{index}, schema revision {was}: pallet upgrades it to {head} "
                                           "when it opens the store")


def check_versions(home: Path, db_url: str, progress: Progress | None = None) -> list[Finding]:
    """Each indexed version's folder and files against its manifest; folders and aliases the index
    does not account for."""
    store = Store(home, db_url)
    try:
        rows = store.index.versions()
        known = {(row.name, row.version) for row in rows}
        found = []
        for done, row in enumerate(rows, 1):
            found.append(_version(store, row.name, row.version))
            if progress is not None:
                progress(done, len(rows))
        for (name, version), aliases in store.index.aliases().items():
            for alias in aliases:
                if (name, version) not in known:
                    found.append(Finding("alias", PROBLEM, f"alias {name}@{alias} points to version {version}, "
                                                           f"which is not in the index"))
        found += _orphans(home / "models", known)
        return found
    finally:
        store.index.engine.dispose()


def _version(store: Store, name: str, version: int) -> Finding:
    ref, folder = f"{name}:{version}", store.home / "models" / name / str(version)
    if not folder.is_dir():
        return Finding("files", PROBLEM, f"{ref} is in the index but its folder {folder} is missing", str(folder))
    try:
        stored = store.resolve(ref)
        stored.verify()
    except IntegrityError as e:
        return Finding("files", PROBLEM, str(e), str(folder))
    except OSError as e:
        return Finding("files", PROBLEM, f"{ref}: {e.strerror or e}: {e.filename}", str(folder))
    unlisted = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                      if (p.is_file() or p.is_symlink()) and "__pycache__" not in p.parts
                      and p.relative_to(folder).as_posix() != MANIFEST
                      and p.relative_to(folder).as_posix() not in stored.manifest.files)
    if unlisted:
        return Finding("files", PROBLEM, f"{ref} holds files its manifest does not list: {', '.join(unlisted[:5])}"
                                         + (f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else ""),
                       str(folder))
    return Finding("files", OK, f"{ref}: {len(stored.manifest.files)} files match their sha256", str(folder))


def _orphans(models: Path, known: set[tuple[str, int]]) -> list[Finding]:
    """Folders and files under models/ that no index entry knows."""
    if not models.is_dir():
        return []
    names = {name for name, _ in known}
    found = []
    for entry in sorted(models.iterdir()):
        if entry.name not in names or not entry.is_dir() or entry.is_symlink():
            found.append(Finding("orphan", PROBLEM, f"{entry} is in the store but no index entry knows it "
                                                    "(left by a removal or copied in by hand)", str(entry)))
            continue
        for version in sorted(entry.iterdir()):
            if not version.name.isdigit() or (entry.name, int(version.name)) not in known:
                found.append(Finding("orphan", PROBLEM, f"{version} is in the store but no index entry knows "
                                                        "it (left by a removal or copied in by hand)", str(version)))
    return found


def _strays(home: Path) -> list[Finding]:
    """What pallet did not put at the top of PALLET_HOME, and saves that never finished."""
    found = [Finding("orphan", INFO, f"{entry} is not something pallet keeps in its home", str(entry))
             for entry in sorted(home.iterdir()) if entry.name not in HOME_ENTRIES]
    staging = home / "tmp"
    if staging.is_dir() and not staging.is_symlink():
        found += [Finding("orphan", INFO, f"{entry} is a save in progress, or one that was interrupted "
                                          "(remove it when no save is running)", str(entry))
                  for entry in sorted(staging.iterdir())]
    return found


def check_permissions(home: Path) -> list[Finding]:
    """Artifacts others could change, or their owner cannot read; folders anyone could write to."""
    found = []
    if _mode(home) & stat.S_IWOTH and not _mode(home) & stat.S_ISVTX:
        found.append(Finding("permissions", PROBLEM, f"{home} is writable by anyone: others could replace the "
                                                     "models (chmod o-w)", str(home)))
    for path in _walk(home / "models"):
        mode = _mode(path)
        if stat.S_ISLNK(mode):
            continue
        if stat.S_ISDIR(mode):
            if mode & stat.S_IWOTH:
                found.append(Finding("permissions", PROBLEM, f"folder {path} is writable by anyone: others could "
                                                             "replace what it holds (chmod o-w)", str(path)))
        elif mode & (stat.S_IWGRP | stat.S_IWOTH):
            found.append(Finding("permissions", PROBLEM, f"{path} is writable by group or others (mode "
                                                         f"{stat.filemode(mode)}); stored artifacts are read-only "
                                                         "(chmod go-w)", str(path)))
        elif not mode & stat.S_IRUSR:
            found.append(Finding("permissions", PROBLEM, f"{path} is not readable by its owner (mode "
                                                         f"{stat.filemode(mode)}): it cannot be loaded (chmod u+r)",
                                 str(path)))
    if not found:
        found.append(Finding("permissions", OK, "stored artifacts are read-only to group and others"))
    return found


def check_symlinks(home: Path) -> list[Finding]:
    """pallet writes no symlinks: each one found was put there, and one leading outside is worse."""
    root = home.resolve()
    found = []
    for path in _walk(home):
        if not path.is_symlink():
            continue
        target = Path(os.path.realpath(path))
        if target != root and root not in target.parents:
            found.append(Finding("symlink", PROBLEM, f"{path} is a symlink leading outside the store, to {target}: "
                                                     "a model read through it is not the one stored", str(path)))
        else:
            found.append(Finding("symlink", PROBLEM, f"{path} is a symlink (to {target}); pallet stores real files "
                                                     "only", str(path)))
    if not found:
        found.append(Finding("symlink", OK, "no symlinks in the store"))
    return found


def _walk(top: Path) -> Iterator[Path]:
    """Every folder and file under `top`, without following symlinks."""
    for folder, dirs, files in os.walk(top, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            yield Path(folder) / name


def _mode(path: Path) -> int:
    return os.lstat(path).st_mode


def _one_line(text: str) -> str:
    return " ".join(text.split())
