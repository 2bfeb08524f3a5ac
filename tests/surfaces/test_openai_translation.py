"""The /v1 translation layer as pure functions: request -> native request, native objects -> OpenAI shapes.

Expected values come from Ollama's `openai/openai.go` and `middleware/openai.go` (v0.33.0-rc2).
"""

from __future__ import annotations

import base64
import json
import struct

import pytest

from ollama_conformance.reference_backend.api.common import RequestError, decode_struct, parse_json_body, unix_seconds
from ollama_conformance.reference_backend.api.openai import (
    CHAT_FIELDS,
    ChatChunker,
    chat_request_to_native,
    completion_chunks,
    completion_request_to_native,
    embed_request_to_native,
    error_body,
    to_chat_completion,
    to_completion,
    to_embedding_list,
    to_model,
    to_model_list,
)
from ollama_conformance.reference_backend.api.sse import DONE_SENTINEL, go_json, sse_data

USER = [{"role": "user", "content": "hi"}]
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def chat(**fields: object) -> dict:
    return chat_request_to_native(
        decode_struct({"model": "m", "messages": USER, **fields}, "openai.ChatCompletionRequest", CHAT_FIELDS)
    )


def test_sampling_defaults_are_forced_when_absent() -> None:
    assert chat()["options"] == {"temperature": 1.0, "top_p": 1.0}
    native = chat(temperature=0.2, top_p=0.5, max_tokens=7, seed=3, frequency_penalty=0.1, presence_penalty=0.4)
    assert native["options"] == {
        "temperature": 0.2,
        "top_p": 0.5,
        "num_predict": 7,
        "seed": 3,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.4,
    }
    assert native["stream"] is False and native["model"] == "m"


def test_stop_string_or_array_and_non_strings_dropped() -> None:
    assert chat(stop="x")["options"]["stop"] == ["x"]
    assert chat(stop=["a", 1, "b"])["options"]["stop"] == ["a", "b"]


def test_ignored_parameters_are_accepted() -> None:
    native = chat(max_completion_tokens=5, n=2, tool_choice="auto", user="u", logit_bias={"1": 2}, store=True)
    assert "num_predict" not in native["options"]


def test_response_format_maps_to_native_format() -> None:
    assert chat(response_format={"type": "json_object"})["format"] == "json"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert (
        chat(response_format={"type": " JSON_SCHEMA ", "json_schema": {"name": "x", "schema": schema}})["format"]
        == schema
    )
    assert "format" not in chat(response_format={"type": "text"})


@pytest.mark.parametrize(
    ("effort", "think"),
    [
        ("none", False),
        ("minimal", "low"),
        ("low", "low"),
        ("medium", "medium"),
        ("high", "high"),
        ("max", "max"),
        ("xhigh", "max"),
        ("ultra", "max"),
    ],
)
def test_reasoning_effort_maps_to_think(effort: str, think: object) -> None:
    assert chat(reasoning_effort=effort)["think"] == think
    assert chat(reasoning={"effort": effort}, reasoning_effort="bogus")["think"] == think


def test_reasoning_effort_unset_or_invalid() -> None:
    assert "think" not in chat()
    with pytest.raises(RequestError, match=r'invalid reasoning value: "huge" \(must be "minimal"'):
        chat(reasoning_effort="huge")


def test_logprobs_and_tools_pass_through() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    native = chat(logprobs=True, top_logprobs=3, tools=tools)
    assert native["logprobs"] is True and native["top_logprobs"] == 3 and native["tools"] == tools


