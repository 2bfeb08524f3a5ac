"""`ollama-conformance serve` / `python -m reference_backend`: run the reference backend.

Binds first, then prints exactly one line to stdout, the base URL (flushed); all logging goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys

from ollama_conformance.errors import UsageError

HELP = "run the reference backend (an Ollama-compatible server on PyTorch: gemma3:270m, all-minilm:22m)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default from OLLAMA_HOST, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default from OLLAMA_HOST, else 11434; 0 picks a free one)")
    parser.add_argument(
        "--models", help="model store folder (default $OLLAMA_MODELS, else ~/.cache/ollama-conformance/models)"
    )
    parser.add_argument(
        "--num-parallel", type=int, help="decode slots batched together (default $OLLAMA_NUM_PARALLEL or 1)"
    )
    parser.add_argument("--max-queue", type=int, help="requests allowed to wait (default $OLLAMA_MAX_QUEUE or 512)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--precision",
        choices=["auto", "gguf", "rescored", "fp32", "bf16", "int8"],
        default="auto",
        help="CPU weights: auto = gguf, the GGUF's weights as stored (every block type repacked code for code "
        "into torch's int4 kernel, bf16 activations; the LM head an int4 screen whose candidates are recomputed in fp32; "
        "measured against fp32 by `python -m ollama_conformance.reference_backend.faithfulness`); fp32 = the "
        "dequantized weights in fp32 (bit-stable); rescored = fp32 with an int8 LM head rescored in fp32 (fp32's "
        "tokens); int8 = every linear int8 (fbgemm); CUDA: bf16",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--kv-cache",
        choices=["auto", "static", "dynamic"],
        default="auto",
        help="auto: one slot table for all sequences, grown with use on CPU, preallocated and replayed as a CUDA "
        "graph on CUDA; static: the slot table preallocated at full context on CPU too; dynamic: a cache per "
        "request, attention per request",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--registry",
        nargs="?",
        const="127.0.0.1:0",
        metavar="HOST:PORT",
        help="also serve the bundled OCI registry (default 127.0.0.1 on a free port; its URL goes to stderr)",
    )
    parser.add_argument("--registry-root", help="the registry's storage (default ~/.cache/ollama-conformance/registry)")
    parser.add_argument(
        "--surfaces",
        default="native,openai,anthropic",
        help="comma-separated surfaces to serve (native = / and /api/*, openai = /v1/*, anthropic = /v1/messages); "
        "the others answer 404 as a server without them would (default: all)",
    )
    from ollama_conformance.reference_backend.cloud.options import add_cloud_arguments

    add_cloud_arguments(parser)  # --cloud, --api-keys-file, --api-key-env


def build_config(args: argparse.Namespace):  # -> ServerConfig (imported lazily: keeps `--help` light)
    from ollama_conformance.reference_backend.config import ConfigError, ServerConfig

    try:
        config = ServerConfig.from_env()
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    if args.host:
        config.host = args.host
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
        config.port = args.port
    if args.models:
        from pathlib import Path

        config.models_dir = Path(args.models).expanduser()
    if args.num_parallel is not None:
        if args.num_parallel < 1:
            raise UsageError("--num-parallel must be at least 1")
        config.num_parallel = args.num_parallel
    if args.max_queue is not None:
        if args.max_queue < 0:
            raise UsageError("--max-queue must be at least 0")
        config.max_queue = args.max_queue
    config.device = args.device
    config.precision = args.precision
    if args.threads < 0:
        raise UsageError("--threads must be at least 0")
    config.threads = args.threads
    config.kv_cache = args.kv_cache
    surfaces = tuple(
        s.strip() for s in (getattr(args, "surfaces", None) or "native,openai,anthropic").split(",") if s.strip()
    )
    unknown = [s for s in surfaces if s not in ("native", "openai", "anthropic")]
    if unknown or not surfaces:
        raise UsageError(f"--surfaces takes native, openai, anthropic (comma-separated), got {args.surfaces!r}")
    config.surfaces = surfaces
    from ollama_conformance.reference_backend.cloud.mount import apply_cloud_arguments

    try:
        apply_cloud_arguments(args, config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    return config


def set_openmp_spin() -> None:
    """Before torch loads libgomp: how long an idle OpenMP worker spins before it sleeps. A decode step is ~700
    short parallel operators: woken from sleep each time (OMP_WAIT_POLICY=PASSIVE) a step took 27 ms instead of
    18.5; libgomp's default (300 000 spins, milliseconds) costs little on a quiet machine but starves others on a
    busy one (a step 2x slower beside two busy processes). 3 000 spins bridge the gap between two operators and
    little more. OMP_WAIT_POLICY or GOMP_SPINCOUNT set by the user win (the project's tests set PASSIVE: they run
    many processes on two cores)."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "3000")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_openmp_spin()
    config = build_config(args)
    import uvicorn

    from ollama_conformance.reference_backend.app import build_app

    try:
        app = build_app(config)
    except OSError as exc:
        raise UsageError(f"cannot use the model store at {config.models_dir}: {exc}") from exc
    if args.registry:
        start_registry(args.registry, args.registry_root)
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"http://{shown}:{port}", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", access_log=False, timeout_graceful_shutdown=2, lifespan="on", server_header=False
        )
    )
    asyncio.run(server.serve(sockets=[sock]))
    return 0


def start_registry(address: str, root: str | None) -> None:
    """`--registry`: the bundled registry in a thread of this process; its URL is logged (stdout keeps one line)."""
    from pathlib import Path

    from ollama_conformance.reference_backend.registry.cli import default_root, start_in_thread

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--registry must be HOST:PORT, got {address!r}")
    folder = Path(root).expanduser() if root else default_root()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        url = start_in_thread(folder, host.strip("[]"), int(port))
    except OSError as exc:
        raise UsageError(f"cannot start the registry on {address}: {exc.strerror or exc}") from exc
    logging.getLogger("ollama_conformance.reference_backend").warning("registry: %s (storage %s)", url, folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_backend", description=HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        print(f"reference_backend: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
