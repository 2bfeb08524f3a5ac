"""Token sampling with Ollama's options, in llama.cpp's order (Ollama's runner is llama-server):

penalties (repeat / presence / frequency over the last repeat_last_n tokens) -> top_k -> typical_p -> top_p ->
min_p -> temperature -> draw. temperature <= 0 is greedy. A request with a seed draws from its own generator, so
the same seed and options give the same tokens.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import torch

from ollama_conformance.reference_backend.engine.options import Options


class Sampler:
    def __init__(self, options: Options) -> None:
        self.options = options
        # Go converts any JSON number to the int option (no error): a seed beyond int64 must not fail the request
        seed = int(options.seed) % (1 << 63) if options.seed >= 0 else random.getrandbits(63)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

    def penalize(self, logits: torch.Tensor, history: list[int], ids: torch.Tensor | None = None) -> torch.Tensor:
        """The logits after the repeat / presence / frequency penalties. `ids`: `logits` holds only those tokens'
        logits (a candidate set, Gemma3.candidates), logits[j] being token ids[j]'s."""
        o = self.options
        last_n = o.repeat_last_n if o.repeat_last_n >= 0 else len(history)
        if last_n == 0 or not history:
            return logits
        if o.repeat_penalty == 1.0 and o.presence_penalty == 0.0 and o.frequency_penalty == 0.0:
            return logits
        counts = Counter(history[-last_n:])
        if ids is None:
            tokens = list(counts)
            where = torch.tensor(tokens, dtype=torch.long)
        else:
            position = {token: j for j, token in enumerate(ids.tolist())}
            tokens = [token for token in counts if token in position]
            if not tokens:
                return logits
            where = torch.tensor([position[token] for token in tokens], dtype=torch.long)
        freq = torch.tensor([counts[token] for token in tokens], dtype=logits.dtype)
        selected = logits[where]
        if o.repeat_penalty != 1.0:
            selected = torch.where(selected > 0, selected / o.repeat_penalty, selected * o.repeat_penalty)
        selected = selected - freq * o.frequency_penalty - o.presence_penalty
        logits = logits.clone()
        logits[where] = selected
        return logits

    def penalized_tokens(self, history: list[int]) -> torch.Tensor:
        """The tokens `penalize` changes (none when no penalty applies)."""
        o = self.options
        last_n = o.repeat_last_n if o.repeat_last_n >= 0 else len(history)
        if last_n == 0 or (o.repeat_penalty == 1.0 and o.presence_penalty == 0.0 and o.frequency_penalty == 0.0):
            return torch.empty(0, dtype=torch.long)
        return torch.tensor(sorted(set(history[-last_n:])), dtype=torch.long)

    def ranks_drawn(self, vocab: int) -> int:
        """How many of the highest penalized logits `sample` draws from (1 when greedy)."""
        o = self.options
        if o.temperature <= 0:
            return 1
        k = o.top_k if 0 < o.top_k < vocab else vocab
        return min(k, 1024) if o.top_k <= 0 else k

    def penalty_gain(self) -> float:
        """How much `penalize` can stretch a difference between two logits (a repeat penalty p multiplies
        negative logits by p, divides positive ones by p); inf when it can reorder them arbitrarily."""
        p = self.options.repeat_penalty
        if p <= 0 or math.isnan(p):
            return math.inf
        return max(p, 1.0 / p)

    def sample(self, logits: torch.Tensor, history: list[int], ids: torch.Tensor | None = None, vocab: int = 0) -> int:
        """logits: [vocab] fp32 (already masked by a grammar where one applies). With `ids`, logits[j] is token
        ids[j]'s and every token outside `ids` is out of the draw (a candidate set of a `vocab`-token
        vocabulary, Gemma3.candidates): the same draw as over the whole vector with -inf outside `ids`."""
        o = self.options
        logits = self.penalize(logits, history, ids)
        token_of = (lambda j: j) if ids is None else (lambda j: int(ids[j]))
        if logits.numel() == 0:  # no candidate (a grammar forbade every token): what argmax gives over -inf
            return 0
        if o.temperature <= 0:
            return token_of(int(torch.argmax(logits).item()))
        k = min(self.ranks_drawn(vocab or logits.shape[0]), logits.shape[0])  # an unbounded top_k: at most 1024
        values, indices = torch.topk(logits, k)
        finite = torch.isfinite(values)
        values, indices = values[finite], indices[finite]
        if values.numel() == 0:
            return token_of(int(torch.argmax(logits).item()))
        probs = torch.softmax(values, dim=-1)
        keep = torch.ones_like(probs, dtype=torch.bool)
        if 0 < o.typical_p < 1.0:
            logp = torch.log(probs.clamp_min(1e-30))
            entropy = -(probs * logp).sum()
            shifted = (-logp - entropy).abs()
            order = torch.argsort(shifted)
            cum = torch.cumsum(probs[order], dim=0)
            cutoff = int(torch.searchsorted(cum, torch.tensor(o.typical_p)).item()) + 1
            mask = torch.zeros_like(keep)
            mask[order[: max(cutoff, 1)]] = True
            keep &= mask
        if 0 < o.top_p < 1.0:
            cum = torch.cumsum(probs, dim=0)  # probs are sorted descending (topk)
            cutoff = int(torch.searchsorted(cum, torch.tensor(o.top_p)).item()) + 1
            keep[max(cutoff, 1) :] = False
        if o.min_p > 0:
            keep &= probs >= o.min_p * probs[0]
        keep[0] = True
        scaled = values[keep] / max(o.temperature, 1e-6)
        final = torch.softmax(scaled, dim=-1)
        choice = torch.multinomial(final, 1, generator=self.generator)
        return token_of(int(indices[keep][choice].item()))


def log_softmax_top(logits: torch.Tensor, token: int, top: int) -> tuple[float, list[tuple[int, float]]]:
    """The chosen token's log-probability and the `top` most likely alternatives (token, logprob)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    chosen = float(logp[token].item())
    alternatives: list[tuple[int, float]] = []
    if top > 0:
        values, indices = torch.topk(logp, top)
        alternatives = [(int(i), float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)]
    if math.isinf(chosen):
        chosen = -1e30
    return chosen, alternatives
