"""Gemma 3 text decoder written for a serving loop (gpt-fast style): per-sequence KV caches, batched decode.

Transformers' model is used only to load and convert weights; its forward does not batch sequences that sit at
different positions without padding, and its per-step Python overhead is large at this size. This module holds
the weights as plain tensors, fuses q/k/v and gate/up, and optionally keeps every linear layer (the 168 M tied
LM head above all, which dominates a decode step on CPU) as int8 (fbgemm dynamic quantization), or only the LM
head as int8 whose candidates are rescored in fp32 (RescoredHead: fp32's tokens at a quarter of the head's bytes).
The forward matches transformers' Gemma3ForCausalLM (checked in tests/reference_backend/test_gemma3_engine.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import math
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ollama_conformance.reference_backend.engine import quantized as quant
from ollama_conformance.reference_backend.store.model_cache import HEAD_FILE, QUANTIZED_FILE, quantize_rows_int8


@dataclass(frozen=True)
class Gemma3Config:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    query_pre_attn_scalar: float
    sliding_window: int
    layer_is_sliding: tuple[bool, ...]
    rope_theta_global: float
    rope_theta_local: float
    max_position_embeddings: int
    final_logit_softcapping: float | None
    attn_logit_softcapping: float | None

    @classmethod
    def from_hf_dir(cls, path: Path) -> Gemma3Config:
        raw = json.loads((path / "config.json").read_text())
        raw = raw.get("text_config", raw)
        layers = int(raw["num_hidden_layers"])
        layer_types = raw.get("layer_types") or [
            "full_attention" if (i + 1) % int(raw.get("sliding_window_pattern", 6)) == 0 else "sliding_attention"
            for i in range(layers)
        ]
        rope = raw.get("rope_parameters") or {}
        theta_global = float((rope.get("full_attention") or {}).get("rope_theta", raw.get("rope_theta", 1_000_000.0)))
        theta_local = float(
            (rope.get("sliding_attention") or {}).get("rope_theta", raw.get("rope_local_base_freq", 10_000.0))
        )
        return cls(
            vocab_size=int(raw["vocab_size"]),
            hidden_size=int(raw["hidden_size"]),
            intermediate_size=int(raw["intermediate_size"]),
            num_layers=layers,
            num_heads=int(raw["num_attention_heads"]),
            num_kv_heads=int(raw["num_key_value_heads"]),
            head_dim=int(raw["head_dim"]),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            query_pre_attn_scalar=float(raw.get("query_pre_attn_scalar", raw["head_dim"])),
            sliding_window=int(raw.get("sliding_window") or 512),
            layer_is_sliding=tuple(t == "sliding_attention" for t in layer_types),
            rope_theta_global=theta_global,
            rope_theta_local=theta_local,
            max_position_embeddings=int(raw.get("max_position_embeddings", 32768)),
            final_logit_softcapping=raw.get("final_logit_softcapping"),
            attn_logit_softcapping=raw.get("attn_logit_softcapping"),
        )


@functools.cache
def fbgemm_full_range() -> bool:
    """Whether fbgemm may quantize activations to the full 8 bits (reduce_range=False). Without AVX512-VNNI its
    u8 x s8 kernel sums pairs into saturating int16, so it needs 7-bit activations; with VNNI it does not, and
    the extra bit roughly halves the activation rounding error (greedy output tracks fp32 much longer)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and "avx512_vnni" in line.split() for line in cpuinfo.splitlines())


class Linear:
    """y = x @ W.T, with W in the compute dtype, or int8: fbgemm's dynamically quantized linear (int8 weights with
    per-channel scales, activations quantized per call to 8 bits, as llama.cpp quantizes them to Q8 for its
    Q4_K dot products; VNNI kernels on x86). A decode step is memory-bound, and int8 reads a quarter of fp32's
    bytes. (Weight-only int8 with bf16 activations, aten._weight_int8pack_mm, is slower than fbgemm here; the
    default's LM head uses it, RescoredHead, where the activations' precision bounds the error.)

    fbgemm picks one activation scale for the whole input tensor, so a sequence's logits would depend on the
    other sequences batched with it. Each row is therefore scaled to max |x| = 1 and two constant columns (+1,
    -1; their weights are zero) pin the tensor's range to [-1, 1]: every row is quantized on the same grid
    whatever the batch holds, and batched decode gives each sequence what it gets alone."""

    def __init__(self, weight: torch.Tensor, int8: bool) -> None:
        self.out_features = weight.shape[0]
        self.int8 = int8 and weight.device.type == "cpu"
        self.weight = weight if weight.is_contiguous() else weight.contiguous()  # a memory-mapped weight stays so
        self.packed: Any = None
        self.reduce_range = not fbgemm_full_range()
        if self.int8:
            # zero weights for the two range-pinning columns are appended (padded as int8: less RAM)
            self._pack(*quantize_rows_int8(weight.float()))

    @classmethod
    def from_int8(cls, codes: torch.Tensor, scales: torch.Tensor) -> Linear:
        """An int8 layer from codes already quantized and padded by quantize_rows_int8 (the converted cache's
        LM head): no fp32 copy of the weight is ever read."""
        linear = cls(torch.empty(0, 0), int8=False)
        linear.out_features = codes.shape[0]
        linear.int8 = True
        linear._pack(codes, scales)
        return linear

    def _pack(self, codes: torch.Tensor, scales: torch.Tensor) -> None:
        zero_points = torch.zeros(codes.shape[0], dtype=torch.long)
        quantized = torch._make_per_channel_quantized_tensor(codes, scales.double(), zero_points, 0)
        self.packed = torch.ops.quantized.linear_prepack(quantized, None)
        self.weight = torch.empty(0)  # the packed copy is the only one kept

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8:
            shape = x.shape
            flat = x.reshape(-1, shape[-1]).float()
            row_max = flat.abs().amax(dim=1, keepdim=True).clamp(min=1e-30)
            pins = torch.tensor([1.0, -1.0]).expand(flat.shape[0], 2)
            pinned = torch.cat([flat / row_max, pins], dim=1)
            y = torch.ops.quantized.linear_dynamic(pinned, self.packed, self.reduce_range) * row_max
            return y.reshape(*shape[:-1], self.out_features).to(x.dtype)
        return F.linear(x, self.weight)


