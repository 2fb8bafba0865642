"""What `pallet serve` was asked to do; travels to worker processes as JSON in the environment."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field

from pallet.errors import PalletError

ENV = "PALLET_SERVE_CONFIG"
# What a browser sends in Origin: scheme://host[:port], no path; or * for any origin.
ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


@dataclass
class ServeConfig:
    models: list[str] = field(default_factory=list)   # references, e.g. digits@production
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None  # the Open Inference Protocol over gRPC on this port too
    workers: int = 1
    max_body_bytes: int = 16 * 1024 * 1024
    max_rows: int = 100_000
    max_elements: int = 10_000_000   # values in all of one request's input tensors
    max_header_bytes: int = 64 * 1024  # request line and headers; past it, 431
    large_requests: int = 4          # bodies over 256 KiB read, decoded and answered at once (memory)
    read_timeout_seconds: float = 30.0  # to send a request's headers, and then its body; past it, 408
    max_batch_size: int = 32      # rows per predict call when batching; 1 turns batching off
    max_latency_ms: float = 5.0   # longest a request waits for others to share its batch
    max_queue: int = 1024         # requests waiting or running per model before 503 + Retry-After
    cache: str | None = None      # None, "memory[:N]" or "redis://host:port/db"
    cache_ttl_seconds: float = 3600
    threads: int | None = None    # native threads per worker; None: cores // workers
    auth: bool = False          # require the API key on every endpoint, not only admin ones
    share_token: str | None = None  # required in the URL (?token=), a cookie or X-Share-Token, but by probes
    ui_dir: str | None = None       # a team's own static page, served at / in place of the index
    access_log: bool = True
    skip_unloadable: bool = False   # serve the models that load; report the others not ready
    rollout_poll_seconds: float = 1.0  # how often the rollout state is read from the store
    drain_seconds: float = 0.0    # after SIGTERM: not ready, still answering, for this long
    grace_seconds: float = 30.0   # then: in-flight requests get this long to finish
    cors_origins: list[str] = field(default_factory=list)  # browser origins allowed to call; none: CORS off

    def __post_init__(self):
        self.cors_origins = [check_origin(origin) for origin in self.cors_origins]

    @property
    def api_key(self) -> str | None:
        """Read from the environment only, so it never lands in a file or a process listing."""
        return os.environ.get("PALLET_API_KEY") or None

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeConfig:
        return cls(**json.loads(os.environ.get(ENV, "{}")))


def check_origin(origin: str) -> str:
    """`origin` as browsers send it (scheme://host[:port]), or `PalletError` saying what is wrong."""
    origin = origin.strip().rstrip("/")
    if origin != "*" and not ORIGIN.fullmatch(origin):
        raise PalletError(f"--cors-origin {origin!r} is not an origin: write scheme://host[:port], "
                          "e.g. https://app.example.com or http://localhost:3000 (or * for any)")
    return origin
