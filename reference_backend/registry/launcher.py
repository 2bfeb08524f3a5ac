"""Start the bundled registry as a child process on a free loopback port (tests, the suite), and stop it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import TracebackType


class RegistryProcess:
    """`python -m ollama_conformance.reference_backend.registry --port 0 --root ROOT`; use as a context manager."""

    def __init__(self, root: Path, startup_timeout_s: float = 60.0) -> None:
        self.root = root
        self.startup_timeout_s = startup_timeout_s
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> str:
        cmd = [sys.executable, "-m", "ollama_conformance.reference_backend.registry", "--host", "127.0.0.1",
               "--port", "0", "--root", str(self.root)]  # fmt: skip
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()  # the server prints its URL once it listens, or exits
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the bundled registry did not start (exit status {self.process.poll()})")
        self.url = line
        return line

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the host part of model names that live on this registry."""
        return self.url.removeprefix("http://")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> RegistryProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
