"""Prompt tokenization bounded by the context: a prompt longer than the context is truncated as Ollama's
llama-server runner truncates it (keep num_keep tokens plus BOS and the tail, freeing half of the rest), and only
the head and tail that survive are ever tokenized. No token covers more than `max_token_chars` characters, so a
text longer than num_ctx × that many characters is known to overflow without tokenizing it: a 64 MiB prompt
costs the tokenization of a few context-sized windows, not of 64 MiB.
"""

from __future__ import annotations

import functools
from typing import Any


class PromptTooLong(Exception):
    """The prompt does not fit the context and may not be truncated (truncate or shift false)."""


@functools.lru_cache(maxsize=4)
def _max_token_chars(tokenizer: Any) -> int:
    # a vocabulary piece is never shorter than the text it decodes to (SentencePiece's "▁" is one space, a
    # byte-level piece spells each byte with at least one character, "<0x0A>" is longer than its byte)
    vocab = tokenizer.get_vocab()
    return max(max(map(len, vocab), default=1), 1) + 1  # +1: room for a normalizer's edge


def max_token_chars(tokenizer: Any) -> int:
    """The most characters one token of this vocabulary stands for (31 for Gemma 3, its whitespace runs)."""
    return _max_token_chars(tokenizer)


def has_bos(tokenizer: Any) -> bool:
    return getattr(tokenizer, "bos_token_id", None) is not None


def certainly_longer(tokenizer: Any, text: str, num_tokens: int) -> bool:
    """True when `text` surely has more than `num_tokens` tokens, decided from its length alone."""
    return len(text) > num_tokens * max_token_chars(tokenizer)


def truncate_prompt(tokens: list[int], num_keep: int, bos: bool, num_ctx: int) -> list[int]:
    """llama_server.go completionPromptForRequest: keep num_keep tokens (plus BOS; all when negative) and the
    tail, leaving half of the rest of the context free, as the runner's first context shift would."""
    keep = _keep(num_keep, len(tokens), bos, num_ctx)
    limit = _limit(num_ctx, keep)
    discard = len(tokens) - limit
    return tokens[:keep] + tokens[keep + discard :]


def _keep(num_keep: int, total: int, bos: bool, num_ctx: int) -> int:
    keep = total if num_keep < 0 else num_keep
    return max(0, min(keep + (1 if bos else 0), num_ctx - 1))


def _limit(num_ctx: int, keep: int) -> int:
    return 0 if num_ctx <= 1 else num_ctx - max((num_ctx - keep) // 2, 1)


def tokenize_for_context(tokenizer: Any, text: str, num_ctx: int, num_keep: int, may_truncate: bool) -> list[int]:
    """The prompt's tokens as the runner would evaluate them: all of them when they fit (num_ctx - 1 at most),
    else truncated (or PromptTooLong when truncation is off). Work and memory are bounded by num_ctx."""
    bos = has_bos(tokenizer)
    if not certainly_longer(tokenizer, text, num_ctx):
        tokens: list[int] = tokenizer(text, add_special_tokens=True)["input_ids"]
        if len(tokens) <= num_ctx - 1:
            return tokens
        if not may_truncate:
            raise PromptTooLong
        return truncate_prompt(tokens, num_keep, bos, num_ctx)
    if not may_truncate:
        raise PromptTooLong
    width = max_token_chars(tokenizer)
    keep = _keep(num_keep, num_ctx, bos, num_ctx)  # the full count is unknown: negative num_keep keeps num_ctx - 1
    tail_count = _limit(num_ctx, keep) - keep
    head = tokenizer(text[: (keep + 2) * width], add_special_tokens=True)["input_ids"][:keep]
    if tail_count <= 0:
        return head
    # the window holds more than tail_count + 2 tokens; its first ones (cut at a character boundary) are dropped
    tail = tokenizer(text[-(tail_count + 2) * width :], add_special_tokens=False)["input_ids"][-tail_count:]
    return head + tail
