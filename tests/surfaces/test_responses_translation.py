"""The /v1/responses translation as pure functions (Ollama's `openai/responses.go`, v0.33.0-rc2)."""

from __future__ import annotations

import pytest

from ollama_conformance.reference_backend.api.common import RequestError, decode_struct
from ollama_conformance.reference_backend.api.responses import (
    REQUEST_FIELDS,
    ResponsesStreamConverter,
    responses_request_to_native,
    to_response,
)

T0 = "2026-11-21T10:00:00.5Z"
FINAL = {"done": True, "done_reason": "stop", "prompt_eval_count": 6, "eval_count": 2}


def native(req: dict) -> dict:
    return responses_request_to_native(decode_struct(req, "openai.ResponsesRequest", REQUEST_FIELDS))


def test_string_input_instructions_and_options() -> None:
    out = native({"model": "m", "input": "hi", "instructions": "be brief", "max_output_tokens": 9, "top_p": 0.5})
    assert out["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert out["options"] == {"temperature": 1.0, "top_p": 0.5, "num_predict": 9}
    assert native({"model": "m", "input": "x"})["options"] == {"temperature": 1.0}


def test_items_function_calls_and_outputs() -> None:
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {"type": "reasoning", "encrypted_content": "need tool"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "cold"},
    ]
    assert native({"model": "m", "input": items})["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "thinking": "need tool",
            "tool_calls": [{"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "cold", "tool_call_id": "call_1"},
    ]


def test_tools_format_and_effort() -> None:
    tools = [
        {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}},
        {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "g"}]},
    ]
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = native(
        {
            "model": "m",
            "input": "x",
            "tools": tools,
            "reasoning": {"effort": "none"},
            "text": {"format": {"type": "json_schema", "name": "s", "schema": schema}},
        }
    )
    assert out["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}},
        },
        {"type": "function", "function": {"name": "ns.g", "description": ""}},
    ]
    assert out["format"] == schema and out["think"] is False


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (3, "input must be a string or array: json: cannot unmarshal number into Go value of type []json.RawMessage"),
        ([{"content": "x"}], "input[0]: input item missing required 'type' field"),
        ([{"type": "bogus"}], 'input[0]: unknown input item type: "bogus"'),
        (
            [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}],
            "file inputs are not currently supported",
        ),
        ([{"role": "user", "content": [{"type": "nope"}]}], "input[0]: content[0]: unknown content type: nope"),
    ],
)
def test_bad_input(value: object, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        native({"model": "m", "input": value})
    assert caught.value.message == message


def test_non_stream_response_object() -> None:
    req = {"model": "gemma3:270m", "input": "x", "max_output_tokens": 4}
    body = to_response(
        req,
        "resp_1",
        "msg_2",
        {"model": "gemma3:270m", "created_at": T0, "message": {"role": "assistant", "content": "hey"}, **FINAL},
    )
    assert body["output"] == [
        {
            "id": "msg_2",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "hey", "annotations": [], "logprobs": []}],
        }
    ]
    assert body["usage"] == {
        "input_tokens": 6,
        "output_tokens": 2,
        "total_tokens": 8,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    assert (body["status"], body["object"], body["max_output_tokens"], body["instructions"]) == (
        "completed",
        "response",
        4,
        None,
    )
    assert body["temperature"] == 1 and body["top_p"] == 1 and body["text"] == {"format": {"type": "text"}}
    assert isinstance(body["completed_at"], int) and body["created_at"] == 1795255200
    calls = {
        "model": "m",
        "created_at": T0,
        **FINAL,
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_9", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}],
        },
    }
    assert to_response(req, "resp_1", "msg_2", calls)["output"] == [
        {
            "id": "fc_resp_1_0",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_9",
            "name": "f",
            "arguments": '{"a":1}',
        }
    ]


def test_stream_event_sequence() -> None:
    converter = ResponsesStreamConverter({"model": "m", "input": "x"}, "resp_1", "msg_1")
    events = converter.process({"model": "m", "message": {"role": "assistant", "content": "a", "thinking": "t"}})
    events += converter.process({"model": "m", "message": {"role": "assistant", "content": "b"}})
    events += converter.process({"model": "m", "message": {"role": "assistant", "content": ""}, **FINAL})
    assert [kind for kind, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(data["type"] == kind for kind, data in events)
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed" and completed["usage"]["total_tokens"] == 8
    assert [item["type"] for item in completed["output"]] == ["reasoning", "message"]
    assert completed["output"][1]["content"][0]["text"] == "ab"
    assert events[10][1]["output_index"] == 1


def test_stream_function_call_events() -> None:
    converter = ResponsesStreamConverter({"model": "m"}, "resp_1", "msg_1")
    call = {"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}
    events = converter.process({"message": {"role": "assistant", "content": "", "tool_calls": [call]}})
    events += converter.process({"message": {"role": "assistant", "content": "ignored"}, **FINAL})
    assert [kind for kind, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2][1]["item"]["status"] == "in_progress" and events[2][1]["item"]["arguments"] == ""
    assert events[4][1]["arguments"] == '{"a":1}'
