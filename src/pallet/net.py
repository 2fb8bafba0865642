"""Ports and readiness: a free local port to listen on, and waiting for a server to answer."""

from __future__ import annotations

import socket
import subprocess
import time

from pallet.errors import PalletError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the system picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    raise PalletError(f"the server did not become ready within {seconds:g}s")
