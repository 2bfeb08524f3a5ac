"""The Python API over spec/: lookups by template or concrete path, resolution, validation messages, and
negative cases (wrong types, missing required fields, a chunk of the wrong kind) being rejected."""

from __future__ import annotations

import copy

import pytest

from ollama_conformance import spec

TS = "2025-08-20T13:48:21.068526Z"
CHAT_CHUNK = {"model": "m", "created_at": TS, "message": {"role": "assistant", "content": "hi"}, "done": False}
CHAT_FINAL = {
    "model": "m",
    "created_at": TS,
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "total_duration": 10,
    "load_duration": 1,
    "prompt_eval_count": 3,
    "prompt_eval_duration": 2,
    "eval_count": 4,
    "eval_duration": 5,
}
OPENAI_CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "m",
    "system_fingerprint": "fp_ollama",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "x"}, "finish_reason": None}],
}


def test_constants() -> None:
    assert spec.SPEC_VERSION == "0.33.0-rc2"
    assert spec.SURFACES == ("native", "openai", "anthropic")


def test_concrete_paths_match_their_templates() -> None:
    digest = "sha256:" + "a" * 64
    assert spec.find_path(f"/api/blobs/{digest}") == ("native", "/api/blobs/{digest}")
    assert spec.find_path("/v1/models/gemma3:270m") == ("openai", "/v1/models/{model}")
    assert spec.find_path("/v1/models") == ("openai", "/v1/models")
    assert spec.find_path("/v1/messages") == ("anthropic", "/v1/messages")
    assert spec.find_path("/api/chat?x=1") == ("native", "/api/chat")
    assert spec.find_path("/v1/models/user/m") is None  # namespaced names do not route
    assert spec.find_path("/api/nope") is None
    assert spec.declared_statuses("HEAD", f"/api/blobs/{digest}") == ["200", "400", "404"]


def test_unknown_operation_raises_keyerror() -> None:
    with pytest.raises(KeyError):
        spec.declared_statuses("GET", "/api/chat")
    with pytest.raises(KeyError):
        spec.response_media_types("POST", "/api/chat", 418)


def test_response_schema_by_status_and_media_type() -> None:
    assert spec.response_media_types("POST", "/api/chat", 200) == ["application/json", "application/x-ndjson"]
    # media type parameters are ignored
    item = spec.response_schema("POST", "/api/chat", "200", "application/x-ndjson; charset=utf-8")
    assert item is not None
    assert spec.validate(CHAT_CHUNK, item) == []
    assert spec.validate(CHAT_FINAL, item) == []
    assert spec.validate({"error": "boom"}, item) == []
    assert spec.response_schema("POST", "/api/chat", 200, "text/event-stream") is None
    assert spec.response_schema("POST", "/api/copy", 200, "application/json") is None
    assert spec.response_media_types("POST", "/api/copy", 200) == []


def test_request_schema() -> None:
    schema = spec.request_schema("POST", "/api/chat")
    assert schema is not None and schema["required"] == ["model"]
    assert spec.request_schema("GET", "/api/tags") is None
    assert spec.request_schema("POST", "/api/blobs/{digest}", "application/octet-stream") is not None


def test_validate_reports_the_exact_place() -> None:
    schema = spec.component_schema("native", "ChatStreamItem")
    bad = copy.deepcopy(CHAT_FINAL)
    bad["message"]["content"] = 1
    assert spec.validate(bad, schema) == ["at $.message.content: 1 is not of type 'string'"]
    bad_tool = copy.deepcopy(CHAT_FINAL)
    bad_tool["message"]["tool_calls"] = [{"function": {"index": 0, "name": "f", "arguments": "{}"}}]
    assert spec.validate(bad_tool, schema) == [
        "at $.message.tool_calls[0].function.arguments: '{}' is not of type 'object'"
    ]


def test_stream_chunk_kinds_are_distinct() -> None:
    chunk = spec.component_schema("native", "ChatStreamChunk")
    final = spec.component_schema("native", "ChatStreamFinal")
    assert spec.validate(CHAT_CHUNK, chunk) == []
    assert spec.validate(CHAT_CHUNK, final) != []
    assert spec.validate(CHAT_FINAL, chunk) != []
    no_reason = {k: v for k, v in CHAT_FINAL.items() if k != "done_reason"}
    assert "at $: 'done_reason' is a required property" in spec.validate(no_reason, final)
    no_metrics = {k: v for k, v in CHAT_FINAL.items() if not k.endswith(("_duration", "_count"))}
    assert spec.validate(no_metrics, final) == ["at $: 'total_duration' is a required property"]
    # eval_count is omitempty in Go: a run that produced no token omits it
    no_eval = {k: v for k, v in CHAT_FINAL.items() if not k.startswith("eval_")}
    assert spec.validate(no_eval, final) == []
    # a load answer carries no metrics
    load = {**no_metrics, "done_reason": "load"}
    assert spec.validate(load, final) == []
    assert spec.validate({**CHAT_FINAL, "done_reason": "finished"}, final) != []


