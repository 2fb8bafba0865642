"""`pallet up`: N pallet servers and nginx in front of them on 127.0.0.1, the scale-out topology on one machine."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from string import Template

from pallet.errors import PalletError
from pallet.net import free_port, wait_ready

TEMPLATE = Path(__file__).parent / "templates" / "nginx.conf"


GRPC_BLOCK = """
    # The Open Inference Protocol over gRPC (HTTP/2), balanced over the replicas' gRPC ports.
    upstream pallet_grpc {
        least_conn;
$servers
        keepalive 64;
    }

    server {
        listen $listen http2;
        client_max_body_size ${max_body_mb}m;

        location / {
            grpc_pass grpc://pallet_grpc;
            grpc_set_header X-Request-ID $$request_id;
            grpc_next_upstream error non_idempotent;
            grpc_next_upstream_tries 3;
            grpc_connect_timeout 2s;
            grpc_read_timeout 60s;
        }
    }
"""


def nginx_config(listen: str, upstreams: list[str], max_body_mb: float = 16, grpc_listen: str | None = None,
                 grpc_upstreams: list[str] = ()) -> str:
    """nginx in front of the replicas: REST on `listen`, and gRPC on `grpc_listen` when given."""
    grpc = ""
    if grpc_listen is not None:
        grpc = Template(GRPC_BLOCK).substitute(listen=grpc_listen, servers=_servers(grpc_upstreams),
                                               max_body_mb=int(max_body_mb))
    return Template(TEMPLATE.read_text()).substitute(listen=listen, upstreams=_servers(upstreams),
                                                     max_body_mb=int(max_body_mb), grpc=grpc)


def _servers(upstreams: list[str]) -> str:
    return "\n".join(f"        server {u} max_fails=1 fail_timeout=5s;" for u in upstreams)


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None)
    if not found:
        raise PalletError("nginx is not installed; install it (apt-get install -y nginx) and run again")
    return found


class LocalCluster:
    """Replicas of `pallet serve` on free ports and nginx on `port`; a context manager."""

    def __init__(self, models: list[str], replicas: int = 2, port: int = 8080, serve_args: list[str] = (),
                 env: dict[str, str] | None = None, grpc_port: int | None = None):
        if replicas < 1:
            raise PalletError(f"--replicas must be 1 or more, got {replicas}")
        self.models, self.replicas, self.port, self.grpc_port = models, replicas, port, grpc_port
        self.grpc_ports: list[int] = []
        self.serve_args, self.env = list(serve_args), {**os.environ, **(env or {})}
        self.servers: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self.nginx: subprocess.Popen | None = None
        self.prefix = Path(tempfile.gettempdir()) / "pallet-up-unstarted"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalCluster:
        binary = nginx_binary()
        _check_free(self.port)
        if self.grpc_port is not None:
            _check_free(self.grpc_port)
        pallet = [sys.executable, "-m", "pallet.cli"]
        self.prefix = Path(tempfile.mkdtemp(prefix="pallet-up-"))
        self.prefix.chmod(0o755)  # nginx's workers run as another user when started by root
        try:
            for i in range(self.replicas):
                port = free_port()
                grpc = []
                if self.grpc_port is not None:
                    self.grpc_ports.append(free_port())
                    grpc = ["--grpc-port", str(self.grpc_ports[-1])]
                log = open(self.prefix / f"replica-{i}.log", "w")  # a file: a full pipe would stall the replica
                proc = subprocess.Popen([*pallet, "serve", *self.models, "--port", str(port), "--no-access-log",
                                         *grpc, *self.serve_args], env=self.env, stdout=log, stderr=log)
                log.close()
                self.servers.append(proc)
                self.ports.append(port)
            for i, (port, proc) in enumerate(zip(self.ports, self.servers)):
                try:
                    wait_ready(f"http://127.0.0.1:{port}", proc)
                except PalletError as e:
                    lines = (self.prefix / f"replica-{i}.log").read_text().strip().splitlines()
                    raise PalletError(f"replica {i} did not start: {lines[-1] if lines else e}") from None
            (self.prefix / "tmp").mkdir(mode=0o777)
            (self.prefix / "tmp").chmod(0o777)
            config = nginx_config(f"127.0.0.1:{self.port}", [f"127.0.0.1:{p}" for p in self.ports],
                                  grpc_listen=None if self.grpc_port is None else f"127.0.0.1:{self.grpc_port}",
                                  grpc_upstreams=[f"127.0.0.1:{p}" for p in self.grpc_ports])
            (self.prefix / "nginx.conf").write_text(config)
            self.nginx = subprocess.Popen([binary, "-p", str(self.prefix), "-c", "nginx.conf", "-g", "daemon off;"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wait_ready(self.url, self.nginx)
        except BaseException:
            self.stop()
            raise
        return self

    def kill_replica(self, index: int) -> None:
        self.servers[index].send_signal(signal.SIGKILL)
        self.servers[index].wait(timeout=10)

    def stop(self) -> None:
        for proc in [self.nginx, *self.servers]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM if proc is self.nginx else signal.SIGINT)
        for proc in [self.nginx, *self.servers]:
            if proc is not None:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _check_free(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise PalletError(f"cannot listen on 127.0.0.1:{port}: {e.strerror}; pick another --port") from None
