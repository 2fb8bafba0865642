"""Running the app under uvicorn: checks first, then one process or several workers on one port."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvicorn

import pallet
from pallet import threads
from pallet.errors import PalletError
from pallet.rollout.state import Rollout, RolloutState
from pallet.serve.connection import BoundedHttp
from pallet.settings import ENV, ServeConfig
from pallet.store import Store, default_store

if TYPE_CHECKING:
    from pallet.serve.dataplane import DataPlane

METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # where the worker processes of one server share their metrics
ENDPOINTS = [
    ("prototype pages", "/"),
    ("dashboard", "/dashboard"),
    ("V2 / KServe / Triton", "/v2/models/{model}/infer"),
    ("V1 / Vertex AI", "/v1/models/{model}:predict"),
    ("SageMaker / MLflow", "/invocations"),
    ("metrics", "/metrics"),
    ("API docs", "/docs"),
]


def serve(config: ServeConfig, store: Store | None = None, echo: Callable[[str], None] = print,
          reveal_token: bool = False) -> None:
    """Serve `config.models` until interrupted. Mistakes surface here, before any worker starts.
    The share token is printed in the links only with `reveal_token` (one pallet made): a token
    given to it is never written out."""
    store = store or default_store()
    versions, skipped, followed = _servable(config, store)
    _check_port(config.host, config.port)
    if config.grpc_port is not None:
        if config.grpc_port == config.port:
            raise PalletError(f"--grpc-port {config.grpc_port} is the REST port too; give gRPC a port of its own")
        _check_port(config.host, config.grpc_port, "--grpc-port")
    plan = threads.plan_threads(config.workers, config.threads)
    _banner(config, versions, skipped, plan, reveal_token, echo, _rollouts(store, versions), followed)
    warning = exposure_warning(config)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    failed_start = WorkerStartFailed()
    logging.getLogger("uvicorn.error").addFilter(failed_start)
    before, metrics_dir = _export_for_workers(config, store, plan)
    try:
        uvicorn.run("pallet.serve.app:app_from_env", factory=True, host=config.host, port=config.port,
                    workers=config.workers, log_level="warning", access_log=False,
                    http=BoundedHttp.factory(config.max_header_bytes, config.read_timeout),
                    timeout_graceful_shutdown=config.grace_seconds)
    finally:
        logging.getLogger("uvicorn.error").removeFilter(failed_start)
        _restore(before)
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    if failed_start.seen:  # uvicorn's supervisor stops, but returns as if all went well
        raise PalletError("a worker could not start (its reason is above); nothing is served")


def _servable(config: ServeConfig, store: Store) -> tuple[list, list[str], list[str]]:
    """The versions to serve, every file checked against its sha256 before anything starts, the
    references left out (with --skip-unloadable) with their reasons, and the banner's notes on
    references whose name's rollout serves another version than the one they name."""
    if not config.models:
        raise PalletError("name at least one model to serve, e.g. pallet serve digits@production")
    versions, skipped, followed = [], [], []
    resolved = [store.resolve(ref) for ref in config.models]  # a name that does not exist is a mistake, never skipped
    rollouts = _rollouts(store, resolved)
    for ref, version in zip(config.models, resolved):
        rollout = rollouts.get(version.ref.name)
        try:
            if rollout is not None and rollout.stable != str(version.ref.version):  # its rollout decides what answers
                asked = version.ref
                version = store.resolve(f"{version.ref.name}:{rollout.stable}")
                named = f"{ref} was asked" if str(ref) == str(asked) else f"{ref} is {asked}"
                followed.append(f"{named}, but '{asked.name}' has a rollout, which serves {version.ref} "
                                f"(pallet rollout status {asked.name})")
            version.verify()
            if version.ref not in [v.ref for v in versions]:
                versions.append(version)
        except PalletError as error:
            if not config.skip_unloadable:
                raise PalletError(f"cannot serve {ref}: {error} (pallet serve --skip-unloadable serves the others)") \
                    from None
            skipped.append(f"{ref}: {error}")
    if not versions:
        raise PalletError("none of the models can be served: " + "; ".join(skipped))
    return versions, skipped, followed


