"""How faithful the CPU default is to the fp32 computation, measured as llama.cpp measures a quantization
(`llama-perplexity --kl-divergence`): one fixed text, teacher-forced through both models, and at every position the
top-1 agreement and the KL divergence KL(fp32 || default) of the next-token distributions.

The default's distribution is what its sampler draws from: the int4 screen's logits with the candidates that
`Gemma3.settle` recomputes in fp32 (those that can rank among Ollama's default top_k of 40) put in their place.

    python -m ollama_conformance.reference_backend.faithfulness [--tokens N] [--precision gguf|int8|bf16]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch

CHUNK = 128  # positions teacher-forced at a time: two [CHUNK, vocab] fp32 logit tensors stay ~128 MB each
DRAWN = 40  # Ollama's default top_k: the candidates whose logits the sampler sees exactly


def fixed_text() -> str:
    """The shipped text (a frozen copy of the project's docs/internals.md: prose, tables and code names)."""
    return resources.files("ollama_conformance.fixtures").joinpath("faithfulness", "text.md").read_text()


@dataclass
class Faithfulness:
    tokens: int
    top1_agreement: float
    mean_kl: float
    max_kl: float
    p99_kl: float
    seconds: float
    tie_gaps: list[float]  # at each disagreement, fp32's gap between its top two log-probabilities

    def lines(self) -> list[str]:
        return [
            f"tokens scored:   {self.tokens}",
            f"top-1 agreement: {100 * self.top1_agreement:.2f} %",
            f"mean KL:         {self.mean_kl:.6f}",
            f"99th pct KL:     {self.p99_kl:.6f}",
            f"max KL:          {self.max_kl:.6f}",
            f"disagreements:   {len(self.tie_gaps)}, at fp32 top-2 gaps (nats) "
            + ", ".join(f"{gap:.3f}" for gap in sorted(self.tie_gaps)[:12])
            + (" ..." if len(self.tie_gaps) > 12 else ""),
        ]


def drawn_logits(model: Any, values: torch.Tensor) -> torch.Tensor:
    """The candidate model's fp32 logits `values` as its sampler sees them, written over `values` (a [CHUNK, vocab]
    tensor is 128 MB; each fresh one costs its page faults): with a screened or rescored head, the tokens that can
    rank among the DRAWN highest are fp32's (the rule of `settle`, applied to the whole chunk at once) and the rest
    keep the screen's value. The fp32 rows are those of the tokens kept at any position of the chunk, gathered a
    few thousand at a time (`exact_logits`' gathered path, as settle reads them): a tenth of the vocabulary here,
    instead of a second fp32 pass over the whole head."""
    if model.head_rows is None:
        return values
    hidden, bound = model.head_rows
    scratch = torch.sub(values, bound)
    floor = torch.topk(scratch, DRAWN, dim=-1).values[:, -1:]
    keep = torch.add(values, bound, out=scratch) >= floor
    del scratch
    ids = torch.nonzero(keep.any(dim=0)).squeeze(-1)
    step = model.rescored.GATHER_ROWS
    exact = torch.cat([model.exact_logits(hidden, ids[i : i + step]) for i in range(0, ids.numel(), step)], dim=-1)
    values[:, ids] = torch.where(keep[:, ids], exact, values[:, ids])
    return values


@torch.inference_mode()  # the models' logits are inference tensors: written over in place only in this mode
def measure(reference: Any, candidate: Any, token_ids: list[int]) -> Faithfulness:
    """Teacher-force `token_ids` through both models; compare the distributions of every position but the last."""
    started = time.monotonic()
    ref_cache = reference.new_cache(len(token_ids))
    cand_cache = candidate.new_cache(len(token_ids))
    agree, kls, gaps = 0, [], []
    scored = len(token_ids) - 1
    for begin in range(0, scored, CHUNK):
        chunk = token_ids[begin : min(begin + CHUNK, scored)]
        ref = torch.log_softmax(reference.prefill(chunk, ref_cache, all_logits=True).float(), dim=-1)
        drawn = drawn_logits(candidate, candidate.prefill(chunk, cand_cache, all_logits=True).float())
        cand = torch.log_softmax(drawn, -1)
        del drawn
        same = ref.argmax(dim=-1) == cand.argmax(dim=-1)
        agree += int(same.sum())
        top2 = torch.topk(ref[~same], 2, dim=-1).values
        gaps.extend((top2[:, 0] - top2[:, 1]).tolist())
        # sum p_ref * (log p_ref - log p_cand), with no further [CHUNK, vocab] tensor: the same elementwise
        # operations in the same order as exp(ref) * (ref - cand), written over the two we have
        difference = torch.sub(ref, cand, out=cand)
        kls.append(ref.exp_().mul_(difference).sum(dim=-1).clamp(min=0))
    kl = torch.cat(kls).double()
    return Faithfulness(
        tokens=scored,
        top1_agreement=agree / scored,
        mean_kl=float(kl.mean()),
        max_kl=float(kl.max()),
        p99_kl=float(torch.quantile(kl, 0.99)),
        seconds=time.monotonic() - started,
        tie_gaps=gaps,
    )


def load_models(precision: str) -> tuple[Any, Any, Any]:
    """(fp32 reference, the candidate at `precision`, tokenizer) from the bundled gemma3:270m."""
    import warnings

    from transformers import AutoTokenizer

    from ollama_conformance.reference_backend.engine.model import Gemma3
    from ollama_conformance.reference_backend.store import model_cache

    gguf = model_cache.gemma_gguf_path()
    digest = model_cache.sha256_of(gguf)
    folder = model_cache.ensure_engine_layout(model_cache.ensure_converted(gguf, digest))
    cpu = torch.device("cpu")
    reference = Gemma3.from_hf_dir(folder, dtype=torch.float32, device=cpu, int8=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if precision == "gguf":
            model_cache.ensure_quantized_layout(folder, gguf)
            candidate = Gemma3.from_hf_dir(folder, dtype=torch.float32, device=cpu, int8=False, quantized=True)
        elif precision == "rescored":
            candidate = Gemma3.from_hf_dir(folder, dtype=torch.float32, device=cpu, int8=False, rescored_head=True)
        else:
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            candidate = Gemma3.from_hf_dir(folder, dtype=dtype, device=cpu, int8=precision == "int8")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return reference, candidate, tokenizer


def text_tokens(tokenizer: Any, limit: int) -> list[int]:
    ids = tokenizer(fixed_text(), add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id, *ids][:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ollama_conformance.reference_backend.faithfulness")
    parser.add_argument("--tokens", type=int, default=2048, help="positions of the fixed text to score (>= 16)")
    parser.add_argument(
        "--precision",
        default="gguf",
        choices=["gguf", "rescored", "int8", "bf16"],
        help="the CPU mode compared with fp32 (gguf: the default, the GGUF's weights as stored)",
    )
    args = parser.parse_args(argv)
    if args.tokens < 16:
        parser.error("--tokens must be at least 16")
    torch.set_grad_enabled(False)
    reference, candidate, tokenizer = load_models(args.precision)
    tokens = text_tokens(tokenizer, args.tokens + 1)
    if len(tokens) < args.tokens + 1:
        print(f"note: the fixed text has only {len(tokens) - 1} positions to score", file=sys.stderr)
    result = measure(reference, candidate, tokens)
    print(f"faithfulness of --precision {args.precision} against fp32 (gemma3:270m, teacher-forced fixed text)")
    for line in result.lines():
        print("  " + line)
    print(f"  ({result.seconds:.1f} s; KL in nats; llama-perplexity --kl-divergence reports the same statistics)")
    return 0 if math.isfinite(result.mean_kl) else 1


if __name__ == "__main__":
    sys.exit(main())
