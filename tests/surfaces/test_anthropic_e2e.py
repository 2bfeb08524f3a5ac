"""/v1/messages against the real reference backend: the official anthropic SDK and the raw SSE bytes."""

from __future__ import annotations

import re
from typing import Any

import anthropic
import httpx
import pytest

from .wire import CHAT_MODEL, post_stream, split_sse

pytestmark = pytest.mark.slow

USER = [{"role": "user", "content": "Name a colour."}]
TOOL = {"name": "calculator", "description": "Arithmetic.",
        "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}
TOOL_HISTORY = [
    {"role": "user", "content": "Use the calculator to compute 15 * 7."},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "call_dg2g1ozz", "name": "calculator",
                                       "input": {"expression": "15 * 7"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_dg2g1ozz", "content": "105"}]},
]


def test_sdk_message_non_stream(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(model=CHAT_MODEL, max_tokens=5, messages=USER,
                                               system=[{"type": "text", "text": "Be brief."}], temperature=0)
    assert re.fullmatch(r"msg_[0-9a-f]{24}", message.id)
    assert (message.type, message.role, message.model) == ("message", "assistant", CHAT_MODEL)
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert all(block.type == "text" for block in message.content or [])
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 5


def test_sdk_message_stream(anthropic_client: anthropic.Anthropic) -> None:
    with anthropic_client.messages.stream(model=CHAT_MODEL, max_tokens=4, messages=USER, system="Be brief.",
                                          stop_sequences=["\u2603never"]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens <= 4


def test_wire_stream_event_order(http: httpx.Client) -> None:
    response, raw = post_stream(http, "/v1/messages",
                                {"model": CHAT_MODEL, "max_tokens": 4, "messages": USER, "stream": True})
    assert response.status_code == 200, raw
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    events = split_sse(raw)
    payloads = [e.json() for e in events]
    assert all(e.name == p["type"] for e, p in zip(events, payloads, strict=True))
    names = [e.name for e in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert "ping" not in names and "error" not in names
    start = payloads[0]["message"]
    assert start["content"] == [] and start["usage"]["output_tokens"] == 0 and start["usage"]["input_tokens"] > 0
    assert "stop_reason" not in start
    open_block: int | None = None
    seen: list[int] = []
    for name, payload in zip(names[1:-2], payloads[1:-2], strict=True):
        if name == "content_block_start":
            assert open_block is None and payload["index"] == len(seen)
            open_block = payload["index"]
            seen.append(open_block)
            assert payload["content_block"] == {"type": "text", "text": ""}
        elif name == "content_block_delta":
            assert payload["index"] == open_block and payload["delta"]["type"] == "text_delta"
        else:
            assert name == "content_block_stop" and payload["index"] == open_block
            open_block = None
    assert open_block is None
    delta = payloads[-2]
    assert delta["delta"]["stop_reason"] in ("end_turn", "max_tokens")
    assert set(delta["usage"]) == {"input_tokens", "output_tokens"}


def test_token_counts_agree_with_native(http: httpx.Client) -> None:
    native = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False,
                                          "options": {"num_predict": 5, "temperature": 0}}).json()
    message = http.post("/v1/messages", json={"model": CHAT_MODEL, "max_tokens": 5, "messages": USER,
                                              "temperature": 0}).json()
    assert message["usage"] == {"input_tokens": native["prompt_eval_count"], "output_tokens": native["eval_count"]}
    text = "".join(block["text"] for block in message["content"] or [] if block["type"] == "text")
    assert text == native["message"]["content"]


def test_tool_use_round_trip(anthropic_client: anthropic.Anthropic) -> None:
    """The tool_use/tool_result history is accepted and answered; asking a model without the `tools`
    capability to call tools is Ollama's 400, in Anthropic's shape."""
    answer = anthropic_client.messages.create(model=CHAT_MODEL, max_tokens=4, messages=TOOL_HISTORY)
    assert answer.role == "assistant" and answer.stop_reason in ("end_turn", "max_tokens")
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.messages.create(model=CHAT_MODEL, max_tokens=4, messages=TOOL_HISTORY, tools=[TOOL])
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"] == {
        "type": "invalid_request_error", "message": "registry.ollama.ai/library/gemma3:270m does not support tools"}


def test_thinking_is_relaxed_on_a_model_that_cannot_think(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(model=CHAT_MODEL, max_tokens=3, messages=USER,
                                               thinking={"type": "enabled", "budget_tokens": 1024})
    assert all(block.type == "text" for block in message.content or [])


ERRORS = [
    ({"max_tokens": 5, "messages": USER}, 400, "invalid_request_error", "model is required"),
    ({"model": CHAT_MODEL, "messages": USER}, 400, "invalid_request_error", "max_tokens is required and must be positive"),
    ({"model": CHAT_MODEL, "max_tokens": 5, "messages": []}, 400, "invalid_request_error", "messages is required"),
    ({"model": "nope:1b", "max_tokens": 5, "messages": USER}, 404, "not_found_error", "model 'nope:1b' not found"),
    ({"model": CHAT_MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]}, 400,
     "invalid_request_error", "invalid image source type: url. Only base64 images are supported."),
]


@pytest.mark.parametrize(("body", "status", "kind", "message"), ERRORS)
def test_error_bodies(http: httpx.Client, body: dict[str, Any], status: int, kind: str, message: str) -> None:
    response = http.post("/v1/messages", json=body)
    assert response.status_code == status and response.headers["content-type"] == "application/json"
    payload = response.json()
    assert re.fullmatch(r"req_[0-9a-f]{24}", payload.pop("request_id"))
    assert payload == {"type": "error", "error": {"type": kind, "message": message}}