def test_content_parts_become_separate_messages() -> None:
    content = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image_url", "image_url": f"data:;base64,{PNG_B64}"},
    ]
    native = chat(messages=[{"role": "user", "content": content}])
    assert native["messages"] == [
        {"role": "user", "content": "look"},
        {"role": "user", "content": "", "images": [PNG_B64]},
        {"role": "user", "content": "", "images": [PNG_B64]},
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://example.com/a.png", "image URLs are not currently supported, please use base64 encoded data instead"),
        ("data:image/png;base64,not_valid_base64_data!!!", "invalid image input"),
        ("data:image/gif;base64,AAAA", "invalid image input"),
    ],
)
def test_bad_image_urls(url: str, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    assert caught.value.message == message and caught.value.status == 400


def test_tool_round_trip_messages() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    native = chat(messages=messages)["messages"]
    assert native[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    }
    assert native[2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "call_1"}


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "[] is too short - 'messages'"),
        ([{"role": "user", "content": None}], "invalid message content type: <nil>"),
        ([{"role": "user", "content": 3}], "invalid message content type: float64"),
        ([{"role": "user", "content": [{"type": "video"}]}], "invalid message format"),
        (
            [
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}],
                }
            ],
            "invalid tool call arguments",
        ),
    ],
)
def test_invalid_messages(messages: list, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        chat(messages=messages)
    assert caught.value.message == message


def test_go_binding_rules() -> None:
    decoded = decode_struct(
        {"MODEL": "m", "Max_Tokens": 4, "seed": None, "unknown": 1}, "openai.ChatCompletionRequest", CHAT_FIELDS
    )
    assert decoded == {"model": "m", "max_tokens": 4}
    with pytest.raises(
        RequestError,
        match=r"^json: cannot unmarshal string into Go struct field "
        r"ChatCompletionRequest.max_tokens of type int$",
    ):
        decode_struct({"max_tokens": "4"}, "openai.ChatCompletionRequest", CHAT_FIELDS)
    with pytest.raises(RequestError, match=r"cannot unmarshal number 1.5 into Go struct field"):
        decode_struct({"max_tokens": 1.5}, "openai.ChatCompletionRequest", CHAT_FIELDS)
    with pytest.raises(
        RequestError,
        match=r"^json: cannot unmarshal string into Go struct field "
        r"ChatCompletionRequest.stream_options of type openai.StreamOptions$",
    ):
        decode_struct({"stream_options": "yes"}, "openai.ChatCompletionRequest", CHAT_FIELDS)
    with pytest.raises(RequestError, match=r"^json: cannot unmarshal array into Go value of type openai.X$"):
        decode_struct([], "openai.X", CHAT_FIELDS)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "EOF"),
        (b"  ", "EOF"),
        (b"x", "invalid character 'x' looking for beginning of value"),
        (b'{"model":', "unexpected EOF"),
        (b'{"a":1}}', "invalid character '}' after top-level value"),
    ],
)
def test_body_errors_read_like_go(raw: bytes, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_json_body(raw)
    assert caught.value.message == message


def test_completion_request_mapping() -> None:
    native = completion_request_to_native({"model": "m", "prompt": "p", "top_p": 0, "logprobs": 2, "suffix": "s"})
    assert native == {
        "model": "m",
        "prompt": "p",
        "stream": False,
        "suffix": "s",
        "logprobs": True,
        "top_logprobs": 2,
        "options": {"temperature": 1.0, "frequency_penalty": 0, "presence_penalty": 0, "top_p": 1.0},
    }
    with pytest.raises(RequestError, match=r"^invalid type for 'stop' field: float64$"):
        completion_request_to_native({"model": "m", "stop": ["a", 1]})


def test_embed_request_validation() -> None:
    assert embed_request_to_native({"model": "e", "input": ""})["input"] == [""]
    assert embed_request_to_native({"model": "e", "input": ["a"], "dimensions": 8}) == {
        "model": "e",
        "input": ["a"],
        "dimensions": 8,
    }
    for bad in ({"model": "e"}, {"model": "e", "input": []}):
        with pytest.raises(RequestError, match=r"^invalid input$"):
            embed_request_to_native(bad)
    with pytest.raises(RequestError, match=r"^Invalid value for 'encoding_format' = hex\. Supported values: "):
        embed_request_to_native({"model": "e", "input": "a", "encoding_format": "hex"})
    assert embed_request_to_native({"model": "e", "input": "a", "encoding_format": "BASE64"})


# --- output side ---------------------------------------------------------------------------------------------

T0, T1 = "2026-11-21T10:00:00.123456789Z", "2026-11-21T10:00:05.5Z"


def native_chunk(content: str = "", thinking: str = "", *, done: bool = False, at: str = T0, **extra: object) -> dict:
    message: dict = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return {"model": "gemma3:270m", "created_at": at, "message": message, "done": done, **extra}


FINAL = {"done_reason": "stop", "prompt_eval_count": 5, "eval_count": 3, "total_duration": 9}


def test_unix_seconds_of_nano_timestamps() -> None:
    assert unix_seconds(T0) == 1795255200
    assert unix_seconds("2026-11-21T10:00:00Z") == 1795255200


def test_stream_chunks_follow_ollama() -> None:
    chunker = ChatChunker("chatcmpl-7", include_usage=True)
    events = []
    for item in (native_chunk("Hel"), native_chunk("lo", at=T1), native_chunk(done=True, at=T1, **FINAL)):
        events += chunker.feed(item)
    first, second, finish, usage, done = events
    assert first == {
        "id": "chatcmpl-7",
        "object": "chat.completion.chunk",
        "created": 1795255200,
        "model": "gemma3:270m",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}],
    }
    assert second["choices"][0]["delta"] == {"content": "lo"} and second["created"] == 1795255200
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert usage["id"] == "chatcmpl-7" and done == DONE_SENTINEL
    assert sse_data(first).startswith(b'data: {"id":"chatcmpl-7","object":"chat.completion.chunk",')
    assert sse_data(first).endswith(b"}\n\n")


def test_stream_without_usage_and_length_finish() -> None:
    chunker = ChatChunker("chatcmpl-1", include_usage=False)
    events = chunker.feed(native_chunk("a")) + chunker.feed(native_chunk("b", done=True, done_reason="length"))
    assert [e if isinstance(e, bytes) else e["choices"][0]["finish_reason"] for e in events] == [
        None,
        None,
        "length",
        DONE_SENTINEL,
    ]
    assert all("usage" not in e for e in events if isinstance(e, dict))