def in_private_file_mapping(tensor: torch.Tensor) -> bool:
    """Whether a tensor lies in a private file mapping (a memory-mapped safetensors file): its pages, only ever
    read, can be dropped from this process and load again from the file if touched. Anonymous memory cannot
    (its pages would be lost)."""
    if tensor.device.type != "cpu" or tensor.numel() == 0:
        return False
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    try:
        with open("/proc/self/maps", encoding="ascii") as maps:
            for line in maps:
                fields = line.split()
                low, high = (int(bound, 16) for bound in fields[0].split("-"))
                if low <= start and end <= high:
                    return len(fields) >= 6 and fields[4] != "0" and fields[1].endswith("p")
    except OSError:
        return False
    return False


class FileRows:
    """Rows of a 2-D tensor that lies in a file mapping, read with pread from the file instead of through the
    mapping: the page cache holds the file in large folios (ext4 on this kernel), and a fault on a mapped row
    maps the whole folio, about 0.5 MB of the process's RSS for a 2.5 KB row (512 scattered rows map ~280 MB).
    Read rows cost no RSS: only the copy they are read into."""

    def __init__(self, tensor: torch.Tensor, path: str, offset: int) -> None:
        self.rows, self.cols = tensor.shape
        self.dtype = tensor.dtype
        self.row_bytes = self.cols * tensor.element_size()
        self.offset = offset  # the file offset of row 0
        self.fd = os.open(path, os.O_RDONLY)

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self.fd)

    @classmethod
    def of(cls, tensor: torch.Tensor) -> FileRows | None:
        """The reader of a contiguous CPU tensor that lies in a file mapping (found in /proc/self/maps), else None."""
        if tensor.device.type != "cpu" or tensor.dim() != 2 or not tensor.is_contiguous() or tensor.numel() == 0:
            return None
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    fields = line.split(maxsplit=5)
                    low, high = (int(bound, 16) for bound in fields[0].split("-"))
                    if low <= start and end <= high:
                        path = fields[5].strip() if len(fields) == 6 else ""
                        if fields[4] == "0" or not path.startswith("/") or path.endswith(" (deleted)"):
                            return None
                        return cls(tensor, path, int(fields[2], 16) + start - low)
        except OSError:  # no /proc, or the file is gone: read through the mapping
            return None
        return None

    def read(self, ids: torch.Tensor) -> torch.Tensor:
        """The rows at `ids` (any order, repeats allowed) -> [len(ids), cols], exactly the tensor's rows."""
        out = torch.empty(ids.numel(), self.cols, dtype=self.dtype)
        buffer = memoryview(out.view(torch.uint8).numpy()).cast("B")
        size = self.row_bytes
        for i, row in enumerate(ids.tolist()):
            if not 0 <= row < self.rows:
                raise IndexError(f"row {row} out of range for {self.rows} rows")
            if os.preadv(self.fd, [buffer[i * size : (i + 1) * size]], self.offset + row * size) != size:
                raise OSError(f"short read of row {row} from the weights file")
        return out

    def read_range(self, start: int, stop: int, buffer: torch.Tensor | None = None) -> torch.Tensor:
        """Rows [start, stop) in one read, into the first rows of `buffer` when given (one buffer reused for a
        pass over the whole matrix: a fresh tensor per chunk was not given back to the system by malloc)."""
        stop = min(stop, self.rows)
        count = max(stop - start, 0)
        out = torch.empty(count, self.cols, dtype=self.dtype) if buffer is None else buffer[:count]
        if out.numel():
            buffer = memoryview(out.view(torch.uint8).numpy()).cast("B")
            if os.preadv(self.fd, [buffer], self.offset + start * self.row_bytes) != len(buffer):
                raise OSError(f"short read of rows {start}..{stop} from the weights file")
        return out


def drop_pages(tensor: torch.Tensor) -> None:
    """madvise(MADV_DONTNEED) on the pages wholly inside a tensor that in_private_file_mapping: they leave the
    RSS (neighbouring tensors' pages are not touched)."""
    start = tensor.data_ptr() + (-tensor.data_ptr()) % mmap.PAGESIZE
    end = tensor.data_ptr() + tensor.numel() * tensor.element_size()
    end -= end % mmap.PAGESIZE
    if end > start:
        ctypes.CDLL(None).madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4)


