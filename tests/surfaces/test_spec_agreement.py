"""What the surfaces send validates against spec/ (openai.yaml, anthropic.yaml): each body, each SSE payload."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from ollama_conformance.spec import response_media_types, response_schema, validate

from .wire import CHAT_MODEL, EMBED_MODEL, split_sse

pytestmark = pytest.mark.slow

MSGS = [{"role": "user", "content": "hi"}]
CASES: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/chat/completions", "/v1/chat/completions", {"model": CHAT_MODEL, "messages": MSGS, "max_tokens": 3}),
    (
        "POST",
        "/v1/chat/completions",
        "/v1/chat/completions",
        {
            "model": CHAT_MODEL,
            "messages": MSGS,
            "max_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ),
    ("POST", "/v1/chat/completions", "/v1/chat/completions", {"model": CHAT_MODEL, "messages": []}),
    ("POST", "/v1/chat/completions", "/v1/chat/completions", {"model": "nope:1b", "messages": MSGS}),
    (
        "POST",
        "/v1/completions",
        "/v1/completions",
        {
            "model": CHAT_MODEL,
            "prompt": "hi",
            "max_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ),
    (
        "POST",
        "/v1/embeddings",
        "/v1/embeddings",
        {"model": EMBED_MODEL, "input": ["a", "b"], "encoding_format": "base64"},
    ),
    ("GET", "/v1/models", "/v1/models", None),
    ("GET", "/v1/models/nope", "/v1/models/{model}", None),
    ("POST", "/v1/responses", "/v1/responses", {"model": CHAT_MODEL, "input": "hi", "max_output_tokens": 3}),
    (
        "POST",
        "/v1/responses",
        "/v1/responses",
        {"model": CHAT_MODEL, "input": "hi", "max_output_tokens": 3, "stream": True},
    ),
    ("POST", "/v1/messages", "/v1/messages", {"model": CHAT_MODEL, "messages": MSGS, "max_tokens": 3, "stream": True}),
    ("POST", "/v1/messages", "/v1/messages", {"model": CHAT_MODEL, "messages": [], "max_tokens": 3}),
]


@pytest.mark.parametrize(("method", "path", "template", "body"), CASES)
def test_outputs_validate_against_spec(
    http: httpx.Client, method: str, path: str, template: str, body: dict[str, Any] | None
) -> None:
    response = http.request(method, path, json=body)
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in response_media_types(method, template, response.status_code), (
        f"spec declares no {media_type} response with status {response.status_code} for {method} {template}"
    )
    schema = response_schema(method, template, response.status_code, media_type)
    assert schema is not None
    if media_type == "text/event-stream":
        items = [e.json() for e in split_sse(response.content) if e.data != "[DONE]"]
    else:
        items = [json.loads(response.content)]
    problems = [f"item {i}: {problem}" for i, item in enumerate(items) for problem in validate(item, schema)]
    assert not problems, "\n".join(problems)