def _rollouts(store: Store, versions: list) -> dict[str, Rollout]:
    """The rollouts of the names served (the servers route by them), where the database holds any."""
    try:
        state = RolloutState(store.index.engine)
        return {name: r for v in versions for name, r in state.current(v.ref.name).items()}
    except PalletError:  # a database that cannot hold rollouts: the server says so when it starts
        return {}


def _served(version, rollout: Rollout | None) -> str:
    """One served name as the banner shows it: the version that answers, or each version's share."""
    name, shadow = version.ref.name, rollout and rollout.policy.shadow
    copies = f", shadow copies of {shadow.fraction:.0%} to version {shadow.version}" if shadow else ""
    if rollout is None or len(rollout.policy.shares()) == 1:
        return f"{name} (version {version.ref.version}{copies})"
    shares = ", ".join(f"version {v} {share:g}%" for v, share in rollout.policy.shares().items())
    return f"{name} ({rollout.mode}: {shares}{copies})"


def _banner(config: ServeConfig, versions: list, skipped: list[str], plan: threads.ThreadPlan, reveal_token: bool,
            echo: Callable[[str], None], rollouts: dict[str, Rollout] | None = None, notes: list[str] = ()) -> None:
    """What is served, how, and where: the lines `pallet serve` starts with."""
    bases = [f"http://{_url_host(host)}:{config.port}" for host in reachable_hosts(config.host)]
    base = bases[0]
    workers = f" with {config.workers} workers" if config.workers > 1 else ""
    echo(f"pallet {pallet.__version__} serving on {base}{workers}")
    echo("  models    " + ", ".join(_served(v, (rollouts or {}).get(v.ref.name)) for v in versions))
    for line in skipped:
        echo(f"  NOT SERVED {line}")
    for line in notes:
        echo(f"  note      {line}")
    echo(f"  threads   {plan.describe()}")
    batching = (f"up to {config.max_batch_size} rows, waiting at most {config.max_latency_ms:g} ms"
                if config.max_batch_size > 1 else "off")
    echo(f"  batching  {batching}; queue limit {config.max_queue} per model; cache {config.cache or 'off'}")
    token = f"?token={config.share_token if reveal_token else '<share token>'}" if config.share_token else ""
    for label, path in ENDPOINTS:
        echo(f"  {label:<22}{base}{path}{token if path in ('/', '/dashboard') else ''}")
    if config.grpc_port is not None:
        echo(f"  {'gRPC (V2, Triton)':<22}{_url_host(reachable_hosts(config.host)[0])}:{config.grpc_port}")
    for other in bases[1:]:
        echo(f"  {'also reachable at':<22}{other}/{token}")


def exposure_warning(config: ServeConfig) -> str | None:
    """One line when the server listens beyond this machine with no PALLET_API_KEY: its admin endpoints are open."""
    if config.api_key or loopback_only(config.host):
        return None
    return (f"warning: serving on {config.host} without PALLET_API_KEY: anyone who reaches port {config.port} can "
            "load models and change traffic splits; set a key (export PALLET_API_KEY=$(openssl rand -hex 16)) "
            "or bind to 127.0.0.1")


def loopback_only(host: str) -> bool:
    """Whether a server bound to `host` is reachable from this machine alone."""
    import ipaddress

    if host.lower() in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve to any interface
        return False


def _export_for_workers(config: ServeConfig, store: Store, plan: threads.ThreadPlan) -> tuple[dict, str | None]:
    """Set what worker processes rebuild the app from: the same store and settings, the thread plan (before
    any worker starts its native libraries) and, for several workers, a folder to share metrics in. Returns
    the variables as they were, for `_restore`, and the folder when one was made here."""
    values = {"PALLET_HOME": str(store.home), "PALLET_DB_URL": store.db_url, ENV: config.to_env()}
    before = {name: os.environ.get(name) for name in (*values, METRICS_DIR, *threads.THREAD_ENV)}
    os.environ.update(values)
    threads.export(plan)
    metrics_dir = None
    if config.workers > 1 and not os.environ.get(METRICS_DIR):
        metrics_dir = os.environ[METRICS_DIR] = tempfile.mkdtemp(prefix="pallet-metrics-")
    return before, metrics_dir


