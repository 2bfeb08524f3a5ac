"""Gemma 3 text decoder written for a serving loop (gpt-fast style): per-sequence KV caches, batched decode.

Transformers' model is used only to load and convert weights; its forward does not batch sequences that sit at
different positions without padding, and its per-step Python overhead is large at this size. This module holds
the weights as plain tensors, fuses q/k/v and gate/up, and optionally keeps every linear layer (the 168 M tied
LM head above all, which dominates a decode step on CPU) as int8 (fbgemm dynamic quantization).
The forward matches transformers' Gemma3ForCausalLM (checked in tests/reference_backend/test_gemma3_engine.py).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


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
def _fbgemm_full_range() -> bool:
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
    bytes. (Weight-only int8 with fp32 or bf16 activations, aten._weight_int8pack_mm, measured slower here.)

    fbgemm picks one activation scale for the whole input tensor, so a sequence's logits would depend on the
    other sequences batched with it. Each row is therefore scaled to max |x| = 1 and two constant columns (+1,
    -1; their weights are zero) pin the tensor's range to [-1, 1]: every row is quantized on the same grid
    whatever the batch holds, and batched decode gives each sequence what it gets alone."""

    def __init__(self, weight: torch.Tensor, int8: bool) -> None:
        self.out_features = weight.shape[0]
        self.int8 = int8 and weight.device.type == "cpu"
        self.weight = weight.contiguous()
        self.packed: Any = None
        self.reduce_range = not _fbgemm_full_range()
        if self.int8:
            w = weight.float()
            scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
            zero_points = torch.zeros(w.shape[0], dtype=torch.long)
            codes = torch.quantize_per_channel(w, scales, zero_points, 0, torch.qint8).int_repr()
            codes = F.pad(codes, (0, 2))  # zero weights for the two range-pinning columns (padded as int8: less RAM)
            quantized = torch._make_per_channel_quantized_tensor(codes, scales, zero_points, 0)
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


@dataclass
class Layer:
    input_norm: torch.Tensor
    qkv: Linear
    q_norm: torch.Tensor
    k_norm: torch.Tensor
    o: Linear
    post_attn_norm: torch.Tensor
    pre_ff_norm: torch.Tensor
    gate_up: Linear
    down: Linear
    post_ff_norm: torch.Tensor
    sliding: bool


