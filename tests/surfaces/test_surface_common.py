"""The shared pieces of the surfaces: merging a native stream, reading its failures, Go-style framing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ollama_conformance.reference_backend.api.common import NativeStream, merge_native, model_namespace
from ollama_conformance.reference_backend.api.sse import go_json, sse_event

CALL_A = {"id": "call_a", "function": {"index": 0, "name": "f", "arguments": {}}}
CALL_B = {"id": "call_b", "function": {"index": 1, "name": "g", "arguments": {}}}


def chunk(content: str, *, calls: list | None = None, done: bool = False, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {"model": "m", "message": message, "done": done, **extra}


def test_merge_native_accumulates_like_ollama() -> None:
    items = [
        chunk("a", calls=[CALL_A], logprobs=[{"token": "a", "logprob": -1.0}]),
        chunk("b", calls=[CALL_B], logprobs=[{"token": "b", "logprob": -2.0}]),
        chunk("", done=True, done_reason="stop", eval_count=2),
    ]
    merged = merge_native(items, "chat", with_tools=True)
    assert merged["message"] == {"role": "assistant", "content": "ab", "tool_calls": [CALL_A, CALL_B]}
    assert [lp["token"] for lp in merged["logprobs"]] == ["a", "b"] and merged["eval_count"] == 2
    generated = merge_native([{"response": "x", "done": False}, {"response": "y", "done": True}], "generate", False)
    assert generated["response"] == "xy" and generated["done"] is True


def test_native_stream_reports_a_failure_after_the_first_item_as_an_error_object() -> None:
    async def failing() -> AsyncIterator[dict[str, Any]]:
        yield chunk("a")
        raise RuntimeError("engine fell over")

    async def run() -> list[dict[str, Any]]:
        return await (await NativeStream(failing()).start()).collect()

    assert asyncio.run(run()) == [chunk("a"), {"error": "engine fell over"}]


def test_go_json_escapes_and_framing() -> None:
    assert go_json({"a": "<b>&\u2028", "n": None}) == '{"a":"\\u003cb\\u003e\\u0026\\u2028","n":null}'
    assert sse_event("x", {"b": 1, "a": 2}, sort_keys=True) == b'event: x\ndata: {"a":2,"b":1}\n\n'


def test_model_namespace() -> None:
    assert [model_namespace(n) for n in ("gemma3:270m", "me/m:1", "host.io/ns/m", "m")] == [
        "library",
        "me",
        "ns",
        "library",
    ]


# --- a native error object in the middle of a stream, as each surface of Ollama ends it ----------------------


async def _items(*items: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


def _collect(stream: AsyncIterator[bytes]) -> bytes:
    async def run() -> bytes:
        return b"".join([part async for part in stream])

    return asyncio.run(run())


FIRST = {
    "model": "m",
    "created_at": "2026-11-21T10:00:00Z",
    "message": {"role": "assistant", "content": "a"},
    "response": "a",
    "done": False,
}
FAILURE = {"error": "model runner has unexpectedly stopped"}


def test_mid_stream_error_ends_openai_streams_without_done() -> None:
    from ollama_conformance.reference_backend.api.openai import ChatChunker, chat_sse, completion_sse

    raw = _collect(chat_sse(_items(FIRST, FAILURE, FIRST), ChatChunker("chatcmpl-1", include_usage=True)))
    events = raw.decode().split("\n\n")[:-1]
    assert len(events) == 2 and b"[DONE]" not in raw and b'"finish_reason":"' not in raw
    assert events[1].endswith(
        '"model":"","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":'
        '{"content":""},"finish_reason":null}]}'
    )
    raw = _collect(completion_sse(_items(FIRST, FAILURE), "cmpl-1", include_usage=False))
    assert raw.count(b"data: ") == 2 and b"[DONE]" not in raw


def test_mid_stream_error_ends_messages_and_responses_streams_early() -> None:
    from ollama_conformance.reference_backend.api.anthropic import MessagesStreamConverter, messages_sse
    from ollama_conformance.reference_backend.api.responses import ResponsesStreamConverter, responses_sse

    raw = _collect(messages_sse(_items(FIRST, FAILURE, FIRST), MessagesStreamConverter("msg_1", "m", 1)))
    assert raw.count(b"event: ") == 3 and b"message_stop" not in raw and b"message_delta" not in raw
    raw = _collect(responses_sse(_items(FAILURE), ResponsesStreamConverter({"model": "m"}, "resp_1", "msg_1")))
    assert raw.count(b"event: ") == 2 and b"response.completed" not in raw
