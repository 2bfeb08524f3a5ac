"""Constrained decoding with xgrammar: `format` ("json" or a JSON Schema) and tool-call arguments.

For tools the grammar is lazy (xgrammar's triggered structural tags): text is free until the model starts a
call (`{"name": `), and from there the call must be one of the tools with arguments that match its schema.
The token mask is applied with our own unpacking of xgrammar's int32 bitmask (much faster on CPU than the
generic kernels, feasibility §6). Grammars compile once per (tokenizer, format) and are cached.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from typing import Any

import torch

from ollama_conformance.reference_backend.store.bundled import GEMMA_STOP_TOKEN_IDS

TOOL_CALL_TRIGGER = '{"name": '


class GrammarError(ValueError):
    """A format or tool schema xgrammar cannot compile: Ollama's message for an invalid format."""


# One compiler per tokenizer folder (not per tokenizer object: a model unloaded and loaded again gets a new one,
# and a compiler per load was kept for ever), its cache of compiled grammars bounded.
_compilers: dict[tuple[str, int], Any] = {}
_lock = threading.Lock()
GRAMMAR_CACHE_BYTES = 64 << 20


def _compiler(tokenizer: Any, vocab_size: int) -> Any:
    import xgrammar as xgr

    key = (str(getattr(tokenizer, "name_or_path", "") or id(tokenizer)), vocab_size)
    with _lock:
        compiler = _compilers.get(key)
        if compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(
                tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(GEMMA_STOP_TOKEN_IDS)
            )
            compiler = xgr.GrammarCompiler(
                info, max_threads=2, cache_enabled=True, cache_limit_bytes=GRAMMAR_CACHE_BYTES
            )
            _compilers[key] = compiler
        return compiler


@functools.lru_cache(maxsize=1)
def _bit_positions() -> torch.Tensor:
    return torch.arange(32, dtype=torch.int32)


class XGrammarConstraint:
    def __init__(self, compiled: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self.matcher = xgr.GrammarMatcher(compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self.vocab_size = vocab_size

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        needed = self.matcher.fill_next_token_bitmask(self.bitmask)
        if needed is False:
            return logits
        bits = ((self.bitmask[0].unsqueeze(-1) >> _bit_positions()) & 1).bool().flatten()
        allowed = bits[: logits.shape[-1]]
        if allowed.shape[0] < logits.shape[-1]:
            allowed = torch.cat([allowed, torch.zeros(logits.shape[-1] - allowed.shape[0], dtype=torch.bool)])
        return logits.masked_fill(~allowed, float("-inf"))

    def accept(self, token: int) -> None:
        if not self.matcher.is_terminated():
            self.matcher.accept_token(token)

    def is_terminated(self) -> bool:
        return self.matcher.is_terminated()


# Ollama's "json" grammar (llama.cpp's json.gbnf) has `root ::= object`: an array or a bare value is not JSON mode.
JSON_MODE_SCHEMA = {"type": "object"}


def _compile_format(compiler: Any, fmt: Any) -> Any:
    if fmt == "json":
        return compiler.compile_json_schema(json.dumps(JSON_MODE_SCHEMA), any_whitespace=False, strict_mode=False)
    try:
        # strict: like llama.cpp's schema converter, an object admits no property its schema does not name
        return compiler.compile_json_schema(json.dumps(fmt), any_whitespace=False, strict_mode=True)
    except Exception as exc:
        raise GrammarError(
            f'invalid format: "{json.dumps(fmt)}"; expected "json" or a valid JSON Schema object'
        ) from exc


def _compile_tools(compiler: Any, tools: list[dict[str, Any]]) -> Any:
    import xgrammar as xgr

    tags = []
    for tool in tools:
        function = tool.get("function") or {}
        name = function.get("name")
        if not isinstance(name, str) or not name:
            continue
        schema = function.get("parameters") or {"type": "object"}
        tags.append(
            xgr.StructuralTagItem(
                begin=f'{TOOL_CALL_TRIGGER}{json.dumps(name)}, "arguments": ', schema=json.dumps(schema), end="}"
            )
        )
    if not tags:
        return None
    try:
        return compiler.compile_structural_tag(tags, [TOOL_CALL_TRIGGER])
    except Exception as exc:
        raise GrammarError(f"invalid tool schema: {exc}") from exc


def constraint_factory(
    loaded: Any, fmt: Any, tools: list[dict[str, Any]] | None
) -> Callable[[], XGrammarConstraint | None]:
    """Compiles now (so a bad schema fails before the stream starts); each sequence gets its own matcher."""
    tokenizer = loaded.tokenizer
    vocab_size = loaded.runner.model.cfg.vocab_size
    compiler = _compiler(tokenizer, vocab_size)
    # a format wins over tool calls (Ollama constrains the whole answer to the format)
    compiled = _compile_format(compiler, fmt) if fmt is not None else _compile_tools(compiler, tools or [])
    if compiled is None:
        return lambda: None
    return lambda: XGrammarConstraint(compiled, vocab_size)
