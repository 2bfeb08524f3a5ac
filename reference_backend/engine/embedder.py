"""Sentence embeddings with all-MiniLM-L6-v2: BERT's encoder + attention-mask mean pooling, as the
sentence-transformers pipeline of the package does (Transformer -> mean Pooling -> Normalize).

The encoder is written out here over the package's safetensors (memory-mapped) rather than run by transformers'
BertModel: importing transformers' modeling code pulls in torch._dynamo, triton, scipy and torch.distributed
(about 280 MB of resident memory for a 22 M-parameter model, more than the model itself). The arithmetic is
BertModel's (checked against it in tests/reference_backend/test_embedder.py); the tokenizer is still transformers'.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


class InputTooLong(Exception):
    """An input is longer than the context and truncation is off."""


@dataclass
class EmbedResult:
    vectors: list[list[float]]
    token_counts: list[int]


@dataclass(frozen=True)
class BertConfig:
    num_layers: int
    num_heads: int
    layer_norm_eps: float
    max_position_embeddings: int

    @classmethod
    def from_dir(cls, folder: Path) -> BertConfig:
        raw = json.loads((folder / "config.json").read_text())
        if raw.get("hidden_act", "gelu") != "gelu" or raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{folder}: only BERT with exact GELU and absolute positions is supported")
        return cls(
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=int(raw["num_attention_heads"]),
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
            max_position_embeddings=int(raw["max_position_embeddings"]),
        )


class BertEncoder:
    """BertModel's last_hidden_state: embeddings (word + position + token type 0, LayerNorm), then post-norm
    layers of self-attention and a GELU feed-forward. Padded keys are masked out of the attention."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        from safetensors.torch import load_file

        self.cfg = BertConfig.from_dir(folder)
        state = load_file(str(folder / "model.safetensors"))  # memory-mapped: only the rows looked up are read
        self.weights = {
            name.removeprefix("bert."): tensor.to(device=device, dtype=torch.float32)
            for name, tensor in state.items()
            if not name.endswith("position_ids")
        }

    def _w(self, name: str) -> torch.Tensor:
        return self.weights[name]

    def _layer_norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(
            x, (x.shape[-1],), self._w(f"{name}.weight"), self._w(f"{name}.bias"), self.cfg.layer_norm_eps
        )

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self._w(f"{name}.weight"), self._w(f"{name}.bias"))

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: [B, T] -> hidden states [B, T, hidden]."""
        batch, length = input_ids.shape
        positions = torch.arange(length, device=input_ids.device)
        x = (
            F.embedding(input_ids, self._w("embeddings.word_embeddings.weight"))
            + self._w("embeddings.position_embeddings.weight")[positions]
            + self._w("embeddings.token_type_embeddings.weight")[0]
        )
        x = self._layer_norm(x, "embeddings.LayerNorm")
        heads = self.cfg.num_heads
        head_dim = x.shape[-1] // heads
        keep = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, T]: which keys each query may attend to
        for i in range(self.cfg.num_layers):
            p = f"encoder.layer.{i}."

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(batch, length, heads, head_dim).transpose(1, 2)

            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=1.0 / math.sqrt(head_dim))
            context = context.transpose(1, 2).reshape(batch, length, -1)
            x = self._layer_norm(self._linear(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            inner = F.gelu(self._linear(x, p + "intermediate.dense"))
            x = self._layer_norm(self._linear(inner, p + "output.dense") + x, p + "output.LayerNorm")
        return x


class Embedder:
    def __init__(self, folder: Path, device: torch.device) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = BertEncoder(folder, device)
        self.context_length = self.model.cfg.max_position_embeddings
        self.lock = threading.Lock()

    def embed(self, texts: list[str], *, num_ctx: int, truncate: bool, normalize: bool) -> EmbedResult:
        limit = max(1, min(num_ctx, self.context_length))
        counts = [len(self.tokenizer(t, add_special_tokens=True)["input_ids"]) for t in texts]
        if not truncate and any(c > limit for c in counts):
            raise InputTooLong("the input length exceeds the context length")
        vectors: list[list[float]] = []
        with self.lock, torch.inference_mode():
            for group in batches_within(counts, limit, BATCH_TOKENS):
                vectors += self._embed_batch([texts[i] for i in group], limit, normalize)
        return EmbedResult(vectors=vectors, token_counts=[min(c, limit) for c in counts])

    def _embed_batch(self, texts: list[str], limit: int, normalize: bool) -> list[list[float]]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt").to(
            self.device
        )
        hidden = self.model(batch["input_ids"], batch["attention_mask"])
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled.float().cpu().tolist()


# padded tokens per forward pass: a request with many long inputs runs in several passes, so its activations
# (attention scores [batch, heads, length, length] above all: ~100 MB at this budget and 512 tokens) stay bounded
BATCH_TOKENS = 4096


def batches_within(counts: list[int], limit: int, budget: int) -> list[list[int]]:
    """Consecutive groups of input indices whose padded size (inputs x longest, each at most `limit` tokens)
    stays within `budget`; an input is never split (one alone may exceed it)."""
    groups: list[list[int]] = []
    longest = 0
    for index, count in enumerate(counts):
        length = min(count, limit)
        if groups and max(longest, length) * (len(groups[-1]) + 1) <= budget:
            groups[-1].append(index)
            longest = max(longest, length)
        else:
            groups.append([index])
            longest = length
    return groups
