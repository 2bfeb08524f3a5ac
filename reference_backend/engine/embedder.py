"""Sentence embeddings with all-MiniLM-L6-v2 (plain transformers + attention-mask mean pooling, as the
sentence-transformers pipeline of the package does: Transformer -> mean Pooling -> Normalize)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch


class InputTooLong(Exception):
    """An input is longer than the context and truncation is off."""


@dataclass
class EmbedResult:
    vectors: list[list[float]]
    token_counts: list[int]


class Embedder:
    def __init__(self, folder: Path, device: torch.device) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).to(device).eval()
        self.context_length = int(self.model.config.max_position_embeddings)
        self.lock = threading.Lock()

    def embed(self, texts: list[str], *, num_ctx: int, truncate: bool, normalize: bool) -> EmbedResult:
        limit = max(1, min(num_ctx, self.context_length))
        counts = [len(self.tokenizer(t, add_special_tokens=True)["input_ids"]) for t in texts]
        if not truncate and any(c > limit for c in counts):
            raise InputTooLong("the input length exceeds the context length")
        with self.lock, torch.inference_mode():
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt").to(
                self.device
            )
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
            vectors = pooled.float().cpu().tolist()
        return EmbedResult(vectors=vectors, token_counts=[min(c, limit) for c in counts])
