"""What `pallet serve` was asked to do; travels to worker processes as JSON in the environment."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

ENV = "PALLET_SERVE_CONFIG"


@dataclass
class ServeConfig:
    models: list[str] = field(default_factory=list)   # references, e.g. digits@production
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None  # the Open Inference Protocol over gRPC on this port too
    workers: int = 1
    max_body_bytes: int = 16 * 1024 * 1024
    max_rows: int = 100_000
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

    @property
    def api_key(self) -> str | None:
        """Read from the environment only, so it never lands in a file or a process listing."""
        return os.environ.get("PALLET_API_KEY") or None

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeConfig:
        return cls(**json.loads(os.environ.get(ENV, "{}")))
