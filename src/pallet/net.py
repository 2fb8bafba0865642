"""Ports and readiness: a free local port to listen on, and waiting for a server to answer."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time

from pallet.errors import PalletError
from pallet.units import format_duration


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now: the system picks it, or, when
    PALLET_PORT_RANGE is set (e.g. 20000-26999), one at random from that range, so that
    processes given disjoint ranges never hand out the same port."""
    span = os.environ.get("PALLET_PORT_RANGE")
    if not span:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    low, _, high = span.partition("-")
    for port in random.sample(range(int(low), int(high) + 1), min(200, int(high) - int(low) + 1)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise PalletError(f"no free port in PALLET_PORT_RANGE {span}")


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 60, path: str = "/v2/health/ready") -> None:
    """Return once `url + path` answers 200; `PalletError` if `process` exits or time runs out."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().strip() if process.stderr else ""
            raise PalletError(f"the server exited before it was ready: {error}")
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise PalletError(f"the server did not become ready within {format_duration(seconds)}")
