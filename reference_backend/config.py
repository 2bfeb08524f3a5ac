"""ServerConfig: everything the server is configured with, read from Ollama's environment variables and the CLI.

Other parts (the cloud mode) add their own fields here; every field has a default so `ServerConfig()` works.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ollama_conformance.reference_backend.cloud.routing import parse_no_cloud
from ollama_conformance.reference_backend.durations import DurationError, parse_env_keep_alive

DEFAULT_PORT = 11434
VERSION = "0.33.0"  # the Ollama version whose behaviour this server follows (the spec's 0.33.0-rc2)


class ConfigError(ValueError):
    """A bad environment variable or option: reported as one line, exit status 2."""


def default_models_dir() -> Path:
    return Path.home() / ".cache" / "ollama-conformance" / "models"


def parse_host(value: str) -> tuple[str, int]:
    """OLLAMA_HOST as Ollama reads it: `[scheme://]host[:port]`, default 127.0.0.1:11434."""
    value = value.strip()
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.rstrip("/")
    if not value:
        return "127.0.0.1", DEFAULT_PORT
    if value.startswith("["):  # [ipv6]:port
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    host = host or "127.0.0.1"
    try:
        return host, int(port) if port else DEFAULT_PORT
    except ValueError as exc:
        raise ConfigError(f"OLLAMA_HOST: invalid port {port!r}") from exc


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: not an integer: {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    return value


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on", "t", "y"}


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    models_dir: Path = field(default_factory=default_models_dir)
    keep_alive_s: float = 300.0  # OLLAMA_KEEP_ALIVE; negative = forever
    num_parallel: int = 1  # OLLAMA_NUM_PARALLEL: decode slots batched together
    max_queue: int = 512  # OLLAMA_MAX_QUEUE
    context_length: int = 4096  # OLLAMA_CONTEXT_LENGTH (Ollama's default below 23 GiB of VRAM)
    no_cloud: bool = False  # OLLAMA_NO_CLOUD
    cloud_base_url: str = "https://ollama.com"  # OLLAMA_CLOUD_BASE_URL
    api_key: str | None = field(default=None, repr=False)  # OLLAMA_API_KEY (never printed)
    cloud: bool = False  # serve --cloud: behave like ollama.com (Bearer keys, web search/fetch); see cloud.py
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # the keys cloud mode accepts (never printed)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = (
        "auto"  # auto (CPU: gguf, the weights as stored; CUDA: bf16) | gguf | rescored | fp32 | bf16 | int8
    )
    threads: int = 0  # torch threads; 0 = torch's default
    kv_cache: str = "auto"  # auto (slot table: CUDA graph on CUDA, grown with use on CPU) | static | dynamic
    # serve --surfaces: the HTTP surfaces mounted; the others answer 404 as a server without them would
    surfaces: tuple[str, ...] = ("native", "openai", "anthropic")

    @classmethod
    def from_env(cls) -> ServerConfig:
        cfg = cls()
        host_env = os.environ.get("OLLAMA_HOST", "")
        if host_env.strip():
            cfg.host, cfg.port = parse_host(host_env)
        models = os.environ.get("OLLAMA_MODELS", "").strip()
        if models:
            cfg.models_dir = Path(models).expanduser()
        keep = os.environ.get("OLLAMA_KEEP_ALIVE", "").strip()
        if keep:
            try:
                cfg.keep_alive_s = parse_env_keep_alive(keep)
            except DurationError as exc:
                raise ConfigError(f"OLLAMA_KEEP_ALIVE: {exc}") from exc
        cfg.num_parallel = _env_int("OLLAMA_NUM_PARALLEL", 1) or 1
        cfg.max_queue = _env_int("OLLAMA_MAX_QUEUE", 512)
        cfg.context_length = _env_int("OLLAMA_CONTEXT_LENGTH", 4096) or 4096
        cfg.no_cloud = parse_no_cloud(os.environ.get("OLLAMA_NO_CLOUD"))
        cfg.cloud_base_url = os.environ.get("OLLAMA_CLOUD_BASE_URL", "").strip() or cfg.cloud_base_url
        cfg.api_key = os.environ.get("OLLAMA_API_KEY") or None
        return cfg
