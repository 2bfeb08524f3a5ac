"""/v1 against the real reference backend: the official openai SDK, and raw bytes for what the SDK hides."""

from __future__ import annotations

import base64
import json
import re
import struct
from typing import Any

import httpx
import openai
import pytest

from .wire import (
    CHAT_MODEL,
    EMBED_MODEL,
    FEW_SHOT,
    LAST_QUESTION,
    WEATHER_PARAMETERS,
    capabilities,
    post_stream,
    split_sse,
)

pytestmark = pytest.mark.slow

USER = [{"role": "user", "content": "Write a short line about the sea."}]
PROMPT = "The sea is"


def test_sdk_chat_non_stream(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(model=CHAT_MODEL, messages=USER, max_tokens=5, seed=1)
    assert re.fullmatch(r"chatcmpl-\d{1,3}", completion.id)
    assert (completion.object, completion.model, completion.system_fingerprint) == (
        "chat.completion",
        CHAT_MODEL,
        "fp_ollama",
    )
    choice = completion.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_sdk_chat_stream_with_usage(openai_client: openai.OpenAI) -> None:
    stream = openai_client.chat.completions.create(
        model=CHAT_MODEL, messages=USER, max_tokens=4, seed=2, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0] is chunks[-2]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert isinstance(text, str) and chunks[-1].usage.completion_tokens <= 4


def _chat_wire(http: httpx.Client, **extra: Any) -> tuple[httpx.Response, list[Any]]:
    response, raw = post_stream(
        http, "/v1/chat/completions", {"model": CHAT_MODEL, "messages": USER, "max_tokens": 4, "stream": True, **extra}
    )
    assert response.status_code == 200, raw
    events = split_sse(raw)
    assert all(e.name is None for e in events)
    assert events[-1].data == "[DONE]" and all(e.data != "[DONE]" for e in events[:-1])
    return response, [e.json() for e in events[:-1]]


def test_wire_chat_stream_framing_and_chunk_invariants(http: httpx.Client) -> None:
    response, chunks = _chat_wire(http, stream_options={"include_usage": True})
    assert response.headers["content-type"] == "text/event-stream"
    *body, finish, usage = chunks
    first = chunks[0]
    assert re.fullmatch(r"chatcmpl-\d{1,3}", first["id"])
    for chunk in chunks:
        assert (chunk["id"], chunk["object"], chunk["created"], chunk["model"], chunk["system_fingerprint"]) == (
            first["id"],
            "chat.completion.chunk",
            first["created"],
            CHAT_MODEL,
            "fp_ollama",
        )
        assert list(chunk)[:6] == ["id", "object", "created", "model", "system_fingerprint", "choices"]
    assert body, "no content chunk before the finish chunk"
    assert body[0]["choices"][0]["delta"]["role"] == "assistant"
    for chunk in body:
        (choice,) = chunk["choices"]
        assert choice["finish_reason"] is None and isinstance(choice["delta"]["content"], str)
        assert "usage" not in chunk
    assert all("role" not in c["choices"][0]["delta"] for c in body[1:])
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": finish["choices"][0]["finish_reason"]}]
    assert finish["choices"][0]["finish_reason"] in ("stop", "length") and "usage" not in finish
    assert usage["choices"] == [] and set(usage["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]


def test_wire_chat_stream_without_usage(http: httpx.Client) -> None:
    _, chunks = _chat_wire(http)
    assert all("usage" not in c for c in chunks) and chunks[-1]["choices"][0]["finish_reason"] is not None


def test_length_limit_counts_tokens(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model=CHAT_MODEL, messages=USER, max_tokens=3, seed=3, stop=["\u2603never"]
    )
    assert completion.choices[0].finish_reason in ("length", "stop")
    if completion.choices[0].finish_reason == "length":
        assert completion.usage is not None and completion.usage.completion_tokens == 3


def test_seed_gives_the_same_completion(openai_client: openai.OpenAI) -> None:
    def once() -> str | None:
        return (
            openai_client.chat.completions.create(
                model=CHAT_MODEL, messages=USER, max_tokens=6, seed=42, temperature=0.9
            )
            .choices[0]
            .message.content
        )

    assert once() == once()


def test_ignored_parameters_are_not_rejected(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=USER,
        max_tokens=2,
        n=1,
        max_completion_tokens=50,
        user="u",
        tool_choice="none",
        parallel_tool_calls=False,
        store=False,
        reasoning_effort="none",  # think=false: accepted on a model that cannot think
    )
    assert completion.choices[0].message.role == "assistant"


def test_token_counts_agree_with_native(http: httpx.Client) -> None:
    options = {"num_predict": 5, "seed": 11, "temperature": 1.0, "top_p": 1.0}
    native = http.post(
        "/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False, "options": options}
    ).json()
    chat = http.post(
        "/v1/chat/completions", json={"model": CHAT_MODEL, "messages": USER, "max_tokens": 5, "seed": 11}
    ).json()
    assert chat["usage"]["prompt_tokens"] == native["prompt_eval_count"]
    assert chat["usage"]["completion_tokens"] == native["eval_count"]
    assert chat["choices"][0]["message"]["content"] == native["message"]["content"]

    generated = http.post(
        "/api/generate",
        json={
            "model": CHAT_MODEL,
            "prompt": PROMPT,
            "stream": False,
            "options": {**options, "frequency_penalty": 0, "presence_penalty": 0},
        },
    ).json()
    completion = http.post(
        "/v1/completions", json={"model": CHAT_MODEL, "prompt": PROMPT, "max_tokens": 5, "seed": 11}
    ).json()
    assert completion["usage"]["prompt_tokens"] == generated["prompt_eval_count"]
    assert completion["usage"]["completion_tokens"] == generated["eval_count"]
    assert completion["choices"][0]["text"] == generated["response"]


def test_json_schema_format_uses_native_constrained_decoding(http: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    native = http.post(
        "/api/chat",
        json={
            "model": CHAT_MODEL,
            "messages": USER,
            "stream": False,
            "format": schema,
            "options": {"num_predict": 12, "seed": 5, "temperature": 1.0, "top_p": 1.0},
        },
    ).json()
    chat = http.post(
        "/v1/chat/completions",
        json={
            "model": CHAT_MODEL,
            "messages": USER,
            "max_tokens": 12,
            "seed": 5,
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        },
    ).json()
    assert chat["choices"][0]["message"]["content"] == native["message"]["content"]


def test_logprobs(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model=CHAT_MODEL, messages=USER, max_tokens=3, seed=4, logprobs=True, top_logprobs=2
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None and completion.usage is not None
    assert len(logprobs.content) == completion.usage.completion_tokens
    for entry in logprobs.content:
        assert entry.logprob <= 0 and 1 <= len(entry.top_logprobs) <= 2
        values = [alt.logprob for alt in entry.top_logprobs]
        assert values == sorted(values, reverse=True)


def test_sdk_completions(openai_client: openai.OpenAI) -> None:
    completion = openai_client.completions.create(model=CHAT_MODEL, prompt=PROMPT, max_tokens=4, seed=6)
    assert re.fullmatch(r"cmpl-\d{1,3}", completion.id) and completion.object == "text_completion"
    assert completion.choices[0].finish_reason in ("stop", "length") and isinstance(completion.choices[0].text, str)
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 4
    chunks = list(openai_client.completions.create(model=CHAT_MODEL, prompt=PROMPT, max_tokens=4, seed=6, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == completion.choices[0].text
    assert chunks[-1].choices[0].finish_reason == completion.choices[0].finish_reason


def test_wire_completions_zeroed_usage_on_every_chunk(http: httpx.Client) -> None:
    response, raw = post_stream(
        http,
        "/v1/completions",
        {
            "model": CHAT_MODEL,
            "prompt": PROMPT,
            "max_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
    events = split_sse(raw)
    assert events[-1].data == "[DONE]"
    *chunks, usage = [e.json() for e in events[:-1]]
    for chunk in chunks:
        assert chunk["object"] == "text_completion" and len(chunk["choices"]) == 1
        assert chunk["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0


def test_sdk_embeddings_float_and_base64(openai_client: openai.OpenAI, http: httpx.Client) -> None:
    texts = ["the sea", "a mountain"]
    floats = openai_client.embeddings.create(model=EMBED_MODEL, input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and floats.model == EMBED_MODEL
    assert len(floats.data[0].embedding) == 384 and floats.usage.prompt_tokens > 0
    assert floats.usage.total_tokens == floats.usage.prompt_tokens
    decoded = openai_client.embeddings.create(model=EMBED_MODEL, input=texts)  # the SDK asks for base64
    for a, b in zip(floats.data, decoded.data, strict=True):
        assert b.embedding == pytest.approx(a.embedding, abs=1e-6)
    raw = http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": "the sea", "encoding_format": "base64"})
    blob = base64.b64decode(raw.json()["data"][0]["embedding"])
    assert len(blob) == 384 * 4
    assert list(struct.unpack("<384f", blob)) == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_embeddings_dimensions(openai_client: openai.OpenAI) -> None:
    result = openai_client.embeddings.create(model=EMBED_MODEL, input="the sea", dimensions=64, encoding_format="float")
    vector = result.data[0].embedding
    assert len(vector) == 64 and sum(v * v for v in vector) == pytest.approx(1.0, abs=1e-3)


def test_sdk_models(openai_client: openai.OpenAI) -> None:
    listed = {m.id: m for m in openai_client.models.list()}
    assert {CHAT_MODEL, EMBED_MODEL} <= set(listed)
    assert all(m.object == "model" and m.owned_by == "library" and m.created > 0 for m in listed.values())
    model = openai_client.models.retrieve(CHAT_MODEL)
    assert (model.id, model.owned_by, model.created) == (CHAT_MODEL, "library", listed[CHAT_MODEL].created)


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMETERS}}]


def tool_conversation() -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i, (city, result, answer) in enumerate(FEW_SHOT):
        call_id = f"call_{i}"
        messages += [
            {"role": "user", "content": f"Weather in {city}?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": result},
            {"role": "assistant", "content": answer},
        ]
    return [*messages, {"role": "user", "content": LAST_QUESTION}]


def test_tool_calls(openai_client: openai.OpenAI, http: httpx.Client) -> None:
    """Tool calls come back whole: `arguments` a JSON string, `type` function, an id; in a stream as one delta."""
    if "tools" not in capabilities(http):
        response = http.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": USER, "tools": TOOLS})
        assert response.status_code == 400
        assert response.json()["error"]["message"].endswith(" does not support tools")
        return
    completion = openai_client.chat.completions.create(
        model=CHAT_MODEL, messages=tool_conversation(), tools=TOOLS, max_tokens=20, temperature=0
    )
    choice = completion.choices[0]
    assert choice.message.tool_calls, "the few-shot conversation should make the model call get_weather"
    call = choice.message.tool_calls[0]
    assert re.fullmatch(r"call_[a-z0-9]{8}", call.id) and call.type == "function"
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments), dict)
    assert choice.finish_reason in ("tool_calls", "length") and isinstance(choice.message.content, str)

    _, raw = post_stream(
        http,
        "/v1/chat/completions",
        {
            "model": CHAT_MODEL,
            "messages": tool_conversation(),
            "tools": TOOLS,
            "max_tokens": 20,
            "temperature": 0,
            "stream": True,
        },
    )
    chunks = [e.json() for e in split_sse(raw)[:-1]]
    deltas = [c["choices"][0]["delta"]["tool_calls"] for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert len(deltas) == 1 and deltas[0][0]["function"]["name"] == "get_weather"
    assert deltas[0][0]["index"] == 0 and json.loads(deltas[0][0]["function"]["arguments"])
    assert chunks[-1]["choices"][0]["finish_reason"] in ("tool_calls", "length")


ERRORS = [
    ("/v1/chat/completions", {"messages": USER}, 400, "model is required"),
    ("/v1/chat/completions", {"model": "nope:1b", "messages": USER}, 404, "model 'nope:1b' not found"),
    ("/v1/chat/completions", {"model": CHAT_MODEL, "messages": []}, 400, "[] is too short - 'messages'"),
    (
        "/v1/chat/completions",
        {
            "model": CHAT_MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}],
                }
            ],
        },
        400,
        "image URLs are not currently supported, please use base64 encoded data instead",
    ),
    (
        "/v1/chat/completions",
        {
            "model": CHAT_MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,not_valid_base64_data!!!"}}
                    ],
                }
            ],
        },
        400,
        "invalid image input",
    ),
    (
        "/v1/chat/completions",
        {"model": CHAT_MODEL, "messages": USER, "reasoning_effort": "high"},
        400,
        '"gemma3:270m" does not support thinking',
    ),
    (
        "/v1/chat/completions",
        {"model": CHAT_MODEL, "messages": USER, "reasoning_effort": "huge"},
        400,
        'invalid reasoning value: "huge" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")',
    ),
    (
        "/v1/chat/completions",
        {"model": CHAT_MODEL, "messages": USER, "max_tokens": "5"},
        400,
        "json: cannot unmarshal string into Go struct field ChatCompletionRequest.max_tokens of type int",
    ),
    (
        "/v1/chat/completions",
        {"model": CHAT_MODEL, "messages": USER, "tools": [1]},
        400,
        "json: cannot unmarshal number into Go struct field ChatCompletionRequest.tools of type api.Tool",
    ),
    ("/v1/completions", {"prompt": "x"}, 404, "model '' not found"),
    (
        "/v1/completions",
        {"model": CHAT_MODEL, "prompt": "x", "stop": ["a", 1]},
        400,
        "invalid type for 'stop' field: float64",
    ),
    ("/v1/embeddings", {"model": EMBED_MODEL}, 400, "invalid input"),
    (
        "/v1/embeddings",
        {"model": EMBED_MODEL, "input": "x", "encoding_format": "hex"},
        400,
        "Invalid value for 'encoding_format' = hex. Supported values: ['float', 'base64'].",
    ),
]


