"""The embedder's hand-written BERT encoder against transformers' BertModel on the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import torch
from transformers import AutoModel

from ollama_conformance.reference_backend.engine import embedder as embedder_module
from ollama_conformance.reference_backend.engine.embedder import Embedder, batches_within
from ollama_conformance.reference_backend.store import bundled

TEXTS = [
    "The sky is blue.",
    "Pizza is tasty, and a much longer sentence pads the shorter ones of this batch with several extra tokens.",
    "x",
]


def test_encoder_matches_transformers_bert() -> None:
    folder = bundled.minilm_dir()
    embedder = Embedder(folder, torch.device("cpu"))
    reference = AutoModel.from_pretrained(str(folder), dtype=torch.float32, use_kernels=False).eval()
    batch = embedder.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        ours = embedder.model(batch["input_ids"], batch["attention_mask"])
        theirs = reference(**batch).last_hidden_state
    real = batch["attention_mask"].bool()  # padded positions' outputs are never pooled
    assert (ours[real] - theirs[real]).abs().max().item() < 1e-4


def test_embeddings_are_mean_pooled_and_normalized() -> None:
    folder = bundled.minilm_dir()
    embedder = Embedder(folder, torch.device("cpu"))
    reference = AutoModel.from_pretrained(str(folder), dtype=torch.float32, use_kernels=False).eval()
    result = embedder.embed(TEXTS, num_ctx=512, truncate=True, normalize=True)
    for text, vector in zip(TEXTS, result.vectors, strict=True):
        alone = embedder.tokenizer([text], return_tensors="pt")
        with torch.inference_mode():
            expected = torch.nn.functional.normalize(reference(**alone).last_hidden_state.mean(dim=1), dim=-1)[0]
        # batched with padding or alone: the same vector
        assert (torch.tensor(vector) - expected).abs().max().item() < 1e-5
    raw = embedder.embed(["The sky is blue."], num_ctx=512, truncate=True, normalize=False)
    assert sum(v * v for v in raw.vectors[0]) > 1.5


def test_inputs_are_grouped_within_the_token_budget() -> None:
    assert batches_within([10, 10, 10], 512, 30) == [[0, 1, 2]]
    assert batches_within([10, 20, 5, 600], 512, 40) == [[0, 1], [2], [3]]  # 20 x 3 > 40; 600 alone, cut to 512
    assert batches_within([], 512, 40) == []


def test_a_request_in_several_passes_gives_the_same_vectors(monkeypatch) -> None:
    embedder = Embedder(bundled.minilm_dir(), torch.device("cpu"))
    whole = embedder.embed(TEXTS, num_ctx=512, truncate=True, normalize=True)
    monkeypatch.setattr(embedder_module, "BATCH_TOKENS", 8)  # one input per pass
    split = embedder.embed(TEXTS, num_ctx=512, truncate=True, normalize=True)
    assert whole.token_counts == split.token_counts
    for a, b in zip(whole.vectors, split.vectors, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5