def _restore(before: dict[str, str | None]) -> None:
    """The environment variables as they were: those that were unset, unset again."""
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def drain_on_sigterm(plane: DataPlane, drain_seconds: float) -> None:
    """Stop like a load balancer wants: on SIGTERM readiness turns false at once while requests
    are still answered for `drain_seconds`; then uvicorn stops accepting, gives in-flight requests
    its grace period, and the process exits 0. A second SIGTERM to a worker skips what is left of
    its drain.

    Installed from the app's lifespan, over uvicorn's own handler, in each worker process."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if threading.current_thread() is not threading.main_thread() or not isinstance(server, uvicorn.Server):
        return  # not run by uvicorn's signal handling (an app embedded in tests or Lambda)
    loop = asyncio.get_running_loop()
    log = logging.getLogger("pallet.serve")

    def stop() -> None:
        server.should_exit = True  # without the signal uvicorn would raise again once stopped

    def drain() -> None:
        log.warning("SIGTERM: not ready from now; answering for %g s more, then in-flight requests "
                    "finish (pallet serve --drain-seconds, --grace-seconds)", drain_seconds)
        loop.call_later(drain_seconds, stop)

    def on_sigterm(signum, frame) -> None:  # only a flag here; the rest runs on the event loop
        if plane.draining:
            loop.call_soon_threadsafe(stop)
            return
        plane.draining = True
        loop.call_soon_threadsafe(drain)

    signal.signal(signal.SIGTERM, on_sigterm)


def configure_access_log(enabled: bool) -> None:
    """JSON lines on stdout, one per request (the middleware writes them)."""
    logger = logging.getLogger("pallet.access")
    logger.propagate = False
    logger.setLevel(logging.INFO if enabled else logging.WARNING)
    if enabled and not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


class StartupRefused(PalletError):
    """A model the server was asked for cannot be served (it fails to load or to warm up)."""


class OneLineRefusal(logging.Filter):
    """uvicorn logs a failed start-up as a traceback, then a line of its own; a `StartupRefused` is
    a user's mistake, so it shows as its message alone."""

    def __init__(self):
        super().__init__()
        self.refused = False

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        marker = f"{StartupRefused.__name__}: "
        if marker in text:
            record.msg, record.args = text.rsplit(marker, 1)[1].strip(), None
            record.exc_info = record.exc_text = None
            self.refused = True
        return not (self.refused and text.startswith("Application startup failed"))


class WorkerStartFailed(logging.Filter):
    """Notices uvicorn's supervisor saying a worker process failed to start."""

    def __init__(self):
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        self.seen = self.seen or "failed to start" in record.getMessage()
        return True


def configure_server_log() -> None:
    """What the server notices (a cache gone and back, SIGTERM, models not served) and rollout changes
    it applies or canary decisions it makes: one line each on stderr."""
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, OneLineRefusal) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(OneLineRefusal())
    for name in ("pallet.serve", "pallet.rollout"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(f"%(asctime)s {name} %(levelname)s %(message)s"))
            logger.addHandler(handler)
            logger.propagate = False


def _check_port(host: str, port: int, option: str = "--port") -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except (OSError, OverflowError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise PalletError(f"cannot listen on {host}:{port}: {reason}; pick another {option} or --host") from None


def reachable_hosts(host: str) -> list[str]:
    """Where a browser reaches a server bound to `host`: every local IPv4 address for 0.0.0.0 or ::."""
    if host not in ("0.0.0.0", "::", ""):
        return [host]
    found = []
    for _, name in socket.if_nameindex():
        address = _interface_address(name)
        if address and address not in found:
            found.append(address)
    primary = _primary_address()
    # The address of the default route first (not a container bridge), loopback last.
    found.sort(key=lambda a: (a != primary, a.startswith("127."), a))
    return found or ["127.0.0.1"]


def _primary_address() -> str | None:
    """The local address of the default route (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
    except OSError:
        return None


def _interface_address(name: str) -> str | None:
    """The IPv4 address of a network interface (Linux), or None."""
    try:
        import fcntl

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
        return socket.inet_ntoa(packed[20:24])
    except (OSError, ImportError):
        return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
