"""The GGUF's weights as stored, run by torch's weight-only CPU kernels against bf16 activations.

A Q4_K block is 8 sub-blocks of 32 weights, w = d*sc*q - dmin*m with 4-bit q and 6-bit sc, m; torch's packed int4
layout is groups of 32 with w = (q - 8)*scale + zero. So a Q4_K sub-block is repacked code for code: scale = d*sc,
zero = 8*d*sc - dmin*m (`aten._weight_int4pack_mm_for_cpu`). Q5_0 and Q8_0 (w = d*q over blocks of 32) are two
int4 halves of one packed weight, the low nibble and the high bits of each code (Int4SplitLinear): code for code
too, at 8 bits a weight. The kernel takes its scales and zeros in the activation's dtype, and bf16 activations are
what make it fast on CPU (fp32 ones are 10-20x slower, fp16 ones 100x), so scale and zero are rounded to bf16
(relative 2^-8 at most): the codes are the GGUF's, the grid within 0.4 % of it. Q6_K (w = d*sc*q over sub-blocks
of 16, finer than the kernel's groups of 32) is split too (Int4SubBlockLinear): one group per sub-block, its codes
q = a + 16 b as signed int4 halves against the sub-block's inputs and the same inputs times 16, zero 0. (It was
int8 per output row; that requantization was the largest error of the default, measured by faithfulness.py.)
The tied LM head (the largest tensor, Q8_0 in the GGUF) is requantized to int4 groups of 32 as a screen: the tokens it ranks highest are
recomputed in fp32 (engine.model.ScreenedHead, RescoredHead.exact) before the sampler draws, so a drawn token's
logit is the fp32 one.

Both kernels give a row the same result whatever other rows share the call (checked in the tests), so a sequence
batched with others gets what it gets alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

GROUP = 32  # weights per int4 group: a Q4_K sub-block
INNER_K_TILES = 2  # the packing's inner tile (the CPU kernel accepts 2, 4 or 8)


class Int4Linear:
    """y = x @ W.T with W in torch's packed int4 layout (groups of GROUP along the input, bf16 scale and zero)."""

    def __init__(self, packed: torch.Tensor, scale_zeros: torch.Tensor) -> None:
        self.packed = packed
        self.scale_zeros = scale_zeros  # [in / GROUP, out, 2] bf16
        self.out_features = scale_zeros.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, GROUP, self.scale_zeros)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


class Int4SplitLinear(Int4Linear):
    """A 5- or 8-bit block format (Q5_0, Q8_0: w = d * q over blocks of 32) as two int4 halves of one packed
    weight [out, 2 * in]: the low nibble of q - qmin with scale d, the high bits with scale 16 d. The input is
    repeated along its features, so one kernel call sums both halves: the GGUF's codes, exactly."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return super().__call__(torch.cat([x, x], dim=-1))


class Int4SubBlockLinear(Int4Linear):
    """Q6_K (w = d * sc * q over sub-blocks of 16, q in -32..31) as signed int4 halves with zero points of 0: each
    q = a + 16 b with a in -8..7 and b in -2..2, and one kernel group of 32 per sub-block holds its a codes against
    the sub-block's 16 inputs and its b codes against the same inputs times 16 (exact in bf16: a power of two).
    Scale d * sc, zero 0: the GGUF's codes, exactly, at 8 bits a weight (the int8 rows it replaced rounded every
    weight to a per-row grid, the largest error the default had: see faithfulness.py)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        blocks = x.unflatten(-1, (-1, SUB_BLOCK))
        return super().__call__(torch.cat([blocks, blocks * 16.0], dim=-1).flatten(-2))


class Int8Linear:
    """y = x @ W.T with W as int8 codes and one bf16 scale per output row (weight-only: activations stay bf16)."""

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor) -> None:
        self.codes = codes
        self.scales = scales  # [out] bf16
        self.out_features = codes.shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch.ops.aten._weight_int8pack_mm(flat, self.codes, self.scales)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


