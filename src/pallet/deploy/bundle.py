"""`pallet build`: model versions, a lock file, pallet itself and a deployment config in one folder,
with the files each deployment target needs. `pallet serve --bundle DIR` serves exactly that."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template

import yaml

import pallet
from pallet.deploy.local import nginx_config
from pallet.deploy.lock import canonical, lock, pallet_roots, render
from pallet.errors import PalletError, first_line
from pallet.settings import ServeConfig, check_file, file_layer, resolve
from pallet.store import ModelVersion, Store
from pallet.store.index import VersionRow

TEMPLATES = Path(__file__).parent / "templates"
CONFIG = "pallet.yaml"
CONFIG_KEYS = ("models", "serve")  # what pallet build writes in a bundle's pallet.yaml
MARKER = ".pallet-bundle"  # pallet build replaces only folders that hold it
IMAGE = "pallet-bundle:latest"  # the image a bundle's Dockerfile makes, as manifests and schedules name it
APP = "/app"  # the bundle's folder in its image (the Dockerfile's WORKDIR)
IMAGE_STORE = f"{APP}/store"  # PALLET_HOME in the image: the bundle's store/ folder


# What pallet.yaml always records about serving: the container, manifests and nginx follow these.
BUNDLE_SETTINGS = ("port", "grpc_port", "workers", "max_batch_size", "max_latency_ms", "max_queue", "max_body_mb",
                   "max_rows")


def bundle_settings(**values) -> ServeConfig:
    """The serve settings a bundle records: the serve defaults, but gRPC on 8001 (the manifests open it)."""
    return ServeConfig(**{"grpc_port": 8001, **values})


@dataclass
class Scale:
    image: str = IMAGE
    replicas: int = 2
    max_replicas: int = 10
    cpu: str = "1"
    memory: str = "1Gi"
    memory_limit: str = "2Gi"


@dataclass
class BuildReport:
    path: Path
    size_bytes: int
    largest: list[tuple[str, int]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    models: list[tuple[str, int]] = field(default_factory=list)   # each model version and its size in bytes


TARGETS = ("docker", "kubernetes", "nginx", "lambda", "lambda-image", "sagemaker")
LAMBDA_ZIP_LIMIT = 250 * 1024 * 1024  # Lambda's unzipped size limit for zip packages and layers


def build(refs: list[str], out: Path, *, store: Store, serve: ServeConfig | None = None,
          scale: Scale | None = None, targets: tuple[str, ...] = ()) -> BuildReport:
    """Write the bundle for `refs` to `out` (replacing an earlier bundle there, never other files).

    Docker, Kubernetes and nginx files are always written; `targets` adds lambda (zip-sized, checked
    against Lambda's 250 MB), lambda-image (a container image) and sagemaker (model.tar.gz + serve).
    """
    serve, scale = serve or bundle_settings(), scale or Scale()
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise PalletError(f"unknown target {', '.join(unknown)}; targets: {', '.join(TARGETS)}")
    if not refs:
        raise PalletError("name at least one model to build, e.g. pallet build digits@production -o bundle")
    versions = [store.resolve(ref) for ref in refs]
    names = [v.ref.name for v in versions]
    if len(set(names)) != len(names):
        raise PalletError(f"a bundle serves one version per model; {', '.join(sorted({n for n in names if names.count(n) > 1}))} "
                          "is named twice")
    out = Path(out).absolute()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise PalletError(f"{out} holds files that are not a pallet bundle; name a new or empty folder")
    staging = out.parent / f".{out.name}.building"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _copy_models(versions, staging / "store")
        packages: dict[str, str] = {}
        for version in versions:
            for name, number in version.manifest.packages.items():
                if packages.setdefault(canonical(name), number) != number:
                    raise PalletError(f"the models were saved with different versions of {name} "
                                      f"({packages[canonical(name)]} and {number}); bundle them separately")
        pinned = lock(pallet_roots(packages))
        pinned.update({k: v for k, v in packages.items() if k in pinned})  # the versions the models were saved with
        (staging / "requirements.lock").write_text(render(pinned))
        _pallet_wheel(staging / "wheels")
        refs_exact = [str(v.ref) for v in versions]
        config = {"models": refs_exact, "serve": _recorded(serve)}
        (staging / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
        (staging / MARKER).write_text("written by pallet build; the next build into this folder replaces it\n")
        values = {**serve.model_dump(), **asdict(scale), "models": ", ".join(refs_exact), "python": _python_tag(),
                  "python_minor": ".".join(_python_tag().split(".")[:2]), "name": _name(names),
                  "mangum": _version("mangum"), "app": APP, "store": IMAGE_STORE}
        upstreams = [f"127.0.0.1:{serve.port + 2 * i}" for i in range(1, scale.replicas + 1)]
        grpc_upstreams = [f"127.0.0.1:{serve.port + 2 * i + 1}" for i in range(1, scale.replicas + 1)]
        (staging / "nginx.conf").write_text(nginx_config("8080", upstreams, serve.max_body_mb, "8081",
                                                         grpc_upstreams))
        wanted = {"lambda"} if {"lambda", "lambda-image"} & set(targets) else set()
        wanted |= {"sagemaker"} if "sagemaker" in targets else set()
        for template in sorted(TEMPLATES.rglob("*")):
            folder = template.relative_to(TEMPLATES).parts[0]
            if folder in ("lambda", "sagemaker") and folder not in wanted:
                continue
            if template.is_file() and template.name != "nginx.conf":
                relative = template.relative_to(TEMPLATES)
                target = staging / (".dockerignore" if relative.name == "dockerignore" else relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(Template(template.read_text()).substitute(values))
                target.chmod(template.stat().st_mode)
        for version in versions:  # a batch CronJob per model, suspended until its input and output are set
            (staging / "kubernetes" / f"batch-{version.ref.name}.yaml").write_text(_batch_cronjob(version, scale))
        if "sagemaker" in targets:
            with tarfile.open(staging / "model.tar.gz", "w:gz") as tar:  # what SageMaker unpacks to /opt/ml/model
                tar.add(staging / CONFIG, CONFIG)
                tar.add(staging / "store", "store")
        if "lambda" in targets:
            size = lambda_size(pinned, staging)
            if size > LAMBDA_ZIP_LIMIT:
                raise PalletError(f"the Lambda package would be {size / 2**20:.0f} MB unzipped, over Lambda's 250 MB "
                                  "limit for zip packages; build --target lambda-image for a container image "
                                  "(up to 10 GB)")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report = _report(out)
    report.models = [(str(v.ref), v.manifest.size_bytes) for v in versions]
    return report


def _copy_models(versions: list[ModelVersion], home: Path) -> None:
    """Each version's folder, checked against its sha256 before and after the copy, indexed in the bundle's store."""
    target = bundle_store(home.parent)
    for version in versions:
        version.verify()
        destination = home / "models" / version.ref.name / str(version.ref.version)
        shutil.copytree(version.path, destination)
        manifest = version.manifest
        target.index.add(VersionRow(manifest.name, manifest.version, manifest.created, manifest.framework,
                                    manifest.runtime, manifest.size_bytes, manifest.metrics, manifest.tags))
        target.resolve(str(version.ref)).verify()
    target.index.engine.dispose()


def _pallet_wheel(folder: Path) -> None:
    """pallet itself as a wheel, built from its source tree (it is not on a package index)."""
    root = Path(pallet.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").exists():
        raise PalletError("pallet build needs pallet's source tree (an install from a clone); none was found")
    existed = (root / "build").exists()
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(folder),
                           str(root)], capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line.strip() for line in done.stderr.splitlines() if "error" in line.lower()] or ["pip failed"]
        raise PalletError(f"building pallet's wheel failed: {errors[0]}")
    if not existed:  # pip may leave setuptools' build/ folder in the source tree; remove only one it made
        shutil.rmtree(root / "build", ignore_errors=True)


def lambda_size(pinned: dict[str, str], bundle: Path) -> int:
    """Unzipped bytes of a Lambda zip package: the locked packages as installed here, the models, pallet."""
    import importlib.metadata as metadata

    total = sum(f.stat().st_size for f in (bundle / "store").rglob("*") if f.is_file())
    total += sum(f.stat().st_size for f in (bundle / "wheels").glob("*.whl"))
    for name in pinned:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in files)
    return total


def bundle_store(bundle: Path, index: Path | None = None) -> Store:
    """The bundle's own store: its model folders, and its SQLite index (or a copy of it at `index`)."""
    home = Path(bundle).absolute() / "store"
    return Store(home, db_url=f"sqlite:///{index or home / 'index.db'}")


def _recorded(serve: ServeConfig) -> dict:
    """The serve: section of pallet.yaml: the settings a bundle always records, and any other one set."""
    names = (set(BUNDLE_SETTINGS) | serve.model_fields_set) - {"models", "share_token"}
    return serve.model_dump(include=names)


def serve_config(bundle: Path, config: dict, **overrides) -> ServeConfig:
    """The `ServeConfig` a bundle serves with, resolved as `pallet serve --bundle` resolves it:
    `overrides` (as flags) over PALLET_* variables over its `pallet.yaml` (`config`) over the defaults."""
    file = file_layer({"models": config["models"], **config["serve"]}, str(Path(bundle) / CONFIG))
    return resolve(overrides, file).config


def app_from_bundle(bundle: Path, writable: str | None = None, preload: bool = False):
    """The ASGI app serving a bundle (what the Lambda handler wraps). With `writable`, the index is
    copied there first: Lambda's file system is read-only but for /tmp. With `preload`, the models
    load now and no lifespan is needed (Lambda runs one request at a time: no batching)."""
    from pallet.serve.app import create_app

    config = load_config(bundle)
    index = None
    if writable:
        Path(writable).mkdir(parents=True, exist_ok=True)
        index = Path(writable) / "index.db"
        shutil.copyfile(Path(bundle) / "store" / "index.db", index)  # each cold start: this bundle's index
    overrides = {"workers": 1, "grpc_port": 0, **({"max_batch_size": 1} if preload else {})}  # 0: no gRPC
    app = create_app(serve_config(bundle, config, **overrides), bundle_store(bundle, index))
    if preload:
        for ref in config["models"]:
            app.state.plane.load(ref)
    return app


COLD_START = """
import json, sys, time
started = time.perf_counter()
sys.path.insert(0, sys.argv[1] + "/lambda")
from handler import handler
event = {"version": "2.0", "routeKey": "$default", "rawPath": "/v2/health/ready", "rawQueryString": "",
         "headers": {"host": "lambda"}, "isBase64Encoded": False,
         "requestContext": {"http": {"method": "GET", "path": "/v2/health/ready", "sourceIp": "127.0.0.1",
                                     "protocol": "HTTP/1.1", "userAgent": "pallet"}, "stage": "$default"}}
answer = handler(event, None)
print(json.dumps({"seconds": time.perf_counter() - started, "status": answer["statusCode"]}))
"""


def cold_start(bundle: Path) -> float:
    """Seconds from a fresh Python process to the Lambda handler's first answer (import and model load)."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as writable:
        done = subprocess.run([sys.executable, "-c", COLD_START, str(bundle)], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PALLET_LAMBDA_TMP": writable})
    if done.returncode != 0:
        raise PalletError(f"the Lambda handler did not start: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["status"] != 200:
        raise PalletError(f"the Lambda handler answered {result['status']} to a readiness check")
    return result["seconds"]


def _version(name: str) -> str:
    import importlib.metadata as metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "0.22.0"


def _batch_cronjob(version: ModelVersion, scale: Scale) -> str:
    from pallet.batch import schedule

    env = {"PALLET_HOME": IMAGE_STORE, "BATCH_INPUT": f"{schedule.MOUNT}/features.parquet",
           "BATCH_OUTPUT": "postgresql://user@db/app?table=predictions", "BATCH_KEY": "id"}
    documents = list(yaml.safe_load_all(schedule.cronjob(
        str(version.ref), "$(BATCH_INPUT)", "$(BATCH_OUTPUT)", cron="0 2 * * *", key=["$(BATCH_KEY)"],
        batch_size=10_000, max_age="26h", name=schedule.job_name(version.ref.name), image=scale.image, env=env)))
    for document in documents:
        document["spec"]["suspend"] = True  # set BATCH_INPUT, BATCH_OUTPUT and BATCH_KEY, then unsuspend
    return ("# The batch job of this model: set BATCH_INPUT, BATCH_OUTPUT and BATCH_KEY, then set suspend: false.\n"
            + yaml.safe_dump_all(documents, sort_keys=False))


def _python_tag() -> str:
    return platform.python_version()


def _name(names: list[str]) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", "-".join(names).lower()).strip("-")[:40].strip("-")
    return f"pallet-{base or 'models'}"


def _report(path: Path) -> BuildReport:
    sizes = {str(f.relative_to(path)): f.stat().st_size for f in path.rglob("*") if f.is_file()}
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
    return BuildReport(path, sum(sizes.values()), largest, sorted(sizes))


def load_config(bundle: Path) -> dict:
    """A bundle's `pallet.yaml`, checked."""
    path = Path(bundle) / CONFIG
    if not path.is_file():
        raise PalletError(f"{bundle} is not a pallet bundle (no {CONFIG}); make one with pallet build")
    config = _read_yaml(path)
    if not isinstance(config, dict) or not isinstance(config.get("models"), list) or not config["models"]:
        raise PalletError(f"{path} must list the models to serve under 'models'")
    unknown = sorted(str(key) for key in config if key not in CONFIG_KEYS)
    if unknown:
        raise PalletError(f"{path}: unknown key(s) {', '.join(unknown)}; it takes {', '.join(CONFIG_KEYS)}")
    config["serve"] = check_file(config.get("serve") or {}, str(path))
    if not all(isinstance(m, str) for m in config["models"]):
        raise PalletError(f"{path}: 'models' must list model references such as digits:1")
    return config


def _read_yaml(path: Path) -> object:
    """A YAML file's contents; a syntax error in one line: where it is and what is wrong."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise PalletError(f"{where}: not valid YAML: {problem or first_line(e)}") from None
