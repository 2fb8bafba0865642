"""Runs a page's snippets in order, as a reader would: one working folder laid out like a checkout
(examples/ copied, .venv linked), one store of its own, servers started in the background and
stopped when the page ends."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pallet.net import free_port, wait_ready
from tests.docs.snippets import SHELL, Snippet, parse

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEFAULT_TIMEOUT = 180


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _spaced(text: str) -> str:
    """`text` with every run of white space (a wrapped line too) as one space."""
    return " ".join(text.split())


@dataclass
class PageSession:
    page: Path
    folder: Path  # the reader's working folder
    demo_home: Path  # a store `pallet demo` filled, copied for this page
    servers: list[tuple[Snippet, subprocess.Popen, Path]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ROOT / "examples", self.folder / "examples",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (self.folder / ".venv").symlink_to(BIN.parent)
        self.home = self.folder.parent / "pallet-home"
        shutil.copytree(self.demo_home, self.home)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_") or k in
                    ("PALLET_EDGE_PYTHON", "PALLET_TVM_PYTHON", "PALLET_PORT_RANGE")}
        self.env.update(PALLET_HOME=str(self.home), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                        PYTHONDONTWRITEBYTECODE="1", COLUMNS="120", NO_COLOR="1")

    def snippets(self) -> list[Snippet]:
        """The page's blocks, with each documented port replaced by a free one."""
        snippets = parse(self.page)
        ports = {p: free_port() for s in snippets for p in s.ports()}
        for snippet in snippets:
            for documented, free in ports.items():
                snippet.code = re.sub(rf"(?<![\d.]){documented}(?!\d)", str(free), snippet.code)
            snippet.marks = {k: str(ports.get(int(v), v)) if k.endswith("port") else v
                             for k, v in snippet.marks.items()}
        return snippets

    def run(self) -> None:
        try:
            for snippet in self.snippets():
                if "file" in snippet.marks:
                    (self.folder / snippet.marks["file"]).write_text(snippet.code)
                elif snippet.runs and "background" in snippet.marks:
                    self._start(snippet)
                elif snippet.runs:
                    self._run(snippet)
        finally:
            self.stop()

    def _command(self, snippet: Snippet) -> list[str]:
        if snippet.lang in SHELL:
            return ["bash", "-e", "-o", "pipefail", "-c", snippet.code]
        return [str(BIN / "python"), "-c", snippet.code]

    def _run(self, snippet: Snippet) -> None:
        timeout = float(snippet.marks.get("timeout") or DEFAULT_TIMEOUT)
        try:
            done = subprocess.run(self._command(snippet), cwd=self.folder, env=self.env, capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"{snippet.where} ran past {timeout:.0f} s:\n{snippet.code}\n"
                                 f"{_tail(str(e.stdout or ''))}\n{_tail(str(e.stderr or ''))}") from None
        failed = done.returncode != 0
        if failed != ("fails" in snippet.marks):
            expected = "to fail" if "fails" in snippet.marks else "to succeed"
            raise AssertionError(f"{snippet.where} was expected {expected}; exit {done.returncode}\n"
                                 f"--- snippet\n{snippet.code}--- stdout\n{_tail(done.stdout)}\n"
                                 f"--- stderr\n{_tail(done.stderr)}\n{self._server_logs()}")
        if failed and not done.stderr.strip():
            raise AssertionError(f"{snippet.where} failed without saying why on stderr:\n{snippet.code}")
        if failed and _spaced(snippet.marks["expect"]) not in _spaced(done.stdout + "\n" + done.stderr):
            raise AssertionError(f"{snippet.where} failed, but without printing {snippet.marks['expect']!r}\n"
                                 f"--- snippet\n{snippet.code}--- stdout\n{_tail(done.stdout)}\n"
                                 f"--- stderr\n{_tail(done.stderr)}\n{self._server_logs()}")

    def _start(self, snippet: Snippet) -> None:
        log = self.folder.parent / f"server-{snippet.line}.log"
        with log.open("w") as out:
            process = subprocess.Popen(self._command(snippet), cwd=self.folder, env=self.env, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.servers.append((snippet, process, log))
        port = int(snippet.marks["port"])
        try:
            wait_ready(f"http://127.0.0.1:{port}", process, seconds=120, path=snippet.marks.get("ready") or "/v2/health/ready")
        except Exception as e:
            raise AssertionError(f"{snippet.where}: the server did not answer on port {port}: {e}\n"
                                 f"{_tail(log.read_text())}") from None

    def _server_logs(self) -> str:
        return "\n".join(f"--- server of {s.where}\n{_tail(log.read_text(), 20)}" for s, _, log in self.servers)

    def stop(self) -> None:
        for _, process, _ in self.servers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process, _ in self.servers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.servers.clear()