QuantLinear = Int4Linear | Int8Linear
SUB_BLOCK = 16  # weights per Q6_K sub-block (one scale each)


def linear_from(tensors: dict[str, torch.Tensor], name: str) -> QuantLinear:
    """The layer `name` of the quantized layout: int4 when it holds `name.packed` (split in two halves when
    `name.split`), int8 when `name.codes`."""
    if f"{name}.packed" in tensors:
        kind = Int4Linear
        if f"{name}.split" in tensors:
            kind = Int4SplitLinear
        elif f"{name}.sub_blocks" in tensors:
            kind = Int4SubBlockLinear
        return kind(tensors[f"{name}.packed"], tensors[f"{name}.scale_zeros"])
    return Int8Linear(tensors[f"{name}.codes"], tensors[f"{name}.scales"])


# --- deriving the layout from a GGUF (run once, in the converting child process) -------------------------------


def q4k_codes(blocks: np.ndarray, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A Q4_K tensor's raw blocks [rows, cols / 256 * 144] -> (codes int32 [rows, cols] in 0..15, scale and
    zero fp32 [cols / 32, rows]) with w = (code - 8) * scale + zero, exactly (before any rounding to bf16)."""
    from gguf.quants import Q4_K

    blocks = np.ascontiguousarray(blocks).reshape(-1, 144)
    d = blocks[:, 0:2].view(np.float16).astype(np.float32)
    dmin = blocks[:, 2:4].view(np.float16).astype(np.float32)
    sc, m = Q4_K.get_scale_min(blocks[:, 4:16])
    # 128 bytes: 4 chunks of 32; the low nibbles are sub-block 2c, the high ones 2c + 1
    nibbles = blocks[:, 16:].reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    codes = (nibbles & 0x0F).reshape(rows, cols).astype(np.int32)
    scale = (d * sc.astype(np.float32)).reshape(rows, cols // GROUP)
    minimum = (dmin * m.astype(np.float32)).reshape(rows, cols // GROUP)
    zero = 8.0 * scale - minimum
    return torch.from_numpy(codes), torch.from_numpy(scale).t().contiguous(), torch.from_numpy(zero).t().contiguous()


# bytes per block of 32, lowest code, and the zeros of the low and high halves in units of d: they add up to
# (136 + qmin) d (see split_codes) and are powers of two times d, so bf16 rounds them exactly as it rounds d
BLOCK32_FORMATS = {"Q5_0": (22, -16, -8.0, 128.0), "Q8_0": (34, -128, 8.0, 0.0)}


def split_codes(tensor: object, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A Q5_0 or Q8_0 tensor (w = d * q per block of 32, d fp16 first in each block) -> codes int32 [rows, 2 cols]
    (u = q - qmin split into its low nibble, then its high bits), scale and zero [2 cols / 32, rows] fp32, so
    that the halves' sum (Int4SplitLinear) is d*(lo - 8) + 16d*(hi - 8) + (136 + qmin)*d = d*(u + qmin) = d*q."""
    from gguf.quants import dequantize

    kind = tensor.tensor_type.name  # type: ignore[attr-defined]
    block_bytes, qmin, low_zero, high_zero = BLOCK32_FORMATS[kind]
    raw = np.ascontiguousarray(tensor.data)  # type: ignore[attr-defined]
    d = torch.from_numpy(raw.reshape(-1, block_bytes)[:, :2].copy().view(np.float16).astype(np.float32))
    d = d.reshape(rows, cols // GROUP)
    weight = torch.from_numpy(dequantize(raw, tensor.tensor_type).reshape(rows, cols))  # type: ignore[attr-defined]
    safe = torch.where(d == 0, torch.ones_like(d), d)
    q = torch.round(weight.reshape(rows, cols // GROUP, GROUP) / safe[..., None]).to(torch.int32)
    u = (q - qmin).clamp(0, 255).reshape(rows, cols)
    codes = torch.cat([u & 15, u >> 4], dim=1)
    scale = torch.cat([d, 16.0 * d], dim=1).t().contiguous()
    zero = torch.cat([low_zero * d, high_zero * d], dim=1).t().contiguous()
    return codes, scale, zero


Q6K_BLOCK_BYTES = 210  # 256 weights: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales, fp16 d


def q6k_codes(blocks: np.ndarray, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A Q6_K tensor's raw blocks -> (codes int32 [rows, 2 cols], scale and zero fp32 [cols / 16, rows]) in
    Int4SubBlockLinear's layout: per sub-block of 16, the codes of a = q - 16 b then of b (b = floor((q + 8) / 16)),
    each + 8; scale d * sc; zero 0. The bit layout is gguf-py's (Q6_K.dequantize_blocks)."""
    blocks = np.ascontiguousarray(blocks).reshape(-1, Q6K_BLOCK_BYTES)
    n = blocks.shape[0]
    ql = blocks[:, :128].reshape(n, -1, 1, 64) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    ql = (ql & 0x0F).reshape(n, -1, 32)
    qh = blocks[:, 128:192].reshape(n, -1, 1, 32) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    qh = (qh & 0x03).reshape(n, -1, 32)
    q = torch.from_numpy((ql | (qh << 4)).astype(np.int32) - 32).reshape(rows, cols // SUB_BLOCK, SUB_BLOCK)
    sc = blocks[:, 192:208].copy().view(np.int8).astype(np.float32)
    d = blocks[:, 208:210].copy().view(np.float16).astype(np.float32)
    scale = torch.from_numpy(d * sc).reshape(rows, cols // SUB_BLOCK)
    high = torch.div(q + 8, 16, rounding_mode="floor")
    codes = torch.cat([q - 16 * high, high], dim=-1) + 8  # [rows, sub-blocks, 32]: a then b, both in 0..15
    return codes.reshape(rows, 2 * cols), scale.t().contiguous(), torch.zeros_like(scale).t().contiguous()


def pack_int4(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> dict[str, torch.Tensor]:
    """codes int32 [out, in], scale/zero [in / GROUP, out] -> the kernel's packed weight and bf16 scale_zeros."""
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.contiguous(), INNER_K_TILES)
    scale_zeros = torch.stack([scale, zero], dim=-1).to(torch.bfloat16).contiguous()
    return {"packed": packed, "scale_zeros": scale_zeros}


def quantize_int4_groups(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 per group of GROUP (min..max over 15 steps), with the codes chosen against the bf16-rounded
    scale and zero the kernel will use -> (codes int32, scale, zero [in / GROUP, out] already bf16-exact)."""
    rows, cols = weight.shape
    groups = weight.float().reshape(rows, cols // GROUP, GROUP)
    low, high = groups.amin(dim=-1), groups.amax(dim=-1)
    scale = ((high - low) / 15.0).clamp(min=1e-12).to(torch.bfloat16).float()
    zero = (low + 8.0 * scale).to(torch.bfloat16).float()
    codes = torch.round((groups - zero[..., None]) / scale[..., None] + 8.0).clamp(0, 15).to(torch.int32)
    return codes.reshape(rows, cols), scale.t().contiguous(), zero.t().contiguous()


def dequantize_int4(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """The weights an int4 layer computes with (fp32), for error norms and tests."""
    rows, cols = codes.shape
    grouped = codes.reshape(rows, cols // GROUP, GROUP).float() - 8.0
    return (grouped * scale.t()[..., None] + zero.t()[..., None]).reshape(rows, cols)


def quantize_int8_rows(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """Symmetric int8 per output row against a bf16 scale (the int8 kernel's scale dtype)."""
    weight = weight.float()
    scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).to(torch.bfloat16)
    codes = torch.round(weight / scales.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return {"codes": codes.contiguous(), "scales": scales.contiguous()}


GGUF_PARTS = {  # engine layer -> the GGUF tensors it fuses (rows stacked in this order)
    "qkv": ("attn_q", "attn_k", "attn_v"),
    "o": ("attn_output",),
    "gate_up": ("ffn_gate", "ffn_up"),
    "down": ("ffn_down",),
}


def derive_quantized_layout(gguf_path: Path, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every layer of the GGUF as the engine runs it: int4 (repacked) where all its parts are Q4_K, else int8 per
    row from the GGUF's own dequantization; and the LM head's int4 screen from `embedding` (fp32, the tied head)."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(gguf_path))
    by_name = {tensor.name: tensor for tensor in reader.tensors}
    out: dict[str, torch.Tensor] = {}
    layer = 0
    while f"blk.{layer}.attn_q.weight" in by_name:
        for engine_name, parts in GGUF_PARTS.items():
            tensors = [by_name[f"blk.{layer}.{part}.weight"] for part in parts]
            prefix = f"layers.{layer}.{engine_name}"
            kinds = {t.tensor_type.name for t in tensors}
            if kinds == {"Q4_K"} or kinds == {"Q6_K"} or kinds <= set(BLOCK32_FORMATS):
                split = kinds <= set(BLOCK32_FORMATS)
                reader_of = {
                    "Q4_K": lambda t, r, c: q4k_codes(t.data, r, c),
                    "Q6_K": lambda t, r, c: q6k_codes(t.data, r, c),
                }.get(next(iter(kinds)), split_codes)
                pieces = [reader_of(t, int(t.shape[1]), int(t.shape[0])) for t in tensors]
                codes = torch.cat([piece[0] for piece in pieces])  # rows stacked; scales are [groups, rows]
                scale = torch.cat([piece[1] for piece in pieces], dim=1)
                zero = torch.cat([piece[2] for piece in pieces], dim=1)
                for key, value in pack_int4(codes, scale, zero).items():
                    out[f"{prefix}.{key}"] = value
                if split:
                    out[f"{prefix}.split"] = torch.ones(1, dtype=torch.uint8)
                elif kinds == {"Q6_K"}:
                    out[f"{prefix}.sub_blocks"] = torch.ones(1, dtype=torch.uint8)
            else:
                weight = torch.cat(
                    [torch.from_numpy(dequantize(t.data, t.tensor_type).reshape(int(t.shape[1]), -1)) for t in tensors]
                )
                for key, value in quantize_int8_rows(weight).items():
                    out[f"{prefix}.{key}"] = value
        layer += 1
    out.update(derive_head_screen(embedding))
    return out


HEAD_CHUNK = 16384  # rows of the head quantized and packed at a time (the int32 codes stay small)


def derive_head_screen(embedding: torch.Tensor) -> dict[str, torch.Tensor]:
    """The tied head as int4 groups (packed chunk by chunk: the packing is row-blocked, so chunks concatenate),
    with each row's error norm ||w - w^|| and norm ||w^|| for the screen's error estimate (model.ScreenedHead)."""
    packed, scale_zeros, residual, norms = [], [], [], []
    for start in range(0, embedding.shape[0], HEAD_CHUNK):
        rows = embedding[start : start + HEAD_CHUNK].float()
        codes, scale, zero = quantize_int4_groups(rows)
        piece = pack_int4(codes, scale, zero)
        packed.append(piece["packed"])
        scale_zeros.append(piece["scale_zeros"])
        effective = dequantize_int4(codes, scale, zero)
        residual.append((rows - effective).norm(dim=1))
        norms.append(effective.norm(dim=1))
    return {
        "head.packed": torch.cat(packed),
        "head.scale_zeros": torch.cat(scale_zeros, dim=1).contiguous(),
        "head.residual_norms": torch.cat(residual),
        "head.norms": torch.cat(norms),
    }
