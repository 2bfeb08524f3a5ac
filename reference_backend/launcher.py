"""Start the reference backend as a child process on a free loopback port, and stop it.

Used by `check`, `bench` and `run` when no target is given, and by the project's tests. The server prints its
URL on one stdout line once it listens; everything else it says goes to stderr, which is passed through so the
first start's model conversion progress stays visible.

`run` starts it in the modes its tests need (`embedded`): on a throw-away model store (the lifecycle tests create,
copy and delete models; the bundled models are hard-linked into it and the converted weights come from the shared
cache, so it costs seconds), in cloud mode with a generated key, with OLLAMA_NO_CLOUD=1, with N decode slots.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
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
        throwaway_store: bool = False,
    ) -> None:
        self.args = list(args or [])
        self.env = dict(env or {})
        self.throwaway_store = throwaway_store  # a temporary OLLAMA_MODELS, removed by stop()
        self.store_dir: Path | None = None
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
        if self.throwaway_store:
            self.store_dir = Path(tempfile.mkdtemp(prefix="ollama-conformance-store-"))
            env["OLLAMA_MODELS"] = str(self.store_dir)
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
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        if self.store_dir is not None:
            shutil.rmtree(self.store_dir, ignore_errors=True)
            self.store_dir = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def __enter__(self) -> ReferenceBackend:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


CLOUD_KEY_ENV = "OLLAMA_CONFORMANCE_EMBEDDED_CLOUD_KEY"  # where the cloud-mode backend reads its generated key


def embedded(mode: str, *, num_parallel: int = 1, quiet: bool = True) -> tuple[ReferenceBackend, str | None]:
    """A reference backend on a throw-away store, in one of `run`'s modes, and the API key it accepts (cloud mode):
    - "local": as `ollama serve` (cloud models routed to ollama.com), `num_parallel` decode slots;
    - "cloud": `serve --cloud`, behaving like https://ollama.com, accepting a key generated here;
    - "no-cloud": as `ollama serve` with OLLAMA_NO_CLOUD=1 (every cloud path refused)."""
    args = ["--num-parallel", str(num_parallel)]
    env: dict[str, str] = {}
    key = None
    if mode == "cloud":
        key = "run-" + secrets.token_urlsafe(24)
        args += ["--cloud", "--api-key-env", CLOUD_KEY_ENV]
        env[CLOUD_KEY_ENV] = key
    elif mode == "no-cloud":
        env["OLLAMA_NO_CLOUD"] = "1"
    elif mode != "local":
        raise ValueError(f"unknown mode {mode!r}")
    return ReferenceBackend(args=args, env=env, quiet=quiet, throwaway_store=True), key
