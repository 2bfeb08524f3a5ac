"""`python -m ollama_conformance.reference_backend.registry`: run the bundled OCI registry on its own.

Binds first, then prints exactly one line to stdout, the base URL; logging goes to stderr. Model names pull
from and push to it as `HOST:PORT/<namespace>/<model>:<tag>` with `insecure: true` (it speaks plain HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import threading
from pathlib import Path

HELP = "run the bundled OCI registry (the part of the distribution API Ollama's pull and push use)"


def default_root() -> Path:
    configured = os.environ.get("OLLAMA_CONFORMANCE_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache" / "ollama-conformance"
    return base / "registry"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument("--root", help="storage folder (default ~/.cache/ollama-conformance/registry)")


def bind(host: str, port: int) -> tuple[socket.socket, str]:
    """A listening socket and its URL; OSError when the address cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(512)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if family == socket.AF_INET6 else bound_host
    return sock, f"http://{shown}:{bound_port}"


def make_server(root: Path):  # -> uvicorn.Server
    import uvicorn

    from ollama_conformance.reference_backend.registry.server import build_registry

    app = build_registry(root)
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                         server_header=False, timeout_graceful_shutdown=2))  # fmt: skip


def start_in_thread(root: Path, host: str = "127.0.0.1", port: int = 0) -> str:
    """Serves the registry from a daemon thread of this process (for `serve --registry`); its URL."""
    sock, url = bind(host, port)
    server = make_server(root)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), name="registry", daemon=True)
    thread.start()
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ollama_conformance.reference_backend.registry", description=HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"registry: error: --port must be between 0 and 65535, got {args.port}", file=sys.stderr)
        return 2
    root = Path(args.root).expanduser() if args.root else default_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        sock, url = bind(args.host, args.port)
    except OSError as exc:
        print(f"registry: error: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(url, flush=True)
    try:
        asyncio.run(make_server(root).serve(sockets=[sock]))
    except KeyboardInterrupt:
        return 130
    return 0
