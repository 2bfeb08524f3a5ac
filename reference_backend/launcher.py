"""Start the reference backend as a child process on a free loopback port, and stop it.

Used by `check`, `bench` and `run` when no target is given, and by the project's tests. The server prints its
URL on one stdout line once it listens; everything else it says goes to stderr, which is passed through so the
first start's model conversion progress stays visible.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from types import TracebackType

from ollama_conformance.errors import TargetError


class ReferenceBackend:
    """A running `python -m reference_backend` process. Use as a context manager."""

    def __init__(
        self,
        *,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 600.0,
        quiet: bool = False,
    ) -> None:
        self.args = list(args or [])
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.quiet = quiet
        self.url: str = ""
        self.process: subprocess.Popen[str] | None = None
        self._tail: deque[str] = deque(maxlen=40)

    def start(self) -> str:
        cmd = [
            sys.executable,
            "-m",
            "ollama_conformance.reference_backend",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *self.args,
        ]
        env = {**os.environ, **self.env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=None if not self.quiet else subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        found = threading.Event()

        def read_stdout() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                line = line.rstrip("\n")
                self._tail.append(line)
                if not found.is_set() and line.startswith(("http://", "https://")):
                    self.url = line.strip()
                    found.set()
            found.set()  # EOF: the process ended

        threading.Thread(target=read_stdout, name="reference-backend-stdout", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not found.wait(timeout=0.5):
            if time.monotonic() > deadline:
                self.stop()
                raise TargetError(f"reference backend did not start within {self.startup_timeout_s:.0f} s")
        if not self.url:
            code = self.process.wait(timeout=10)
            tail = "\n".join(self._tail)
            raise TargetError(f"reference backend exited with status {code} before listening\n{tail}")
        return self.url

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout_s)

    def __enter__(self) -> ReferenceBackend:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
