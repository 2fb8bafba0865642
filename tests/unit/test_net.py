"""A free port to listen on, and waiting for a server to be ready."""

import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pallet.errors import PalletError
from pallet.net import free_port, wait_ready


def test_a_free_port_can_be_listened_on():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()


def test_a_port_range_keeps_free_ports_inside_it_and_skips_taken_ones(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        monkeypatch.setenv("PALLET_PORT_RANGE", f"{busy}-{busy + 3}")
        ports = {free_port() for _ in range(20)}
    assert ports and busy not in ports and all(busy < port <= busy + 3 for port in ports)
    monkeypatch.setenv("PALLET_PORT_RANGE", f"{busy}-{busy}")
    with socket.socket() as again:
        again.bind(("127.0.0.1", busy))
        again.listen()
        with pytest.raises(PalletError, match="no free port"):
            free_port()


def test_wait_ready_returns_once_the_server_answers():
    class Ready(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/v2/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Ready)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        wait_ready(f"http://127.0.0.1:{httpd.server_port}", alive, seconds=10)
        with pytest.raises(PalletError, match="did not become ready within 300ms"):
            wait_ready(f"http://127.0.0.1:{httpd.server_port}", alive, seconds=0.3, path="/nothing")
    finally:
        alive.kill()
        alive.wait()
        httpd.shutdown()


def test_wait_ready_says_why_a_server_exited():
    gone = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit('port in use')"], stderr=subprocess.PIPE,
                            text=True)
    gone.wait()
    with pytest.raises(PalletError, match="exited before it was ready: port in use"):
        wait_ready(f"http://127.0.0.1:{free_port()}", gone, seconds=10)
