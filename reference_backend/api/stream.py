"""The native stream's objects: how a `stream: false` answer is merged from them. Needs no torch.

The native core yields the objects of Ollama's NDJSON stream whatever `stream` says; /api with `stream: false`
and the compatibility surfaces' non-stream answers (Ollama's middlewares read the native handler's merged
answer) both call `merge_stream`.
"""

from __future__ import annotations

from typing import Any

# Go struct order of api.GenerateResponse / api.ChatResponse: the streamed text fields come before done and the
# metrics.
_KEY_ORDER = ("model", "remote_model", "remote_host", "created_at", "response", "thinking", "message", "done",
              "done_reason", "_debug_info", "logprobs", "context")  # fmt: skip


def merge_stream(items: list[dict[str, Any]], kind: str, with_tools: bool) -> dict[str, Any]:
    """The non-streaming answer (`kind` "generate" or "chat"): the final object with the text (and logprobs,
    thinking, tool calls when the request had tools) of every chunk."""
    final = dict(items[-1])
    logprobs: list[Any] = []
    for item in items:
        logprobs.extend(item.get("logprobs") or [])
    if kind == "generate":
        final["response"] = "".join(i.get("response", "") for i in items)
        thinking = "".join(i.get("thinking", "") for i in items)
        if thinking:
            final["thinking"] = thinking
    else:
        message = dict(final.get("message") or {"role": "assistant"})
        message["content"] = "".join((i.get("message") or {}).get("content", "") for i in items)
        thinking = "".join((i.get("message") or {}).get("thinking", "") for i in items)
        if thinking:
            message["thinking"] = thinking
        calls = [c for i in items for c in (i.get("message") or {}).get("tool_calls") or []]
        if calls and with_tools:
            message["tool_calls"] = calls
        final["message"] = message
    if logprobs:
        final["logprobs"] = logprobs
    return _in_go_order(final)


def _in_go_order(obj: dict[str, Any]) -> dict[str, Any]:
    out = {k: obj[k] for k in _KEY_ORDER if k in obj}
    out.update({k: v for k, v in obj.items() if k not in out})
    return out