class KVCache:
    """One sequence's keys and values for every layer: [layers, kv_heads, capacity, head_dim], grown on demand."""

    def __init__(self, cfg: Gemma3Config, capacity: int, dtype: torch.dtype, device: torch.device) -> None:
        self.cfg = cfg
        self.dtype = dtype
        self.device = device
        self.length = 0
        shape = (cfg.num_layers, cfg.num_kv_heads, max(capacity, 16), cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def reserve(self, length: int) -> None:
        if length <= self.capacity:
            return
        new_cap = max(length, self.capacity * 2)
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


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


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
    ) -> None:
        self.cfg = cfg
        self.dtype = dtype
        self.device = device
        self.int8 = int8
        int8_head = int8 if int8_head is None else int8_head

        def get(name: str) -> torch.Tensor:
            for prefix in ("model.", "model.language_model.", ""):
                if prefix + name in state:
                    return state[prefix + name].to(device=device, dtype=dtype)
            raise KeyError(name)

        def norm(name: str) -> torch.Tensor:
            return (1.0 + get(name).float()).contiguous()  # Gemma's RMSNorm scales by (1 + w), computed in fp32

        self.embed = get("embed_tokens.weight").contiguous()
        self.embed_scale = torch.tensor(math.sqrt(cfg.hidden_size), dtype=dtype).item()
        lm_head = state.get("lm_head.weight")
        self.lm_head = Linear(lm_head.to(device=device, dtype=dtype) if lm_head is not None else self.embed, int8_head)
        self.final_norm = norm("norm.weight")
        self.layers: list[Layer] = []
        for i in range(cfg.num_layers):
            p = f"layers.{i}."
            qkv = torch.cat(
                [
                    get(p + "self_attn.q_proj.weight"),
                    get(p + "self_attn.k_proj.weight"),
                    get(p + "self_attn.v_proj.weight"),
                ]
            )
            gate_up = torch.cat([get(p + "mlp.gate_proj.weight"), get(p + "mlp.up_proj.weight")])
            self.layers.append(
                Layer(
                    input_norm=norm(p + "input_layernorm.weight"),
                    qkv=Linear(qkv, int8),
                    q_norm=norm(p + "self_attn.q_norm.weight"),
                    k_norm=norm(p + "self_attn.k_norm.weight"),
                    o=Linear(get(p + "self_attn.o_proj.weight"), int8),
                    post_attn_norm=norm(p + "post_attention_layernorm.weight"),
                    pre_ff_norm=norm(p + "pre_feedforward_layernorm.weight"),
                    gate_up=Linear(gate_up, int8),
                    down=Linear(get(p + "mlp.down_proj.weight"), int8),
                    post_ff_norm=norm(p + "post_feedforward_layernorm.weight"),
                    sliding=cfg.layer_is_sliding[i],
                )
            )
        half = cfg.head_dim // 2
        steps = torch.arange(0, half, dtype=torch.float32) * 2 / cfg.head_dim
        self.inv_freq_global = (1.0 / (cfg.rope_theta_global**steps)).to(device)
        self.inv_freq_local = (1.0 / (cfg.rope_theta_local**steps)).to(device)
        self.q_size = cfg.num_heads * cfg.head_dim
        self.kv_size = cfg.num_kv_heads * cfg.head_dim

    @classmethod
    def from_hf_dir(
        cls, path: Path, *, dtype: torch.dtype, device: torch.device, int8: bool, int8_head: bool | None = None
    ) -> Gemma3:
        from safetensors.torch import load_file

        cfg = Gemma3Config.from_hf_dir(path)
        state: dict[str, torch.Tensor] = {}
        for file in sorted(path.glob("*.safetensors")):
            state.update(load_file(str(file)))
        return cls(cfg, state, dtype=dtype, device=device, int8=int8, int8_head=int8_head)

    def new_cache(self, capacity: int) -> KVCache:
        return KVCache(self.cfg, capacity, self.dtype, self.device)

    def _rope(self, positions: torch.Tensor, sliding: bool) -> tuple[torch.Tensor, torch.Tensor]:
        inv = self.inv_freq_local if sliding else self.inv_freq_global
        freqs = positions[:, None].float() * inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def _project_qkv(
        self, layer: Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h: [T, hidden] -> q [T, H, D], k [T, KVH, D], v [T, KVH, D] with q/k norm and rotary applied."""
        cfg = self.cfg
        qkv = layer.qkv(h)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = _rms_norm(q.view(-1, cfg.num_heads, cfg.head_dim), layer.q_norm, cfg.rms_norm_eps)
        k = _rms_norm(k.view(-1, cfg.num_kv_heads, cfg.head_dim), layer.k_norm, cfg.rms_norm_eps)
        v = v.view(-1, cfg.num_kv_heads, cfg.head_dim)
        c, s = cos[:, None, :], sin[:, None, :]
        q = q * c + _rotate_half(q) * s
        k = k * c + _rotate_half(k) * s
        return q, k, v

    def _mlp_and_residual(self, layer: Layer, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        eps = self.cfg.rms_norm_eps
        x = x + _rms_norm(layer.o(attn_out), layer.post_attn_norm, eps)
        h = _rms_norm(x, layer.pre_ff_norm, eps)
        gate, up = layer.gate_up(h).chunk(2, dim=-1)
        h = layer.down(F.gelu(gate, approximate="tanh") * up)
        return x + _rms_norm(h, layer.post_ff_norm, eps)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        h = _rms_norm(x, self.final_norm, self.cfg.rms_norm_eps)
        logits = self.lm_head(h).float()
        cap = self.cfg.final_logit_softcapping
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    @torch.inference_mode()
    def prefill(self, tokens: list[int], cache: KVCache, *, all_logits: bool = False) -> torch.Tensor:
        """Append `tokens` to `cache` (which already holds cache.length tokens); return the last (or all) logits."""
        cfg = self.cfg
        start = cache.length
        n = len(tokens)
        cache.reserve(start + n)
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        x = F.embedding(ids, self.embed) * self.embed_scale
        positions = torch.arange(start, start + n, device=self.device)
        total = start + n
        key_pos = torch.arange(total, device=self.device)
        causal = key_pos[None, :] <= positions[:, None]
        window = causal & (positions[:, None] - key_pos[None, :] < cfg.sliding_window)
        rope_local = self._rope(positions, True)
        rope_global = self._rope(positions, False)
        group = cfg.num_heads // cfg.num_kv_heads
        scale = cfg.query_pre_attn_scalar**-0.5
        for li, layer in enumerate(self.layers):
            cos, sin = rope_local if layer.sliding else rope_global
            h = _rms_norm(x, layer.input_norm, cfg.rms_norm_eps)
            q, k, v = self._project_qkv(layer, h, cos, sin)
            cache.k[li, :, start:total] = k.transpose(0, 1)
            cache.v[li, :, start:total] = v.transpose(0, 1)
            keys = cache.k[li, :, :total].repeat_interleave(group, dim=0)  # [H, total, D]
            values = cache.v[li, :, :total].repeat_interleave(group, dim=0)
            mask = window if layer.sliding else causal
            attn = F.scaled_dot_product_attention(q.transpose(0, 1), keys, values, attn_mask=mask, scale=scale)
            attn = attn.transpose(0, 1).reshape(n, self.q_size)
            x = self._mlp_and_residual(layer, x, attn)
        cache.length = total
        return self._logits(x if all_logits else x[-1:])

    @torch.inference_mode()
    def decode(self, tokens: list[int], caches: list[KVCache]) -> torch.Tensor:
        """One token for each sequence (each at its own position); returns logits [B, vocab]."""
        cfg = self.cfg
        b = len(tokens)
        for cache in caches:
            cache.reserve(cache.length + 1)
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        x = F.embedding(ids, self.embed) * self.embed_scale
        positions = torch.tensor([c.length for c in caches], device=self.device)
        rope_local = self._rope(positions, True)
        rope_global = self._rope(positions, False)
        group = cfg.num_heads // cfg.num_kv_heads
        scale = cfg.query_pre_attn_scalar**-0.5
        for li, layer in enumerate(self.layers):
            cos, sin = rope_local if layer.sliding else rope_global
            h = _rms_norm(x, layer.input_norm, cfg.rms_norm_eps)
            q, k, v = self._project_qkv(layer, h, cos, sin)
            outs = []
            for i, cache in enumerate(caches):
                pos = cache.length
                cache.k[li, :, pos] = k[i]
                cache.v[li, :, pos] = v[i]
                lo = max(0, pos + 1 - cfg.sliding_window) if layer.sliding else 0
                keys = cache.k[li, :, lo : pos + 1]  # [KVH, S, D]
                values = cache.v[li, :, lo : pos + 1]
                qi = q[i].view(cfg.num_kv_heads, group, cfg.head_dim)  # heads sharing a kv head side by side
                scores = torch.matmul(qi, keys.transpose(1, 2)) * scale  # [KVH, group, S]
                probs = torch.softmax(scores.float(), dim=-1).to(self.dtype)
                outs.append(torch.matmul(probs, values).reshape(self.q_size))
            x = self._mlp_and_residual(layer, x, torch.stack(outs))
        for cache in caches:
            cache.length += 1
        del b
        return self._logits(x)


class StaticSlots:
    """Decode for a fixed set of slots over one static KV cache: [layers, slots, kv_heads, ctx, head_dim].

    Every step runs all slots with the same shapes (idle slots compute on a dummy token and are ignored), so on
    CUDA the step is captured once as a CUDA graph and replayed: no per-step allocation or Python dispatch per
    layer. Attention masks the whole context (keys after a slot's position, and outside the sliding window).
    Prefill runs the dynamic path into a temporary cache that is then copied into the slot.
    """

    def __init__(self, model: Gemma3, slots: int, context: int, *, use_cuda_graph: bool) -> None:
        cfg = model.cfg
        self.model = model
        self.slots = slots
        self.context = context
        device, dtype = model.device, model.dtype
        shape = (cfg.num_layers, slots, cfg.num_kv_heads, context, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.lengths = [0] * slots
        self.tokens = torch.zeros(slots, dtype=torch.long, device=device)
        self.positions = torch.zeros(slots, dtype=torch.long, device=device)
        self.key_positions = torch.arange(context, device=device)
        self.slot_index = torch.arange(slots, device=device)
        self.logits: torch.Tensor | None = None
        self.graph: Any = None
        self.use_cuda_graph = use_cuda_graph and device.type == "cuda"

    def load(self, slot: int, cache: KVCache) -> None:
        """Copies a prefilled sequence into a slot."""
        n = cache.length
        if n > self.context:
            raise ValueError(f"sequence of {n} tokens does not fit a {self.context}-token slot")
        self.k[:, slot, :, :n] = cache.k[:, :, :n]
        self.v[:, slot, :, :n] = cache.v[:, :, :n]
        self.lengths[slot] = n

    @torch.inference_mode()
    def _step(self) -> torch.Tensor:
        model, cfg = self.model, self.model.cfg
        x = F.embedding(self.tokens, model.embed) * model.embed_scale
        rope_local = model._rope(self.positions, True)
        rope_global = model._rope(self.positions, False)
        group = cfg.num_heads // cfg.num_kv_heads
        scale = cfg.query_pre_attn_scalar**-0.5
        causal = self.key_positions[None, :] <= self.positions[:, None]  # [S, ctx]
        window = causal & (self.positions[:, None] - self.key_positions[None, :] < cfg.sliding_window)
        for li, layer in enumerate(model.layers):
            cos, sin = rope_local if layer.sliding else rope_global
            h = _rms_norm(x, layer.input_norm, cfg.rms_norm_eps)
            q, k, v = model._project_qkv(layer, h, cos, sin)
            self.k[li, self.slot_index, :, self.positions] = k
            self.v[li, self.slot_index, :, self.positions] = v
            qg = q.view(self.slots, cfg.num_kv_heads, group, cfg.head_dim)
            scores = torch.matmul(qg, self.k[li].transpose(-1, -2)) * scale  # [S, KVH, group, ctx]
            mask = window if layer.sliding else causal
            scores = scores.float().masked_fill(~mask[:, None, None, :], float("-inf"))
            probs = torch.softmax(scores, dim=-1).to(model.dtype)
            attn = torch.matmul(probs, self.v[li]).reshape(self.slots, model.q_size)
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
        else:
            logits = self._step()
        assert logits is not None
        for slot in tokens:
            self.lengths[slot] += 1
        return {slot: logits[slot] for slot in tokens}

    def _capture(self) -> None:
        warmup = torch.cuda.Stream()
        warmup.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(warmup):
            for _ in range(2):  # warm-up writes land in idle positions that a real step overwrites
                self._step()
        torch.cuda.current_stream().wait_stream(warmup)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._step()
