"""The /v1/messages translation as pure functions (Ollama's `anthropic/anthropic.go`, v0.33.0-rc2)."""

from __future__ import annotations

import base64
import re

import pytest

from ollama_conformance.reference_backend.api.anthropic import (
    REQUEST_FIELDS,
    MessagesStreamConverter,
    error_body,
    estimate_input_tokens,
    messages_request_to_native,
    to_message,
)
from ollama_conformance.reference_backend.api.common import RequestError, decode_struct

IMG = base64.b64encode(b"\x89PNG fake").decode()
FINAL = {"done": True, "done_reason": "stop", "prompt_eval_count": 12, "eval_count": 4}


def native(**req: object) -> dict:
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], **req}
    return messages_request_to_native(decode_struct(body, "anthropic.MessagesRequest", REQUEST_FIELDS))


def test_system_options_and_stop_sequences() -> None:
    out = native(
        system=[{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {}}],
        temperature=0.1,
        top_p=0.2,
        top_k=3,
        stop_sequences=["\n"],
        tool_choice={"type": "auto"},
        metadata={"user_id": "u"},
    )
    assert out["messages"] == [{"role": "system", "content": "ab"}, {"role": "user", "content": "hi"}]
    assert out["options"] == {"num_predict": 8, "temperature": 0.1, "top_p": 0.2, "top_k": 3, "stop": ["\n"]}
    assert native(system="s")["messages"][0] == {"role": "system", "content": "s"}
    assert native()["options"] == {"num_predict": 8} and "think" not in native()


def test_tool_use_round_trip_blocks() -> None:
    messages = [
        {"role": "user", "content": "compute"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "use tool"},
                {"type": "tool_use", "id": "call_1", "name": "calc", "input": {"e": "1+1"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "2"},
                {"type": "text", "text": "thanks"},
            ],
        },
    ]
    tools = [
        {
            "name": "calc",
            "description": "math",
            "input_schema": {"type": "object", "properties": {"e": {"type": "string"}}},
        }
    ]
    out = native(messages=messages, tools=tools)
    assert out["messages"] == [
        {"role": "user", "content": "compute"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_1", "function": {"name": "calc", "arguments": {"e": "1+1"}}}],
            "thinking": "use tool",
        },
        {"role": "tool", "content": "2", "tool_call_id": "call_1"},
        {"role": "user", "content": "thanks"},
    ]
    assert out["tools"] == [
        {
            "type": "function",
            "function": {"name": "calc", "description": "math", "parameters": tools[0]["input_schema"]},
        }
    ]


def test_images_and_thinking_config() -> None:
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMG}}
    assert native(messages=[{"role": "user", "content": [block]}])["messages"][0]["images"] == [IMG]
    assert native(thinking={"type": "enabled", "budget_tokens": 10})["think"] is True
    assert native(thinking={"type": "disabled"})["think"] is False
    assert native(output_config={"effort": "XHigh"})["think"] == "high"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": ""}, "model is required"),
        ({"max_tokens": 0}, "max_tokens is required and must be positive"),
        ({"messages": []}, "messages is required"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}
                ]
            },
            "invalid image source type: url. Only base64 images are supported.",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "image"}]}]}, "invalid image source"),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]},
            "tool_use block missing required 'id' field",
        ),
    ],
)
def test_validation_messages(change: dict, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        native(**change)
    assert caught.value.message == message and caught.value.status == 400


def test_missing_max_tokens_is_refused() -> None:
    with pytest.raises(RequestError, match=r"^max_tokens is required and must be positive$"):
        messages_request_to_native({"model": "m", "messages": [{"role": "user", "content": "x"}]})


def test_error_body_shape() -> None:
    body = error_body(404, "model 'x' not found")
    assert body["type"] == "error" and body["error"] == {"type": "not_found_error", "message": "model 'x' not found"}
    assert re.fullmatch(r"req_[0-9a-f]{24}", body["request_id"])
    assert [error_body(s, "m")["error"]["type"] for s in (400, 401, 403, 429, 500, 503, 529)] == [
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "overloaded_error",
    ]


def test_non_stream_message() -> None:
    out = to_message(
        "msg_1", {"model": "m", "message": {"role": "assistant", "content": "hey", "thinking": "hm"}, **FINAL}
    )
    assert out == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "hey"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 12, "output_tokens": 4},
    }
    empty = to_message(
        "msg_2", {"model": "m", "message": {"role": "assistant", "content": ""}, **FINAL, "done_reason": "length"}
    )
    assert empty["content"] is None and empty["stop_reason"] == "max_tokens" and "stop_sequence" not in empty
    calls = {
        "model": "m",
        **FINAL,
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}],
        },
    }
    assert to_message("msg_3", calls)["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}
    ]
    assert to_message("msg_3", calls)["stop_reason"] == "tool_use"


def test_stream_events() -> None:
    converter = MessagesStreamConverter("msg_1", "m", estimated_input_tokens=3)
    events = converter.process({"message": {"role": "assistant", "content": "", "thinking": "t"}})
    events += converter.process({"message": {"role": "assistant", "content": "a"}})
    events += converter.process(
        {
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}],
            }
        }
    )
    events += converter.process({"message": {"role": "assistant", "content": ""}, **FINAL})
    assert [kind for kind, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["message"] == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "usage": {"input_tokens": 3, "output_tokens": 0},
    }
    assert [data.get("index") for _, data in events[1:10]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert events[7][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
    assert events[8][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"a":1}'}
    assert events[10][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use"},
        "usage": {"input_tokens": 12, "output_tokens": 4},
    }


def test_stream_text_only_closes_its_block() -> None:
    converter = MessagesStreamConverter("msg_1", "m", estimated_input_tokens=1)
    events = converter.process({"message": {"role": "assistant", "content": "x"}})
    events += converter.process({"message": {"role": "assistant", "content": ""}, **FINAL, "done_reason": "length"})
    assert [kind for kind, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[4][1]["delta"] == {"stop_reason": "max_tokens"}


def test_token_estimate() -> None:
    req = {"model": "m", "max_tokens": 8, "system": "abcd", "messages": [{"role": "user", "content": "abcdefgh"}]}
    assert estimate_input_tokens(req) == (4 + 4 + 8) // 4
    assert estimate_input_tokens({"messages": [{"role": "", "content": "a"}]}) == 1
