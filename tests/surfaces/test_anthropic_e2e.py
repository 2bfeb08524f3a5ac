"""/v1/messages against the real reference backend: the official anthropic SDK and the raw SSE bytes."""

from __future__ import annotations

import re
from typing import Any

import anthropic
import httpx
import pytest

from .wire import CHAT_MODEL, FEW_SHOT, LAST_QUESTION, WEATHER_PARAMETERS, capabilities, post_stream, split_sse

pytestmark = pytest.mark.slow

USER = [{"role": "user", "content": "Name a colour."}]
TOOL_HISTORY = [
    {"role": "user", "content": "Use the calculator to compute 15 * 7."},
    {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_dg2g1ozz", "name": "calculator", "input": {"expression": "15 * 7"}}
        ],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_dg2g1ozz", "content": "105"}]},
]


def test_sdk_message_non_stream(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=CHAT_MODEL,
        max_tokens=5,
        messages=USER,
        system=[{"type": "text", "text": "Be brief."}],
        extra_body={"temperature": 0},
    )
    assert re.fullmatch(r"msg_[0-9a-f]{24}", message.id)
    assert (message.type, message.role, message.model) == ("message", "assistant", CHAT_MODEL)
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert all(block.type == "text" for block in message.content or [])
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 5


def test_sdk_message_stream(anthropic_client: anthropic.Anthropic) -> None:
    with anthropic_client.messages.stream(
        model=CHAT_MODEL, max_tokens=4, messages=USER, system="Be brief.", stop_sequences=["\u2603never"]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens <= 4


def test_wire_stream_event_order(http: httpx.Client) -> None:
    response, raw = post_stream(
        http, "/v1/messages", {"model": CHAT_MODEL, "max_tokens": 4, "messages": USER, "stream": True}
    )
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
    native = http.post(
        "/api/chat",
        json={"model": CHAT_MODEL, "messages": USER, "stream": False, "options": {"num_predict": 5, "temperature": 0}},
    ).json()
    message = http.post(
        "/v1/messages", json={"model": CHAT_MODEL, "max_tokens": 5, "messages": USER, "temperature": 0}
    ).json()
    assert message["usage"] == {"input_tokens": native["prompt_eval_count"], "output_tokens": native["eval_count"]}
    text = "".join(block["text"] for block in message["content"] or [] if block["type"] == "text")
    assert text == native["message"]["content"]


def tool_conversation() -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i, (city, result, answer) in enumerate(FEW_SHOT):
        messages += [
            {"role": "user", "content": f"Weather in {city}?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": f"toolu_{i}", "name": "get_weather", "input": {"city": city}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": result}]},
            {"role": "assistant", "content": answer},
        ]
    return [*messages, {"role": "user", "content": LAST_QUESTION}]


def test_tool_use_round_trip(anthropic_client: anthropic.Anthropic, http: httpx.Client) -> None:
    """tool_use/tool_result history is accepted; the model's call comes back as a tool_use block (streamed as
    content_block_start with empty input, one input_json_delta, content_block_stop)."""
    answer = anthropic_client.messages.create(model=CHAT_MODEL, max_tokens=4, messages=TOOL_HISTORY)
    assert answer.role == "assistant" and answer.stop_reason in ("end_turn", "max_tokens")
    tool = {"name": "get_weather", "description": "Weather.", "input_schema": WEATHER_PARAMETERS}
    if "tools" not in capabilities(http):
        with pytest.raises(anthropic.BadRequestError) as caught:
            anthropic_client.messages.create(model=CHAT_MODEL, max_tokens=4, messages=TOOL_HISTORY, tools=[tool])
        body: Any = caught.value.body
        assert body["type"] == "error" and body["error"]["message"].endswith(" does not support tools")
        return
    with anthropic_client.messages.stream(
        model=CHAT_MODEL, max_tokens=20, tools=[tool], extra_body={"temperature": 0}, messages=tool_conversation()
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    uses = [block for block in final.content if block.type == "tool_use"]
    assert uses, "the few-shot conversation should make the model call get_weather"
    assert uses[0].name == "get_weather" and isinstance(uses[0].input, dict) and uses[0].id
    assert final.stop_reason == "tool_use"
    starts = [e for e in events if e.type == "content_block_start" and e.content_block.type == "tool_use"]
    assert len(starts) == 1 and starts[0].content_block.input == {}
    json_deltas = [e for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert len(json_deltas) == 1 and json_deltas[0].index == starts[0].index


def test_thinking_is_relaxed_on_a_model_that_cannot_think(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=CHAT_MODEL, max_tokens=3, messages=USER, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    assert all(block.type == "text" for block in message.content or [])


ERRORS = [
    ({"max_tokens": 5, "messages": USER}, 400, "invalid_request_error", "model is required"),
    (
        {"model": CHAT_MODEL, "messages": USER},
        400,
        "invalid_request_error",
        "max_tokens is required and must be positive",
    ),
    ({"model": CHAT_MODEL, "max_tokens": 5, "messages": []}, 400, "invalid_request_error", "messages is required"),
    ({"model": "nope:1b", "max_tokens": 5, "messages": USER}, 404, "not_found_error", "model 'nope:1b' not found"),
    (
        {
            "model": CHAT_MODEL,
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}],
                }
            ],
        },
        400,
        "invalid_request_error",
        "invalid image source type: url. Only base64 images are supported.",
    ),
]


@pytest.mark.parametrize(("body", "status", "kind", "message"), ERRORS)
def test_error_bodies(http: httpx.Client, body: dict[str, Any], status: int, kind: str, message: str) -> None:
    response = http.post("/v1/messages", json=body)
    assert response.status_code == status
    from_native = status == 404  # the native handler's error passes through the writer; the rest are gin's
    assert response.headers["content-type"] == (
        "application/json" if from_native else "application/json; charset=utf-8"
    )
    payload = response.json()
    assert re.fullmatch(r"req_[0-9a-f]{24}", payload.pop("request_id"))
    assert payload == {"type": "error", "error": {"type": kind, "message": message}}