NATIVE_MESSAGES = {
    "model is required",
    "model 'nope:1b' not found",
    '"gemma3:270m" does not support thinking',
    "model '' not found",
}


@pytest.mark.parametrize(("path", "body", "status", "message"), ERRORS)
def test_error_bodies(http: httpx.Client, path: str, body: dict[str, Any], status: int, message: str) -> None:
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    # Errors of the native handler pass through Ollama's response writer (bare application/json); the
    # middleware's own validation errors are gin's AbortWithStatusJSON (with charset).
    from_native = message in NATIVE_MESSAGES
    assert response.headers["content-type"] == (
        "application/json" if from_native else "application/json; charset=utf-8"
    )
    kind = {400: "invalid_request_error", 404: "not_found_error"}[status]
    assert response.json() == {"error": {"message": message, "type": kind, "param": None, "code": None}}


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "EOF"), (b"{", "unexpected EOF"), (b"x", "invalid character 'x' looking for beginning of value")],
)
def test_malformed_bodies(http: httpx.Client, content: bytes, message: str) -> None:
    response = http.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }


def test_model_not_found(openai_client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("nope")
    assert http.get("/v1/models/nope").json() == {
        "error": {"message": "model 'nope:latest' not found", "type": "not_found_error", "param": None, "code": None}
    }


def test_routing_like_gin(http: httpx.Client) -> None:
    head = http.head("/v1/models")
    assert head.status_code == 405 and head.headers["allow"] == "GET"
    namespaced = http.get("/v1/models/library/gemma3:270m")  # one path segment only, as upstream
    assert namespaced.status_code == 404 and namespaced.text == "404 page not found"
    wrong_method = http.get("/v1/chat/completions")
    assert wrong_method.status_code == 405 and wrong_method.text == "405 method not allowed"


def test_base64_image_parts_are_accepted(openai_client: openai.OpenAI) -> None:
    """A data-URI image part becomes its own native message with the decoded bytes; Ollama has no server-side
    vision check, so a text model answers as usual."""
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(24)).decode()
    completion = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        max_tokens=2,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.role == "assistant" and completion.usage is not None