def test_empty_completion_still_opens_with_a_role_chunk() -> None:
    events = ChatChunker("chatcmpl-2", include_usage=False).feed(native_chunk(done=True, **FINAL))
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[1]["choices"][0]["finish_reason"] == "stop" and events[2] == DONE_SENTINEL


def test_thinking_and_content_split_and_tool_calls() -> None:
    chunker = ChatChunker("chatcmpl-3", include_usage=False)
    call = {"id": "call_abc", "function": {"index": 0, "name": "f", "arguments": {"x": 1, "<": "&"}}}
    events = chunker.feed(native_chunk("out", "why", logprobs=[{"token": "out", "logprob": -0.1}]))
    events += chunker.feed({**native_chunk(), "message": {"role": "assistant", "content": "", "tool_calls": [call]}})
    events += chunker.feed(native_chunk(done=True, **FINAL))
    reasoning, content, tools, finish, _ = events
    assert reasoning["choices"][0]["delta"] == {"role": "assistant", "reasoning": "why"}
    assert reasoning["choices"][0]["logprobs"] == {"content": [{"token": "out", "logprob": -0.1}]}
    assert content["choices"][0]["delta"] == {"content": "out"} and "logprobs" not in content["choices"][0]
    assert tools["choices"][0]["delta"]["tool_calls"] == [
        {
            "id": "call_abc",
            "index": 0,
            "type": "function",
            "function": {"name": "f", "arguments": '{"x":1,"\\u003c":"\\u0026"}'},
        }
    ]
    assert finish["choices"][0]["finish_reason"] == "tool_calls"
    # Go's json.Marshal escapes <, > and & inside the arguments string too.
    assert json.loads(tools["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]) == {"x": 1, "<": "&"}


def test_non_stream_chat_completion() -> None:
    merged = native_chunk("full text", "thought", done=True, **FINAL)
    body = to_chat_completion("chatcmpl-9", merged)
    assert body == {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 1795255200,
        "model": "gemma3:270m",
        "system_fingerprint": "fp_ollama",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "full text", "reasoning": "thought"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def test_completions_zeroed_usage_quirk() -> None:
    events = completion_chunks("cmpl-1", {"model": "m", "response": "a", "done": False}, include_usage=True)
    assert events[0]["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    final = completion_chunks("cmpl-1", {"model": "m", "response": "", "done": True, **FINAL}, include_usage=True)
    assert final[0]["choices"][0]["finish_reason"] == "stop" and final[0]["usage"]["total_tokens"] == 0
    assert final[1]["choices"] == [] and final[1]["usage"]["total_tokens"] == 8 and final[2] == DONE_SENTINEL
    plain = completion_chunks("cmpl-1", {"model": "m", "response": "", "done": True, **FINAL}, include_usage=False)
    assert "usage" not in plain[0] and len(plain) == 2
    assert list(plain[0]) == ["id", "object", "created", "choices", "model", "system_fingerprint"]
    body = to_completion("cmpl-2", {"model": "m", "created_at": T0, "response": "xy", "done": True, **FINAL})
    assert (
        body["choices"] == [{"text": "xy", "index": 0, "finish_reason": "stop"}] and body["usage"]["total_tokens"] == 8
    )


def test_embeddings_float_and_base64() -> None:
    native = {"model": "all-minilm:22m", "embeddings": [[0.5, -0.25], [1.0, 0.0]], "prompt_eval_count": 4}
    floats = to_embedding_list("all-minilm", native, "")
    assert floats == {
        "object": "list",
        "data": [
            {"object": "embedding", "embedding": [0.5, -0.25], "index": 0},
            {"object": "embedding", "embedding": [1.0, 0.0], "index": 1},
        ],
        "model": "all-minilm",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    encoded = to_embedding_list("all-minilm", native, "base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.5, -0.25)
    assert to_embedding_list("e", {"embeddings": []}, "")["data"] is None


def test_models_shapes() -> None:
    tags = {
        "models": [
            {"name": "gemma3:270m", "model": "gemma3:270m", "modified_at": T0},
            {"name": "me/tool:1", "model": "me/tool:1", "modified_at": T1},
        ]
    }
    assert to_model_list(tags)["data"] == [
        {"id": "gemma3:270m", "object": "model", "created": 1795255200, "owned_by": "library"},
        {"id": "me/tool:1", "object": "model", "created": 1795255205, "owned_by": "me"},
    ]
    assert to_model_list({"models": []}) == {"object": "list", "data": None}
    assert to_model({"modified_at": T0}, "gemma3:270m") == {
        "id": "gemma3:270m",
        "object": "model",
        "created": 1795255200,
        "owned_by": "library",
    }


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (404, "not_found_error"),
        (500, "api_error"),
        (503, "api_error"),
        (401, "api_error"),
    ],
)
def test_error_body_types(status: int, kind: str) -> None:
    assert error_body(status, "boom") == {"error": {"message": "boom", "type": kind, "param": None, "code": None}}
    assert json.loads(go_json(error_body(status, "boom")))["error"]["param"] is None