class RescoredHead:
    """The LM head as int8 weights (per-row scales) against bf16 activations (aten._weight_int8pack_mm: a quarter
    of fp32's bytes per step), with a proven bound on every logit's error, and fp32 on demand for the tokens that
    matter: Gemma3.settle recomputes in fp32 every token whose logit can rank among those the sampler draws from,
    so the drawn token and its probability are the fp32 head's (a few rows per greedy step, a few hundred for a
    top-40 draw, read from the tied embedding; the fp32 matrix is never read whole).

    The bound, per row i of the effective weights w^_i = codes_i * bf16(scale_i), for an fp32 input x:
    |x.w_i - kernel(x)_i| <= ||x|| ||w_i - w^_i|| + ||x - bf16(x)|| ||w^_i|| (Cauchy-Schwarz) + |y_i| 2^-8 (the
    bf16 result's rounding, with margin) + 1e-4 ||x|| ||w^_i|| (fp32 sums of 640 products: ~n 2^-24 at most)."""

    CHUNK = 32768  # rows quantized at a time: the fp32 rows read for one chunk stay small
    # embedding rows looked up through the mapping before its resident pages are handed back (one madvise of
    # ~0.02 ms when few are mapped, ~0.5 ms for hundreds): each maps ~0.5 MB, so at most ~16 MB stay resident
    RELEASE_ROWS = 32
    # more rows than this are read in whole chunks of READ_CHUNK (4 k rows: a 10 MB buffer) rather than one by one
    GATHER_ROWS = 4096
    READ_CHUNK = 4096

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight  # fp32 [vocab, hidden], the memory-mapped tied embedding
        self.out_features = weight.shape[0]
        self.mapped = in_private_file_mapping(weight)
        codes, scales, residual_norms, norms = [], [], [], []
        for start in range(0, weight.shape[0], self.CHUNK):
            rows = weight[start : start + self.CHUNK].float()
            scale = (rows.abs().amax(dim=1) / 127.0).clamp(min=1e-12).to(torch.bfloat16)
            code = torch.round(rows / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
            effective = code.float() * scale.float()[:, None]
            codes.append(code)
            scales.append(scale)
            residual_norms.append((rows - effective).norm(dim=1))
            norms.append(effective.norm(dim=1))
            if self.mapped:  # read once to quantize: not kept resident
                drop_pages(weight[start : start + self.CHUNK])
        self.codes = torch.cat(codes)
        self.scales = torch.cat(scales)
        self.residual_norms = torch.cat(residual_norms)
        self.norms = torch.cat(norms)
        self.rows_since_release = 0

    def __call__(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h: [B, hidden] fp32 -> (approximate logits [B, vocab], each one's error bound [B, vocab])."""
        rounded = h.to(torch.bfloat16)
        values = torch.ops.aten._weight_int8pack_mm(rounded, self.codes, self.scales).float()
        size = h.norm(dim=-1, keepdim=True)
        rounding = (h - rounded.float()).norm(dim=-1, keepdim=True)
        bound = size * self.residual_norms + (rounding + 1e-4 * size) * self.norms + values.abs() * 2.0**-8
        return values, bound

    def file_rows(self) -> FileRows | None:
        """The tied embedding's rows read from its file (FileRows), when it is memory-mapped from one."""
        if not hasattr(self, "_file_rows"):
            self._file_rows = FileRows.of(self.weight) if self.mapped else None
        return self._file_rows

    def exact(self, h: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 logits of one row h [hidden] at token ids (all tokens when None). The rows are read from the
        file (FileRows: no page of the mapping becomes resident), many of them (logprobs, a large top_k over a
        flat distribution) chunk by chunk into a buffer of READ_CHUNK rows; without a file, through the tensor,
        with its pages handed back. Each call also counts one looked-up token embedding (a decode step's)."""
        reader = self.file_rows()
        self.rows_read(1)
        if ids is not None and ids.numel() <= self.GATHER_ROWS:
            rows = reader.read(ids) if reader is not None else self.weight[ids]
            return F.linear(h, rows)
        parts = []
        buffer = torch.empty(self.READ_CHUNK, self.weight.shape[1], dtype=self.weight.dtype) if reader else None
        for start in range(0, self.out_features, self.READ_CHUNK):
            if reader is not None:
                rows = reader.read_range(start, start + self.READ_CHUNK, buffer)
            else:
                rows = self.weight[start : start + self.READ_CHUNK]
            parts.append(F.linear(h, rows))
            if self.mapped and reader is None:
                drop_pages(rows)
        logits = torch.cat(parts, dim=-1)
        return logits if ids is None else logits[ids]

    def rows_read(self, count: int) -> None:
        """Rows of the mapped tied embedding were looked up as token embeddings (the forward's F.embedding: a
        prompt chunk's, or, counted by exact, a decode step's): once RELEASE_ROWS have piled up their pages
        are handed back (a fault maps the whole page-cache folio around a row, ~0.5 MB, see FileRows)."""
        self.rows_since_release += count
        if self.mapped and self.rows_since_release > self.RELEASE_ROWS:
            drop_pages(self.weight)
            self.rows_since_release = 0


class ScreenedHead(RescoredHead):
    """The LM head as the int4 screen of engine.quantized (a quarter of int8's bytes: the head is most of what a
    decode step reads), its candidates recomputed in fp32 by RescoredHead.settle and .exact as for the int8 head.
    Int4 rounding is too coarse for a useful proven bound (Cauchy-Schwarz would keep thousands of rows), so each
    logit's error is estimated instead: MARGIN standard deviations of the error of a row whose rounding is
    unrelated to the input's direction (||x|| ||w - w^|| / sqrt(n)), plus the bf16 input's and output's rounding.
    What that gives is measured, not assumed: `bench --faithfulness` (top-1 agreement and KL against fp32) and
    the tests, which count the logits outside their estimate."""

    MARGIN = 8.0

    def __init__(self, weight: torch.Tensor, tensors: dict[str, torch.Tensor]) -> None:
        self.weight = weight
        self.out_features = weight.shape[0]
        self.mapped = in_private_file_mapping(weight)
        self.screen = quant.Int4Linear(tensors["head.packed"], tensors["head.scale_zeros"])
        scale = self.MARGIN / math.sqrt(weight.shape[1])
        self.residual_margins = tensors["head.residual_norms"] * scale
        self.norm_margins = tensors["head.norms"] * scale
        self.rows_since_release = 0

    def __call__(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rounded = h.to(torch.bfloat16)
        values = self.screen(rounded).float()
        size = h.norm(dim=-1, keepdim=True)
        rounding = (h - rounded.float()).norm(dim=-1, keepdim=True)
        # in place over one vocabulary-sized tensor: 4 passes instead of 7 (1.3 ms of a 6.6 ms head at one row)
        bound = values.abs().mul_(2.0**-8).addcmul_(size, self.residual_margins).addcmul_(rounding, self.norm_margins)
        return values, bound


Projection = Linear | quant.QuantLinear


@dataclass
class Layer:
    input_norm: torch.Tensor
    qkv: Projection
    q_norm: torch.Tensor
    k_norm: torch.Tensor
    o: Projection
    post_attn_norm: torch.Tensor
    pre_ff_norm: torch.Tensor
    gate_up: Projection
    down: Projection
    post_ff_norm: torch.Tensor
    sliding: bool
    qk_norm: torch.Tensor | None = None  # [H + KVH, D]: q_norm (times a folded score scale) per query head, k_norm


# Attention scores are computed over a whole number of KEY_BLOCKs of keys (those after a row's position are masked):
# the BLAS kernel that multiplies a query by its keys rounds a column differently depending on how many columns it
# is given (checked: not for multiples of 16 here), and a row must get the same bits however long the table it sits
# in. Every KV capacity is therefore a multiple of KEY_BLOCK.
KEY_BLOCK = 64


def key_span(length: int) -> int:
    """The keys a row at `length` - 1 attends over: `length` rounded up to a whole KEY_BLOCK."""
    return -(-length // KEY_BLOCK) * KEY_BLOCK


class KVCache:
    """One sequence's keys and values for every layer: [layers, kv_heads, capacity, head_dim], grown on demand."""

    def __init__(self, cfg: Gemma3Config, capacity: int, dtype: torch.dtype, device: torch.device) -> None:
        self.cfg = cfg
        self.dtype = dtype
        self.device = device
        self.length = 0
        self.fixed = False
        shape = (cfg.num_layers, cfg.num_kv_heads, key_span(max(capacity, 1)), cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @classmethod
    def over(cls, cfg: Gemma3Config, k: torch.Tensor, v: torch.Tensor, length: int) -> KVCache:
        """A cache over existing memory (a slot of StaticSlots): prefill writes straight into it; it never grows."""
        cache = cls.__new__(cls)
        cache.cfg, cache.dtype, cache.device = cfg, k.dtype, k.device
        cache.k, cache.v, cache.length, cache.fixed = k, v, length, True
        return cache

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def reserve(self, length: int) -> None:
        if length <= self.capacity:
            return
        if self.fixed:  # memory of a slot: StaticSlots.cache_of reserved its room
            raise ValueError(f"sequence of {length} tokens does not fit its {self.capacity}-token slot")
        new_cap = key_span(max(length, self.capacity * 2))
        pad = new_cap - self.capacity
        shape = (self.cfg.num_layers, self.cfg.num_kv_heads, pad, self.cfg.head_dim)
        self.k = torch.cat([self.k, torch.zeros(shape, dtype=self.dtype, device=self.device)], dim=2)
        self.v = torch.cat([self.v, torch.zeros(shape, dtype=self.dtype, device=self.device)], dim=2)

    def truncate(self, length: int) -> None:
        self.length = min(self.length, length)


def _rms_norm(x: torch.Tensor, weight_plus_one: torch.Tensor, eps: float) -> torch.Tensor:
    """Gemma's RMSNorm, computed in fp32 (one fused op: a decode step has 108 of them)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight_plus_one, eps)
    return F.rms_norm(x.float(), (x.shape[-1],), weight_plus_one, eps).to(x.dtype)


class Gemma3:
    """The decoder. `prefill` runs one sequence's new tokens; `decode` runs one token for each of B sequences."""

    def __init__(
        self,
        cfg: Gemma3Config,
        state: dict[str, torch.Tensor],
        *,
        dtype: torch.dtype,
        device: torch.device,
        int8: bool,
        int8_head: bool | None = None,
        head: tuple[torch.Tensor, torch.Tensor] | None = None,
        rescored_head: bool = False,
        quantized: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """`state`: transformers' tensor names, plus optionally the fused `layers.N.self_attn.qkv.weight` and
        `layers.N.mlp.gate_up.weight` of the converted cache's engine layout (then no fused copy is made: fp32
        weights on CPU stay the memory-mapped file pages). `head`: the LM head already in int8 (codes, scales).
        `rescored_head` (CPU, fp32, tied head): the RescoredHead; logits are then approximate, and the last call's
        `head_rows` say how to make them exact (see RescoredHead.settle). `quantized` (CPU): the GGUF's weights
        as stored (engine.quantized: the tensors of its QUANTIZED_FILE), run against bf16 activations, with the
        ScreenedHead; the fp32 weights in `state` are then never read, except the embedding's looked-up rows."""
        self.cfg = cfg
        self.dtype = dtype
        self.device = device
        self.int8 = int8
        int8_head = int8 if int8_head is None else int8_head

        def get(name: str) -> torch.Tensor:
            for prefix in ("", "model.", "model.language_model."):
                if prefix + name in state:
                    return state[prefix + name].to(device=device, dtype=dtype)
            raise KeyError(name)

        def fused(name: str, parts: list[str]) -> torch.Tensor:
            if name in state:
                return get(name)
            return torch.cat([get(part) for part in parts])

        def norm(name: str) -> torch.Tensor:
            return (1.0 + get(name).float()).contiguous()  # Gemma's RMSNorm scales by (1 + w), computed in fp32

        # On CPU a memory-mapped embedding: only the rows looked up become resident (the head reads its own copy).
        self.embed = get("embed_tokens.weight")
        self.embed_scale = torch.tensor(math.sqrt(cfg.hidden_size), dtype=dtype).item()
        lm_head = state.get("lm_head.weight")
        self.rescored: RescoredHead | None = None
        # bf16 activations (the quantized default) turn the last bits that a batched attention kernel's blocking
        # changes into other tokens: each prompt row then attends on its own, exactly as decode and as a row
        # prefilled alone after a cached prefix does (same request, same seed: same output).
        self.row_invariant_attention = quantized is not None
        self.head_rows: tuple[torch.Tensor, torch.Tensor] | None = None  # (normed hidden, bounds) of the last logits
        if quantized is not None:
            self.rescored = ScreenedHead(lm_head if lm_head is not None else self.embed, quantized)
            self.lm_head = Linear(torch.empty(0, 0), False)  # unused: the screened head computes the logits
        elif rescored_head and device.type == "cpu" and dtype == torch.float32 and not int8_head:
            self.rescored = RescoredHead(lm_head if lm_head is not None else self.embed)
            self.lm_head = Linear(torch.empty(0, 0), False)  # unused: the rescored head computes the logits
        elif int8_head and head is not None and device.type == "cpu":
            self.lm_head = Linear.from_int8(*head)
        else:
            self.lm_head = Linear(
                lm_head.to(device=device, dtype=dtype) if lm_head is not None else self.embed, int8_head
            )
        self.final_norm = norm("norm.weight")
        self.layers: list[Layer] = []
        for i in range(cfg.num_layers):
            p = f"layers.{i}."
            attn, mlp = p + "self_attn.", p + "mlp."
            projections: dict[str, Projection]
            if quantized is not None:
                projections = {name: quant.linear_from(quantized, p + name) for name in quant.GGUF_PARTS}
            else:
                qkv_parts = [attn + "q_proj.weight", attn + "k_proj.weight", attn + "v_proj.weight"]
                gate_up_parts = [mlp + "gate_proj.weight", mlp + "up_proj.weight"]
                projections = {
                    "qkv": Linear(fused(attn + "qkv.weight", qkv_parts), int8),
                    "o": Linear(get(p + "self_attn.o_proj.weight"), int8),
                    "gate_up": Linear(fused(mlp + "gate_up.weight", gate_up_parts), int8),
                    "down": Linear(get(p + "mlp.down_proj.weight"), int8),
                }
            self.layers.append(
                Layer(
                    input_norm=norm(p + "input_layernorm.weight"),
                    qkv=projections["qkv"],
                    q_norm=norm(p + "self_attn.q_norm.weight"),
                    k_norm=norm(p + "self_attn.k_norm.weight"),
                    o=projections["o"],
                    post_attn_norm=norm(p + "post_attention_layernorm.weight"),
                    pre_ff_norm=norm(p + "pre_feedforward_layernorm.weight"),
                    gate_up=projections["gate_up"],
                    down=projections["down"],
                    post_ff_norm=norm(p + "post_feedforward_layernorm.weight"),
                    sliding=cfg.layer_is_sliding[i],
                )
            )
        # the scores' scale, folded into the query norm when a power of two (Gemma 3: 256^-0.5 = 1/16), where it
        # gives the same bits as scaling the scores (one operation fewer per layer)
        scale = cfg.query_pre_attn_scalar**-0.5
        self.score_scale = 1.0 if math.log2(scale).is_integer() else scale
        for layer in self.layers:
            q_norm = layer.q_norm * (scale / self.score_scale)
            layer.qk_norm = torch.cat(
                [q_norm.expand(cfg.num_heads, -1), layer.k_norm.expand(cfg.num_kv_heads, -1)]
            ).contiguous()
        half = cfg.head_dim // 2
        steps = torch.arange(0, half, dtype=torch.float32) * 2 / cfg.head_dim
        self.inv_freq_global = (1.0 / (cfg.rope_theta_global**steps)).to(device)
        self.inv_freq_local = (1.0 / (cfg.rope_theta_local**steps)).to(device)
        self.q_size = cfg.num_heads * cfg.head_dim
        self.kv_size = cfg.num_kv_heads * cfg.head_dim

    @classmethod
    def from_hf_dir(
        cls,
        path: Path,
        *,
        dtype: torch.dtype,
        device: torch.device,
        int8: bool,
        int8_head: bool | None = None,
        rescored_head: bool = False,
        quantized: bool = False,
    ) -> Gemma3:
        """Load a converted folder. Safetensors files are memory-mapped: fp32 weights used as they are on CPU are
        the file's pages (shared with the page cache, and with other servers on the machine); the engine layout
        (ENGINE_FILE, HEAD_FILE), when the folder has it, spares the fused copies and the head's quantization.
        `quantized`: the GGUF's weights as stored (QUANTIZED_FILE, which model_cache.ensure_quantized_layout
        derives)."""
        from safetensors.torch import load_file

        cfg = Gemma3Config.from_hf_dir(path)
        state: dict[str, torch.Tensor] = {}
        for file in sorted(path.glob("*.safetensors")):
            if file.name not in (HEAD_FILE, QUANTIZED_FILE):
                state.update(load_file(str(file)))
        stored = load_file(str(path / QUANTIZED_FILE)) if quantized else None
        int8_head = int8 if int8_head is None else int8_head
        head = None
        if int8_head and (path / HEAD_FILE).exists():
            tensors = load_file(str(path / HEAD_FILE))
            head = (tensors["codes"], tensors["scales"])
        return cls(
            cfg,
            state,
            dtype=dtype,
            device=device,
            int8=int8,
            int8_head=int8_head,
            head=head,
            rescored_head=rescored_head,
            quantized=stored,
        )

    def embed_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """The token embeddings at `ids` (unscaled), [len(ids), hidden]: read from the weights file when the
        embedding is memory-mapped from one (FileRows: a lookup through the mapping maps ~0.5 MB per row, a
        512-token prompt chunk ~280 MB), else looked up in the tensor."""
        reader = self.rescored.file_rows() if self.rescored is not None and self.rescored.weight is self.embed else None
        if reader is None:
            return F.embedding(ids, self.embed)
        return reader.read(ids.reshape(-1).cpu()).to(device=self.device, dtype=self.embed.dtype).reshape(*ids.shape, -1)

    def new_cache(self, capacity: int) -> KVCache:
        return KVCache(self.cfg, capacity, self.dtype, self.device)

    def _rope(self, positions: torch.Tensor, sliding: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin with its first half negated), each [T, 1, D]: x * cos + x.roll(D / 2) * that sin is the
        rotary embedding (x * cos + rotate_half(x) * sin, bit for bit, in fewer operations)."""
        inv = self.inv_freq_local if sliding else self.inv_freq_global
        freqs = positions[:, None].float() * inv[None, :]
        cos, sin = freqs.cos(), freqs.sin()
        cos_full, signed_sin = torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)
        return cos_full[:, None].to(self.dtype), signed_sin[:, None].to(self.dtype)

    def _project_qkv(
        self, layer: Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h: [T, hidden] -> q [T, H, D], k [T, KVH, D], v [T, KVH, D] with q/k norm and rotary applied (q and k
        together: the norm's weight is per head, the same bits as normalizing each apart)."""
        cfg = self.cfg
        qkv = layer.qkv(h)
        heads = cfg.num_heads + cfg.num_kv_heads
        qk = qkv[:, : self.q_size + self.kv_size].view(-1, heads, cfg.head_dim).float()
        qk = (F.rms_norm(qk, (cfg.head_dim,), None, cfg.rms_norm_eps) * layer.qk_norm).to(self.dtype)
        qk = qk * cos + qk.roll(cfg.head_dim // 2, dims=-1) * sin
        q, k = qk.split([cfg.num_heads, cfg.num_kv_heads], dim=1)
        return q, k, qkv[:, self.q_size + self.kv_size :].view(-1, cfg.num_kv_heads, cfg.head_dim)

    def _mlp_and_residual(self, layer: Layer, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        eps = self.cfg.rms_norm_eps
        x = x + _rms_norm(layer.o(attn_out), layer.post_attn_norm, eps)
        h = _rms_norm(x, layer.pre_ff_norm, eps)
        gate, up = layer.gate_up(h).chunk(2, dim=-1)
        h = layer.down(F.gelu(gate, approximate="tanh") * up)
        return x + _rms_norm(h, layer.post_ff_norm, eps)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        h = _rms_norm(x, self.final_norm, self.cfg.rms_norm_eps)
        if self.rescored is not None:
            logits, bound = self.rescored(h.float())
            self.head_rows = (h.float(), bound)  # softcapping (tanh) is 1-Lipschitz: the bound still holds after it
        else:
            logits = self.lm_head(h).float()
        cap = self.cfg.final_logit_softcapping
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    @torch.inference_mode()
    def exact_logits(self, h: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 logits of one normed hidden row (from head_rows), softcapped as _logits caps them."""
        assert self.rescored is not None
        logits = self.rescored.exact(h, ids)
        cap = self.cfg.final_logit_softcapping
        return torch.tanh(logits / cap) * cap if cap else logits

    @torch.inference_mode()
    def settle(
        self, values: torch.Tensor, ranked: torch.Tensor, bound: torch.Tensor, h: torch.Tensor, need: int
    ) -> torch.Tensor:
        """`values`: one row of approximate logits as the sampler will get them (a grammar mask's -inf kept);
        `ranked`: the same after the sampler's penalties; `bound`: each one's error bound, at most. Returns fp32
        logits at every token that can be among the `need` highest ranked, -inf elsewhere: drawing from it is
        drawing from the fp32 head's logits (RescoredHead). The serving loop uses `candidates` instead (the
        same tokens, without a vocabulary-sized result)."""
        if not torch.isfinite(ranked).any():
            return values
        ids, exact = self.candidates(ranked, bound, h, need)
        settled = torch.full_like(values, float("-inf"))
        settled[ids] = exact
        return settled

    # the candidates are first looked for among this many highest upper bounds: a greedy or top-40 step decides
    # there, without passes over the whole vocabulary (262 k logits) beyond the one top-k
    SHORTLIST = 1024
    # more candidates than this are rescored in order of their upper bounds, those that the exact values already
    # rank out being dropped unread (a flat distribution can leave tens of thousands under the screen's margin)
    REFINE_BATCH = 512
    REFINE_ROUNDS = 8

    @torch.inference_mode()
    def candidates(
        self,
        values: torch.Tensor,
        bound: torch.Tensor,
        h: torch.Tensor,
        need: int,
        gain: float = 1.0,
        rank: Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor] | None = None,
        penalized: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens that can rank among the `need` highest once `rank` (the sampler's penalties: rank(ids,
        values at ids), or rank(None, all values)) has applied to the true logits, and their fp32 logits (before
        the penalties). `values`: approximate logits, each within `bound` of the true one; the penalties stretch
        that by at most `gain`; they touch only the `penalized` tokens. A token is kept when its upper bound
        reaches the need-th highest lower bound, which the need-th highest true value cannot be below.

        Decided on a shortlist (the highest values, and the penalized tokens) when no other token can reach that
        floor: one top-k and one max over the vocabulary, the rest on a few hundred tokens. With `rank`, a large
        set is then rescored best first and shrinks as exact values raise the floor."""
        vocab = values.shape[0]
        ranking = rank or (lambda _ids, given: given)
        size = min(self.SHORTLIST + need, vocab)
        top_values, ids = torch.topk(values, size)
        if penalized is not None and penalized.numel():
            ids = torch.unique(torch.cat([ids, penalized]))
        ranked = ranking(ids, values[ids])
        finite = torch.isfinite(ranked)
        if not bool(finite.any()):
            return ids[:0], ranked[:0]
        ids, ranked, slack = ids[finite], ranked[finite], gain * bound[ids[finite]]
        floor = torch.topk(ranked - slack, min(need, ids.numel())).values[-1]
        shortlisted = size == vocab or not bool(torch.isfinite(top_values[-1]))  # every finite token is in it
        if shortlisted or top_values[-1] + gain * bound.max() < floor:  # no token outside it reaches the floor
            upper = ranked + slack
            keep = upper >= floor
            ids, upper = ids[keep], upper[keep]
        else:  # a flat distribution: the floor and the candidates over the whole vocabulary
            ranked_all = ranking(None, values)
            slack_all = gain * bound
            floor = torch.topk(ranked_all - slack_all, need).values[-1]
            upper_all = ranked_all + slack_all
            ids = torch.nonzero(upper_all >= floor).squeeze(-1)
            upper = upper_all[ids]
        if rank is None or ids.numel() <= self.REFINE_BATCH:
            return ids, self.exact_logits(h, ids)
        return self._rescore_best_first(ids, upper, h, need, rank)

    def _rescore_best_first(
        self,
        ids: torch.Tensor,
        upper: torch.Tensor,
        h: torch.Tensor,
        need: int,
        rank: Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact logits of `ids` in batches, highest upper bound first, until the next upper bound falls below
        the need-th highest exact ranked value found: the rest cannot rank among the `need` highest."""
        order = torch.argsort(upper, descending=True)
        ids, upper = ids[order], upper[order]
        done_ids: list[torch.Tensor] = []
        done_exact: list[torch.Tensor] = []
        start = 0
        while start < ids.numel():
            # after REFINE_ROUNDS batches (a near-flat ranking, or a huge penalty's slack), the rest in one call:
            # exact_logits reads many rows in one pass over the matrix, cheaper than hundreds of batches
            size = self.REFINE_BATCH if len(done_ids) < self.REFINE_ROUNDS else ids.numel() - start
            batch = ids[start : start + size]
            done_ids.append(batch)
            done_exact.append(self.exact_logits(h, batch))
            start += batch.numel()
            found_ids, found = torch.cat(done_ids), torch.cat(done_exact)
            if found.numel() >= need and start < ids.numel():
                floor = torch.topk(rank(found_ids, found), need).values[-1]
                if upper[start] < floor:
                    break
        return torch.cat(done_ids), torch.cat(done_exact)

    @torch.inference_mode()
    def prefill(self, tokens: list[int], cache: KVCache, *, all_logits: bool = False) -> torch.Tensor:
        """Append `tokens` to `cache` (which already holds cache.length tokens); return the last (or all) logits.
        A long prompt goes PREFILL_CHUNK tokens at a time (as Ollama's runner feeds num_batch): its attention
        scores [heads, chunk, context] stay small instead of [heads, n, n] (268 MB a layer at 4096 tokens)."""
        cache.reserve(cache.length + len(tokens))
        outputs = []
        for begin in range(0, max(len(tokens), 1), PREFILL_CHUNK):
            last = begin + PREFILL_CHUNK >= len(tokens)
            hidden = self._prefill_chunk(tokens[begin : begin + PREFILL_CHUNK], cache)
            if all_logits:
                outputs.append(self._logits(hidden))
            elif last:
                outputs.append(self._logits(hidden[-1:]))
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    def _prefill_chunk(self, tokens: list[int], cache: KVCache) -> torch.Tensor:
        """One chunk of a prefill: appends to the cache, returns the chunk's final hidden states."""
        cfg = self.cfg
        start = cache.length
        n = len(tokens)
        cache.reserve(start + n)
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        x = self.embed_rows(ids) * self.embed_scale
        positions = torch.arange(start, start + n, device=self.device)
        total = start + n
        span = key_span(total)
        key_pos = torch.arange(total, device=self.device)
        causal = key_pos[None, :] <= positions[:, None]
        window = causal & (positions[:, None] - key_pos[None, :] < cfg.sliding_window)
        rope_local = self._rope(positions, True)
        rope_global = self._rope(positions, False)
        group = cfg.num_heads // cfg.num_kv_heads
        padded_pos = torch.arange(span, device=self.device)
        hidden_masks = {sliding: self._hidden_keys(positions, padded_pos, sliding) for sliding in (False, True)}
        for li, layer in enumerate(self.layers):
            cos, sin = rope_local if layer.sliding else rope_global
            h = _rms_norm(x, layer.input_norm, cfg.rms_norm_eps)
            q, k, v = self._project_qkv(layer, h, cos, sin)
            cache.k[li, :, start:total] = k.transpose(0, 1)
            cache.v[li, :, start:total] = v.transpose(0, 1)
            if self.row_invariant_attention:
                # every prompt row as its own query over the whole table, masked: the arithmetic of a decode step
                keys, values = cache.k[li, None, :, :span], cache.v[li, None, :, :span]
                attn = self._masked_attention(q, keys, values, hidden_masks[layer.sliding])
            else:
                keys = cache.k[li, :, :total].repeat_interleave(group, dim=0)  # [H, total, D]
                values = cache.v[li, :, :total].repeat_interleave(group, dim=0)
                mask = window if layer.sliding else causal
                attn = F.scaled_dot_product_attention(q.transpose(0, 1), keys, values, attn_mask=mask, scale=self.score_scale)
                attn = attn.transpose(0, 1).reshape(n, self.q_size)
            x = self._mlp_and_residual(layer, x, attn)
        cache.length = total
        return x

    @torch.inference_mode()
    def decode(self, tokens: list[int], caches: list[KVCache]) -> torch.Tensor:
        """One token for each sequence (each at its own position); returns logits [B, vocab]."""
        cfg = self.cfg
        b = len(tokens)
        for cache in caches:
            cache.reserve(cache.length + 1)
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        x = self.embed_rows(ids) * self.embed_scale
        positions = torch.tensor([c.length for c in caches], device=self.device)
        rope_local = self._rope(positions, True)
        rope_global = self._rope(positions, False)
        for li, layer in enumerate(self.layers):
            cos, sin = rope_local if layer.sliding else rope_global
            h = _rms_norm(x, layer.input_norm, cfg.rms_norm_eps)
            q, k, v = self._project_qkv(layer, h, cos, sin)
            outs = []
            for i, cache in enumerate(caches):
                pos = cache.length
                cache.k[li, :, pos] = k[i]
                cache.v[li, :, pos] = v[i]
                outs.append(self._attend_one(q[i], cache, li, pos, layer.sliding))
            x = self._mlp_and_residual(layer, x, torch.stack(outs))
        for cache in caches:
            cache.length += 1
        del b
        return self._logits(x)


    def _attend_one(self, q_row: torch.Tensor, cache: KVCache, li: int, pos: int, sliding: bool) -> torch.Tensor:
        """Attention of the query row at position `pos` (keys already in `cache` up to it) -> [q_size]."""
        span = key_span(pos + 1)
        positions = torch.tensor([pos], device=self.device)
        hidden = self._hidden_keys(positions, torch.arange(span, device=self.device), sliding)
        return self._masked_attention(q_row[None], cache.k[li, None, :, :span], cache.v[li, None, :, :span], hidden)[0]

    def _hidden_keys(self, positions: torch.Tensor, key_positions: torch.Tensor, sliding: bool) -> torch.Tensor:
        """[rows, 1, 1, keys] True where a query at `positions` may not see a key: after it, or (sliding) out of
        its window."""
        visible = key_positions[None, :] <= positions[:, None]
        if sliding:
            visible &= positions[:, None] - key_positions[None, :] < self.cfg.sliding_window
        return ~visible[:, None, None, :]

    def _masked_attention(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, hidden: torch.Tensor
    ) -> torch.Tensor:
        """q [rows, H, D] over keys/values [rows or 1, KVH, S, D] with `hidden` keys masked out -> [rows, q_size].
        Each row is its own query (the heads sharing a kv head stand in the query-length dimension: GQA without
        repeating keys); hidden keys get -inf and add exact zeros, so a row gets the same bits whatever the other
        rows and however many keys follow its own: a prompt row prefilled with the others, a row prefilled alone
        after a cached prefix and a decode step agree (SDPA's blocked kernel rounds differently, enough to flip a
        near-tie of this small model's greedy output)."""
        cfg = self.cfg
        qg = q.view(q.shape[0], cfg.num_kv_heads, cfg.num_heads // cfg.num_kv_heads, cfg.head_dim)
        scores = torch.matmul(qg, keys.transpose(-1, -2))
        if self.score_scale != 1.0:
            scores = scores * self.score_scale
        probs = torch.softmax(scores.float().masked_fill(hidden, float("-inf")), dim=-1).to(self.dtype)
        return torch.matmul(probs, values).reshape(q.shape[0], self.q_size)


PREFILL_CHUNK = 512  # tokens per prefill step (Ollama's default num_batch)


def lazy_zeros(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Zeros over an anonymous memory mapping on CPU: the kernel commits a page (zero-filled) when it is first
    written, so a table sized for the whole context costs the memory of the positions used (torch.zeros writes
    every page). Elsewhere, torch.zeros."""
    if device.type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    count = math.prod(shape)
    # private: an untouched page reads as the shared zero page (a shared mapping would commit it on reading)
    pages = mmap.mmap(-1, max(count * dtype.itemsize, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    # (the tensor keeps the mapping alive)
    return torch.frombuffer(pages, dtype=dtype, count=count).view(shape)


class StaticSlots:
    """Batched decode for a fixed set of slots over one KV cache: [layers, slots, kv_heads, capacity, head_dim].

    One step runs every busy sequence through one attention call per layer (no Python loop over sequences).
    Slots are handed out lowest first, so the busy ones are mostly a prefix of the table: a step computes rows
    [0, highest busy slot] (an idle row in between computes on a dummy token and is ignored) and attends over
    keys [0, longest busy sequence], masked per row by its position and, in sliding layers, its window.

    On CUDA (`use_cuda_graph`) the cache is allocated at full context and every step runs all slots with the same
    shapes, so the step is captured once as a CUDA graph and replayed: no per-step allocation or Python dispatch
    per layer. On CPU the cache grows by doubling as sequences get longer (its memory follows use, up to
    `context`). Prefill runs the dynamic path into a temporary cache that is then copied into the slot; a slot's
    stale keys beyond its length are finite numbers from an earlier sequence, masked out.
    """

    def __init__(self, model: Gemma3, slots: int, context: int, *, use_cuda_graph: bool, growable: bool = True) -> None:
        cfg = model.cfg
        self.model = model
        self.slots = slots
        self.context = context
        self.use_cuda_graph = use_cuda_graph and model.device.type == "cuda"
        self.growable = growable and not self.use_cuda_graph
        self.room = key_span(context)  # the table's longest: the context, in whole key blocks
        capacity = min(self.room, 256) if self.growable else self.room
        device, dtype = model.device, model.dtype
        # the whole context's table, its pages committed only where written (lazy_zeros, on CPU); k and v view
        # its first `capacity` positions: growing widens the view, no copy (a copy held old and new tables at
        # once: 885 MB at 4 slots of 4096 fp32 positions)
        shape = (cfg.num_layers, slots, cfg.num_kv_heads, self.room, cfg.head_dim)
        self.table_k = lazy_zeros(shape, dtype, device)
        self.table_v = lazy_zeros(shape, dtype, device)
        self.k = self.table_k[:, :, :, :capacity]
        self.v = self.table_v[:, :, :, :capacity]
        self.lengths = [0] * slots
        self.tokens = torch.zeros(slots, dtype=torch.long, device=device)
        self.positions = torch.zeros(slots, dtype=torch.long, device=device)
        self.key_positions = torch.arange(self.room, device=device)
        self.slot_index = torch.arange(slots, device=device)
        self.logits: torch.Tensor | None = None
        self.graph: Any = None
        # every step at full shape (all slots, the whole context), as the CUDA graph runs it; settable on CPU to
        # check that arithmetic without a GPU
        self.full_steps = self.use_cuda_graph
        self.last_rows = 0  # slots [0, last_rows) ran in the last step: an idle one among them got a dummy token's
        # keys and values at position 0

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def _reserve(self, length: int) -> None:
        """Room for `length` positions in every slot (CPU: grow by doubling, up to the context)."""
        if length <= self.capacity:
            return
        if not self.growable or length > self.context:
            raise ValueError(f"sequence of {length} tokens does not fit a {self.context}-token slot")
        new_capacity = min(self.room, key_span(max(length, self.capacity * 2)))
        self.k = self.table_k[:, :, :, :new_capacity]
        self.v = self.table_v[:, :, :, :new_capacity]

    def cache_of(self, slot: int, length: int, room: int) -> KVCache:
        """The slot's memory as a KVCache holding its first `length` positions, with room for `room` in all:
        prefill writes straight into the slot (and a prompt sharing a prefix with what the slot last held
        computes only the rest)."""
        self._reserve(room)
        cache = KVCache.over(self.model.cfg, self.k[:, slot], self.v[:, slot], length)
        return cache

    def set_length(self, slot: int, length: int) -> None:
        self.lengths[slot] = length

    def load(self, slot: int, cache: KVCache) -> None:
        """Copies a prefilled sequence into a slot."""
        n = cache.length
        if n > self.context:
            raise ValueError(f"sequence of {n} tokens does not fit a {self.context}-token slot")
        self._reserve(n + 1)
        self.k[:, slot, :, :n] = cache.k[:, :, :n]
        self.v[:, slot, :, :n] = cache.v[:, :, :n]
        self.lengths[slot] = n

    @torch.inference_mode()
    def _step(self, rows: int, span: int) -> torch.Tensor:
        """Logits [rows, vocab] for slots [0, rows), attending over key positions [0, span)."""
        model, cfg = self.model, self.model.cfg
        tokens, positions = self.tokens[:rows], self.positions[:rows]
        x = model.embed_rows(tokens) * model.embed_scale
        rope_local = model._rope(positions, True)
        rope_global = model._rope(positions, False)
        span = key_span(span)
        key_positions = self.key_positions[:span]
        hidden_masks = {sliding: model._hidden_keys(positions, key_positions, sliding) for sliding in (False, True)}
        slot_index = self.slot_index[:rows]
        for li, layer in enumerate(model.layers):
            cos, sin = rope_local if layer.sliding else rope_global
            h = _rms_norm(x, layer.input_norm, cfg.rms_norm_eps)
            q, k, v = model._project_qkv(layer, h, cos, sin)
            self.k[li, slot_index, :, positions] = k
            self.v[li, slot_index, :, positions] = v
            keys = self.k[li, :rows, :, :span]  # [rows, KVH, span, D]
            values = self.v[li, :rows, :, :span]
            attn = model._masked_attention(q, keys, values, hidden_masks[layer.sliding])
            x = model._mlp_and_residual(layer, x, attn)
        return model._logits(x)

    @torch.inference_mode()
    def decode(self, tokens: dict[int, int]) -> dict[int, torch.Tensor]:
        """One token for each busy slot ({slot: token}); returns {slot: logits}."""
        token_list = [0] * self.slots
        position_list = [0] * self.slots
        for slot, token in tokens.items():
            if self.lengths[slot] >= self.context:
                raise ValueError("slot is full")
            token_list[slot] = token
            position_list[slot] = self.lengths[slot]
        self.tokens.copy_(torch.tensor(token_list), non_blocking=True)
        self.positions.copy_(torch.tensor(position_list), non_blocking=True)
        if self.use_cuda_graph:
            if self.graph is None:
                self._capture()
            self.graph.replay()
            logits = self.logits
        elif self.full_steps:
            logits = self._step(self.slots, self.room)
        else:
            span = max(position_list[slot] for slot in tokens) + 1
            self._reserve(span)
            logits = self._step(max(tokens) + 1, span)
        self.last_rows = self.slots if self.use_cuda_graph or self.full_steps else max(tokens) + 1
        assert logits is not None
        for slot in tokens:
            self.lengths[slot] += 1
        return {slot: logits[slot] for slot in tokens}

    def _capture(self) -> None:
        warmup = torch.cuda.Stream()
        warmup.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(warmup):
            for _ in range(2):  # warm-up writes land in idle positions that a real step overwrites
                self._step(self.slots, self.room)
        torch.cuda.current_stream().wait_stream(warmup)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._step(self.slots, self.room)