def test_openai_chunk_kinds_are_distinct() -> None:
    chunk = spec.component_schema("openai", "ChatCompletionChunk")
    finish = spec.component_schema("openai", "ChatCompletionFinishChunk")
    usage = spec.component_schema("openai", "ChatCompletionUsageChunk")
    finish_chunk = {**OPENAI_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage_chunk = {
        **OPENAI_CHUNK,
        "choices": [],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    assert spec.validate(OPENAI_CHUNK, chunk) == []
    assert spec.validate(finish_chunk, finish) == []
    assert spec.validate(usage_chunk, usage) == []
    assert spec.validate(finish_chunk, chunk) != []
    assert spec.validate(OPENAI_CHUNK, finish) != []
    assert spec.validate(OPENAI_CHUNK, usage) != []
    assert spec.validate({**usage_chunk, "usage": {"prompt_tokens": 1}}, usage) != []
    item = spec.response_schema("POST", "/v1/chat/completions", 200, "text/event-stream")
    assert item is not None
    for ok in (OPENAI_CHUNK, finish_chunk, usage_chunk):
        assert spec.validate(ok, item) == []


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("POST", "/api/chat", {"messages": []}, "at $: 'model' is a required property"),
        ("POST", "/api/chat", {"model": 1}, "at $.model: 1 is not of type 'string'"),
        ("POST", "/api/chat", {"model": "m", "stream": "yes"}, "at $.stream: 'yes' is not of type 'boolean'"),
        ("POST", "/api/chat", {"model": "m", "messages": {}}, "at $.messages: {} is not of type 'array'"),
        ("POST", "/api/chat", {"model": "m", "think": "huge"}, "at $.think: 'huge' is not one of"),
        (
            "POST",
            "/api/chat",
            {"model": "m", "options": {"stop": "x"}},
            "at $.options.stop: 'x' is not of type 'array'",
        ),
        ("POST", "/api/generate", {"model": "m", "keep_alive": "10"}, "at $.keep_alive: '10' does not match"),
        ("POST", "/api/generate", {"model": "m", "keep_alive": True}, "at $.keep_alive: True is not of type"),
        ("POST", "/api/generate", {"model": "m", "format": "yaml"}, "at $.format: 'yaml' is not one of"),
        ("POST", "/api/generate", {"model": "m", "top_logprobs": 21}, "at $.top_logprobs: 21 is greater than"),
        ("POST", "/api/embed", {"model": "m", "input": [1]}, "at $.input[0]: 1 is not of type 'string'"),
        ("POST", "/api/copy", {"source": "a"}, "at $: 'destination' is a required property"),
        ("POST", "/v1/chat/completions", {"model": "m", "messages": []}, "at $.messages: [] should be non-empty"),
        ("POST", "/v1/chat/completions", {"model": "m"}, "at $: 'messages' is a required property"),
        ("POST", "/v1/embeddings", {"model": "m", "input": 3}, "at $.input: 3 is not of type"),
        (
            "POST",
            "/v1/messages",
            {"model": "m", "messages": [{"role": "user", "content": "x"}]},
            "'max_tokens' is a required",
        ),
        ("POST", "/v1/messages", {"model": "m", "max_tokens": 0, "messages": []}, "at $.max_tokens: 0 is less than"),
    ],
)
def test_bad_requests_are_rejected(method: str, path: str, body: dict, expected: str) -> None:
    schema = spec.request_schema(method, path)
    assert schema is not None
    problems = spec.validate(body, schema)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("method", "path", "status", "media_type", "body"),
    [
        ("GET", "/api/version", 200, "application/json", {"version": 33}),
        ("GET", "/api/tags", 200, "application/json", {"models": [{"name": "x"}]}),
        ("GET", "/api/ps", 200, "application/json", {}),
        ("POST", "/api/embed", 200, "application/json", {"model": "m", "embeddings": [["0.1"]]}),
        ("POST", "/api/embeddings", 200, "application/json", {"embedding": None}),
        ("POST", "/api/show", 200, "application/json", {"modelfile": ""}),
        ("POST", "/api/generate", 200, "application/json", {"model": "m", "created_at": TS, "done": True}),
        (
            "POST",
            "/api/generate",
            200,
            "application/x-ndjson",
            {"model": "m", "created_at": "yesterday", "response": "", "done": False},
        ),
        ("POST", "/api/pull", 200, "application/x-ndjson", {"completed": 1}),
        ("POST", "/api/chat", 404, "application/json", {"error": {"message": "x"}}),
        ("POST", "/v1/chat/completions", 200, "application/json", {"id": "x", "object": "chat.completion"}),
        ("POST", "/v1/chat/completions", 400, "application/json", {"error": "x"}),
        ("GET", "/v1/models", 200, "application/json", {"object": "list", "data": [{"id": "m"}]}),
        ("POST", "/v1/embeddings", 200, "application/json", {"object": "list", "data": [], "model": "m"}),
        ("POST", "/v1/messages", 200, "application/json", {"type": "message", "content": []}),
        ("POST", "/v1/messages", 200, "text/event-stream", {"type": "ping"}),
        ("POST", "/v1/messages", 400, "application/json", {"error": "x"}),
        ("POST", "/v1/responses", 200, "text/event-stream", {"type": "response.output_text.delta", "delta": "x"}),
    ],
)
def test_bad_responses_are_rejected(method: str, path: str, status: int, media_type: str, body: object) -> None:
    schema = spec.response_schema(method, path, status, media_type)
    assert schema is not None
    assert spec.validate(body, schema) != []


def test_component_schema_unknown_name() -> None:
    with pytest.raises(KeyError):
        spec.component_schema("native", "Nope")
    with pytest.raises(ValueError):
        spec.document("grpc")


def test_recursive_refs_terminate() -> None:
    from ollama_conformance.spec.resolve import RECURSION_STUB, resolve

    doc = {
        "components": {
            "schemas": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}}}
        }
    }
    resolved = resolve({"$ref": "#/components/schemas/Node"}, doc)
    assert resolved["properties"]["next"] == RECURSION_STUB
    assert "$ref" not in str(resolved)


def test_operations_flags() -> None:
    ops = {(op.method, op.path): op for op in spec.operations()}
    assert ops[("POST", "/api/chat")].streaming and not ops[("POST", "/api/chat")].cloud_only
    assert ops[("POST", "/api/web_search")].cloud_only
    assert not ops[("GET", "/api/tags")].streaming
    assert ops[("POST", "/v1/messages")].surface == "anthropic"
