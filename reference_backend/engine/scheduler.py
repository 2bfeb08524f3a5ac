"""Loaded models: loading on first use, keep_alive expiry, unloading, and what /api/ps reports.

As in Ollama, a model is loaded lazily by the first request that needs it, stays loaded for its keep_alive
(request value, else OLLAMA_KEEP_ALIVE, default 5m; negative = forever; 0 = unload once idle), and the timer
runs from the end of its last request. Models are keyed by their weights blob, so a copy shares the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ollama_conformance.reference_backend.config import ServerConfig
from ollama_conformance.reference_backend.engine import compute as compute_thread
from ollama_conformance.reference_backend.engine.embedder import Embedder
from ollama_conformance.reference_backend.engine.generate import TextRunner
from ollama_conformance.reference_backend.engine.model import Gemma3
from ollama_conformance.reference_backend.store import bundled, model_cache
from ollama_conformance.reference_backend.store.local import ModelEntry, Store

log = logging.getLogger("ollama_conformance.reference_backend.scheduler")


@dataclass
class LoadedModel:
    key: str
    entry: ModelEntry
    kind: str  # "gemma3" | "bert"
    runner: TextRunner | None = None
    embedder: Embedder | None = None
    tokenizer: Any = None
    context_length: int = 4096
    size: int = 0
    size_vram: int = 0
    keep_alive_s: float = 300.0
    expires_at: float = math.inf  # wall clock seconds
    refs: int = 0
    loaded_at: float = field(default_factory=time.time)


def release_freed_heap() -> None:
    """Give the C heap's free pages back to the system (glibc keeps them): loading the 262 k-token tokenizer
    parses a 33 MB JSON whose transient structures would otherwise stay resident (about 200 MB)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(count: int = 2) -> None:
    """At most `count` glibc malloc arenas: by default each thread that allocates (the decode loop, request
    threads, the tokenizer's) may get its own, up to 8 per core, and the memory freed in one stays in it."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, count)


def drop_construction_tables(tokenizer: Any) -> None:
    """transformers' GemmaTokenizer keeps the vocabulary and the 514 k merges it built its Rust tokenizer from as
    Python objects (about 150 MB); only its constructor reads them (encoding, decoding and get_vocab go through the
    Rust tokenizer), so they are dropped."""
    for name in ("_vocab", "_merges"):
        if getattr(tokenizer, name, None) is not None:
            setattr(tokenizer, name, None)


def pick_device(config: ServerConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


class Scheduler:
    def __init__(self, config: ServerConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.device = pick_device(config)
        # every torch computation (loading, generation, embeddings) runs on this one thread (see engine.compute)
        self.compute = compute_thread.shared()
        limit_malloc_arenas()
        self.loaded: dict[str, LoadedModel] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.reaper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.reaper = asyncio.get_running_loop().create_task(self._reap())

    async def close(self) -> None:
        if self.reaper:
            self.reaper.cancel()
        for key in list(self.loaded):
            await self._unload(key, force=True)

    def key_of(self, entry: ModelEntry) -> str:
        return entry.model_digest or entry.digest

    async def acquire(self, entry: ModelEntry) -> tuple[LoadedModel, int]:
        """The loaded model (loading it if needed) and the load duration in ns (0 when already loaded)."""
        key = self.key_of(entry)
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            loaded = self.loaded.get(key)
            load_ns = 0
            if loaded is None:
                started = time.perf_counter_ns()
                loaded = await self.compute.run(lambda: self._load(entry))
                load_ns = time.perf_counter_ns() - started
                self.loaded[key] = loaded
            loaded.refs += 1
            loaded.expires_at = math.inf
            return loaded, load_ns

    def release(self, loaded: LoadedModel, keep_alive_s: float | None) -> None:
        """A request is done with the model: start its keep_alive timer once nothing else uses it."""
        loaded.refs = max(0, loaded.refs - 1)
        loaded.keep_alive_s = self.config.keep_alive_s if keep_alive_s is None else keep_alive_s
        if loaded.refs == 0:
            loaded.expires_at = time.time() + loaded.keep_alive_s
            if loaded.keep_alive_s <= 0:
                asyncio.get_running_loop().create_task(self._unload_if_idle(loaded.key))
            elif all(other.refs == 0 for other in self.loaded.values()):
                # idle: what a request allocated for a while (a grammar's compilation, logprobs over the whole
                # vocabulary, a long prompt's activations) goes back to the system, not only to malloc
                asyncio.get_running_loop().create_task(asyncio.to_thread(release_freed_heap))

    def expires_at(self, loaded: LoadedModel) -> float:
        return time.time() + loaded.keep_alive_s if loaded.refs > 0 else loaded.expires_at

    async def unload(self, entry: ModelEntry) -> None:
        """keep_alive 0 with nothing to run: unload now, or as soon as the requests in flight are done."""
        loaded = self.loaded.get(self.key_of(entry))
        if loaded is None:
            return
        loaded.keep_alive_s = 0.0
        if loaded.refs == 0:
            loaded.expires_at = time.time()
            await self._unload(loaded.key)

    def ps(self) -> list[LoadedModel]:
        return sorted(self.loaded.values(), key=lambda m: m.expires_at, reverse=True)

    async def _unload_if_idle(self, key: str) -> None:
        loaded = self.loaded.get(key)
        if loaded is not None and loaded.refs == 0:
            await self._unload(key)

    async def _unload(self, key: str, force: bool = False) -> None:
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            loaded = self.loaded.get(key)
            if loaded is None:
                return
            if not force and (loaded.refs > 0 or loaded.expires_at > time.time()):  # used again while we waited
                return
            del self.loaded[key]
            if loaded.runner is not None:
                await asyncio.to_thread(loaded.runner.stop)
            log.info("unloaded %s", loaded.entry.name.display)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.time()
            for key, loaded in list(self.loaded.items()):
                if loaded.refs == 0 and loaded.expires_at <= now:
                    await self._unload_if_idle(key)

    # --- loading (on the compute thread) --------------------------------------------------------------------
    def _load(self, entry: ModelEntry) -> LoadedModel:
        kind = bundled.kind_of(entry)
        key = self.key_of(entry)
        started = time.monotonic()
        loaded = LoadedModel(key=key, entry=entry, kind=kind, keep_alive_s=self.config.keep_alive_s)
        if self.config.threads > 0:
            torch.set_num_threads(self.config.threads)
        if kind == "bert":
            loaded.embedder = Embedder(bundled.minilm_dir(), self.device)
            release_freed_heap()
            loaded.context_length = loaded.embedder.context_length
            loaded.size = entry.size
        else:
            loaded.runner, loaded.tokenizer = self._load_gemma(entry)
            loaded.context_length = self.config.context_length
            loaded.size = entry.size
        loaded.size_vram = loaded.size if self.device.type == "cuda" else 0
        log.info("loaded %s in %.1f s on %s", entry.name.display, time.monotonic() - started, self.device)
        return loaded

    def _load_gemma(self, entry: ModelEntry) -> tuple[TextRunner, Any]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        digest = entry.model_digest
        if digest is None:
            raise RuntimeError(f"model {entry.name.display} has no weights layer")
        gguf_path = self.store.blob_path(digest)
        folder = model_cache.ensure_engine_layout(model_cache.ensure_converted(gguf_path, digest))
        precision = self.config.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "gguf"
        quantized = precision == "gguf" and self.device.type == "cpu"
        if self.device.type == "cuda":
            dtype, int8, int8_head = torch.bfloat16, False, False
        else:
            # gguf (the CPU default): the GGUF's weights as stored, against bf16 activations (engine.quantized),
            # the LM head an int4 screen with its candidates recomputed in fp32 (ScreenedHead); rescored: fp32
            # weights and an int8 head whose candidates are recomputed in fp32 (fp32's tokens, RescoredHead)
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            int8 = int8_head = precision == "int8"
        if quantized:
            model_cache.ensure_quantized_layout(folder, gguf_path)
        rescored = precision == "rescored"
        with warnings.catch_warnings():  # torch's quantized ops warn that their Python API is deprecated
            warnings.simplefilter("ignore")
            model = Gemma3.from_hf_dir(
                folder,
                dtype=dtype,
                device=self.device,
                int8=int8,
                int8_head=int8_head,
                rescored_head=rescored,
                quantized=quantized,
            )
        # the tokenizer (a 262 k vocabulary) after the weights, not beside them: its parse peak (~300 MB) and the
        # LM head's packing peak do not add up in the process's peak RSS
        release_freed_heap()
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        drop_construction_tables(tokenizer)
        release_freed_heap()
        # auto: one slot table with batched attention (a CUDA graph on CUDA, a cache that grows with use on CPU);
        # static: the same at full context on CPU too; dynamic: a cache per sequence, attention per sequence
        slots = self.config.kv_cache != "dynamic"
        runner = TextRunner(
            model,
            tokenizer,
            num_parallel=self.config.num_parallel,
            max_queue=self.config.max_queue,
            static_context=self.config.context_length if slots else 0,
            use_cuda_graph=self.device.type == "cuda",
            growable=self.config.kv_cache == "auto",
            compute=self.compute,
        )
        return runner, tokenizer
